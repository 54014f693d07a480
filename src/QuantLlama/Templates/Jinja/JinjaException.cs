namespace QuantLlama.Templates.Jinja;

/// <summary>A template that does not parse, or fails while rendering (including a limit it ran into). The message is one line.</summary>
public sealed class JinjaException(string message) : Exception(message.ReplaceLineEndings(" "));

namespace QuantLlama.Gguf;

/// <summary>
/// A model file is malformed or unsupported. The message names the file, the byte offset and the problem,
/// so a user can tell a truncated download from a file written by an incompatible tool.
/// </summary>
public sealed class GgufFormatException : Exception
{
    public string FileName { get; }
    public long Offset { get; }
    public string Problem { get; }

    public GgufFormatException(string fileName, long offset, string problem)
        : base($"{fileName}: invalid model file at byte {offset}: {problem}")
    {
        FileName = fileName;
        Offset = offset;
        Problem = problem;
    }
}

using System.Text.Json;
using System.Text.Json.Serialization;
using QuantLlama.Generation;

namespace QuantLlama.Server;

// OpenAI's response shapes, written with snake_case names; null members are left out.

internal sealed record PromptTokensDetails(int CachedTokens);

internal sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens, PromptTokensDetails PromptTokensDetails)
{
    public static Usage From(GenerationResult result)
        => new(result.PromptTokens, result.Tokens.Count, result.PromptTokens + result.Tokens.Count, new PromptTokensDetails(result.CachedPromptTokens));
}

internal sealed record ChatMessageBody(string Role, string Content);

internal sealed record ChatDelta(string? Role = null, string? Content = null);

internal sealed record ChatChoice(int Index, ChatMessageBody? Message = null, ChatDelta? Delta = null, string? FinishReason = null);

internal sealed record ChatCompletion(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChoice> Choices, Usage? Usage = null);

internal sealed record TextChoice(int Index, string Text, string? FinishReason = null);

internal sealed record TextCompletion(string Id, string Object, long Created, string Model, IReadOnlyList<TextChoice> Choices, Usage? Usage = null);

internal sealed record ModelEntry(string Id, string Object, long Created, string OwnedBy);

internal sealed record ModelList(string Object, IReadOnlyList<ModelEntry> Data);

internal sealed record ErrorDetail(
    string Message,
    string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Param,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Code);

internal sealed record ErrorBody(ErrorDetail Error);

internal static class OpenAiJson
{
    public static JsonSerializerOptions Options { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>OpenAI's finish_reason: "length" when the token limit or the context ended the reply, else "stop".</summary>
    public static string FinishReason(StopReason reason) => reason is StopReason.Length or StopReason.ContextFull ? "length" : "stop";
}

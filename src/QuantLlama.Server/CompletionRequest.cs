using System.Text.Json;
using QuantLlama.Generation;
using static QuantLlama.Server.JsonMembers;

namespace QuantLlama.Server;

/// <summary>A chat or text completion request, read and checked: what to generate from and how.</summary>
public sealed record CompletionRequest
{
    /// <summary>The conversation (chat completions); null for a text completion.</summary>
    public IReadOnlyList<ChatTurn>? Messages { get; init; }

    /// <summary>The prompt (text completions); null for a chat completion.</summary>
    public string? Prompt { get; init; }

    public required GenerationOptions Generation { get; init; }

    public bool Stream { get; init; }

    /// <summary>A streamed response ends with a chunk that carries the usage (stream_options.include_usage).</summary>
    public bool IncludeUsage { get; init; }

    /// <summary>Reads a <c>/v1/chat/completions</c> body.</summary>
    public static CompletionRequest ReadChat(JsonElement body, int maxTokens)
    {
        RequireObject(body);
        RefuseUnsupported(body);
        return Read(body, maxTokens) with { Messages = ReadMessages(body) };
    }

    /// <summary>Reads a <c>/v1/completions</c> body.</summary>
    public static CompletionRequest ReadText(JsonElement body, int maxTokens)
    {
        RequireObject(body);
        RefuseUnsupported(body);
        if (Optional(body, "echo") is { } echo && Bool(echo, "echo")) throw ApiException.Unsupported("echo", "echo");
        if (Optional(body, "best_of") is { } bestOf && Integer(bestOf, "best_of") != 1) throw ApiException.Unsupported("best_of", "best_of other than 1");
        if (Optional(body, "suffix") is { } suffix && String(suffix, "suffix").Length > 0) throw ApiException.Unsupported("suffix", "suffix");
        var prompt = Optional(body, "prompt") ?? throw ApiException.BadRequest("'prompt' is required", "prompt");
        string text = prompt.ValueKind switch
        {
            JsonValueKind.String => prompt.GetString()!,
            JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String => prompt[0].GetString()!,
            JsonValueKind.Array => throw ApiException.Unsupported("prompt", "a prompt other than one string"),
            _ => throw ApiException.BadRequest("'prompt' must be a string", "prompt"),
        };
        return Read(body, maxTokens) with { Prompt = text };
    }

    private static CompletionRequest Read(JsonElement body, int maxTokens)
    {
        var sampling = new SamplingOptions { Temperature = 0.8, RepeatPenalty = 1f, Seed = (ulong)Random.Shared.NextInt64() };
        if (Optional(body, "temperature") is { } t) sampling = sampling with { Temperature = Number(t, "temperature", 0, 2) };
        if (Optional(body, "top_p") is { } p)
        {
            double topP = Number(p, "top_p", 0, 1);
            if (topP == 0) throw ApiException.BadRequest("'top_p' must be greater than 0", "top_p");
            sampling = sampling with { TopP = topP };
        }
        if (Optional(body, "top_k") is { } k)
        {
            long topK = Integer(k, "top_k");
            if (topK < 0) throw ApiException.BadRequest("'top_k' must not be negative", "top_k");
            sampling = sampling with { TopK = topK == 0 ? null : (int)Math.Min(topK, int.MaxValue) }; // 0: no limit, as llama-server
        }
        if (Optional(body, "min_p") is { } m) sampling = sampling with { MinP = Number(m, "min_p", 0, 1) };
        if (Optional(body, "repeat_penalty") is { } r)
        {
            double penalty = Number(r, "repeat_penalty", 0, 100);
            if (penalty == 0) throw ApiException.BadRequest("'repeat_penalty' must be greater than 0", "repeat_penalty");
            sampling = sampling with { RepeatPenalty = (float)penalty };
        }
        if (Optional(body, "seed") is { } s) sampling = sampling with { Seed = unchecked((ulong)Integer(s, "seed")) };

        // max_completion_tokens is the newer name; either may come. Beyond the context, generation stops when the
        // cache is full (finish_reason "length"), so a large value is simply clamped.
        int limit = maxTokens;
        foreach (string name in (string[])["max_tokens", "max_completion_tokens"])
        {
            if (Optional(body, name) is not { } max) continue;
            long n = Integer(max, name);
            if (n < 1) throw ApiException.BadRequest($"'{name}' must be at least 1", name);
            limit = (int)Math.Min(n, maxTokens);
        }

        bool stream = Optional(body, "stream") is { } st && Bool(st, "stream");
        bool includeUsage = false;
        if (Optional(body, "stream_options") is { } so)
        {
            if (so.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("'stream_options' must be an object", "stream_options");
            includeUsage = Optional(so, "include_usage") is { } iu && Bool(iu, "stream_options.include_usage");
        }
        return new CompletionRequest
        {
            Generation = new GenerationOptions { MaxTokens = limit, Sampling = sampling, StopStrings = ReadStop(body) },
            Stream = stream,
            IncludeUsage = includeUsage,
        };
    }

    private static string[] ReadStop(JsonElement body)
    {
        if (Optional(body, "stop") is not { } stop) return [];
        string[] stops = stop.ValueKind switch
        {
            JsonValueKind.String => [stop.GetString()!],
            JsonValueKind.Array => [.. stop.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String
                ? e.GetString()!
                : throw ApiException.BadRequest("'stop' must be a string or an array of strings", "stop"))],
            _ => throw ApiException.BadRequest("'stop' must be a string or an array of strings", "stop"),
        };
        if (stops.Any(string.IsNullOrEmpty)) throw ApiException.BadRequest("a stop sequence must not be empty", "stop");
        return stops;
    }

    private static List<ChatTurn> ReadMessages(JsonElement body)
    {
        var messages = Optional(body, "messages") ?? throw ApiException.BadRequest("'messages' is required", "messages");
        if (messages.ValueKind != JsonValueKind.Array) throw ApiException.BadRequest("'messages' must be an array", "messages");
        if (messages.GetArrayLength() == 0) throw ApiException.BadRequest("'messages' must not be empty", "messages");
        var turns = new List<ChatTurn>();
        int i = 0;
        foreach (var message in messages.EnumerateArray())
        {
            string param = $"messages[{i++}]";
            if (message.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"'{param}' must be an object", param);
            var roleElement = Optional(message, "role") ?? throw ApiException.BadRequest($"'{param}.role' is required", param + ".role");
            string role = String(roleElement, param + ".role") switch
            {
                "system" or "developer" => "system", // OpenAI's newer name for the system role
                "user" => "user",
                "assistant" => "assistant",
                "tool" or "function" => throw ApiException.Unsupported(param + ".role", "the role 'tool' (tool calls)"),
                var other => throw ApiException.BadRequest($"unknown role '{other}' in '{param}.role' (system, user or assistant)", param + ".role"),
            };
            if (Optional(message, "tool_calls") is { ValueKind: JsonValueKind.Array } calls && calls.GetArrayLength() > 0)
                throw ApiException.Unsupported(param + ".tool_calls", "tool calls");
            var content = Optional(message, "content") ?? throw ApiException.BadRequest($"'{param}.content' is required", param + ".content");
            turns.Add(new ChatTurn(role, ReadContent(content, param + ".content")));
        }
        return turns;
    }

    /// <summary>A message's content: a string, or an array of text parts (joined).</summary>
    private static string ReadContent(JsonElement content, string param)
    {
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array) throw ApiException.BadRequest($"'{param}' must be a string or an array of content parts", param);
        var text = new System.Text.StringBuilder();
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"'{param}' parts must be objects", param);
            string type = Optional(part, "type") is { } ty ? String(ty, param + ".type") : "";
            if (type != "text") throw ApiException.Unsupported(param, $"content of type '{type}' (only 'text' is)");
            text.Append(String(Optional(part, "text") ?? throw ApiException.BadRequest($"a text part of '{param}' has no 'text'", param), param + ".text"));
        }
        return text.ToString();
    }

    /// <summary>Parameters of the OpenAI API that this server does not implement: refused rather than ignored.</summary>
    private static void RefuseUnsupported(JsonElement body)
    {
        if (Optional(body, "n") is { } n && Integer(n, "n") != 1) throw ApiException.Unsupported("n", "n other than 1");
        if (Optional(body, "logprobs") is { } lp && lp.ValueKind != JsonValueKind.False)
        {
            // Chat completions take a boolean, text completions a count.
            if (lp.ValueKind == JsonValueKind.True || lp.ValueKind == JsonValueKind.Number) throw ApiException.Unsupported("logprobs", "logprobs");
            throw ApiException.BadRequest("'logprobs' must be a boolean", "logprobs");
        }
        if (Optional(body, "top_logprobs") is not null) throw ApiException.Unsupported("top_logprobs", "top_logprobs");
        if (Optional(body, "tools") is { } tools && (tools.ValueKind != JsonValueKind.Array || tools.GetArrayLength() > 0))
            throw ApiException.Unsupported("tools", "tools");
        if (Optional(body, "tool_choice") is { } choice && !(choice.ValueKind == JsonValueKind.String && choice.GetString() == "none"))
            throw ApiException.Unsupported("tool_choice", "tool_choice");
        if (Optional(body, "functions") is not null) throw ApiException.Unsupported("functions", "functions");
        if (Optional(body, "function_call") is not null) throw ApiException.Unsupported("function_call", "function_call");
        if (Optional(body, "response_format") is { } format)
        {
            string? type = format.ValueKind == JsonValueKind.Object && Optional(format, "type") is { ValueKind: JsonValueKind.String } t ? t.GetString() : null;
            if (type != "text") throw ApiException.Unsupported("response_format", $"response_format '{type ?? format.ToString()}' (only 'text' is)");
        }
        if (Optional(body, "logit_bias") is { } bias && (bias.ValueKind != JsonValueKind.Object || bias.EnumerateObject().Any()))
            throw ApiException.Unsupported("logit_bias", "logit_bias");
    }

    private static double Number(JsonElement e, string param, double min, double max)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double x)) throw ApiException.BadRequest($"'{param}' must be a number", param);
        if (!(x >= min && x <= max)) throw ApiException.BadRequest($"'{param}' must be between {min} and {max}, got {x}", param);
        return x;
    }
}

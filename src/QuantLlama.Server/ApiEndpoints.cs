using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QuantLlama.Tokenizers;

namespace QuantLlama.Server;

/// <summary>The endpoints around completions: health, models, tokenize, detokenize and metrics.</summary>
internal sealed class ApiEndpoints(ServerState state)
{
    /// <summary>200 once the model is loaded, 503 before: what a load balancer's readiness check asks.</summary>
    public IResult Health()
    {
        if (state.Model != null) return Results.Json(new { status = "ok" });
        var notReady = state.NotReady();
        return Results.Json(new ErrorBody(new ErrorDetail(notReady.Message, notReady.Type, null, notReady.Code)), OpenAiJson.Options,
            statusCode: notReady.Status);
    }

    public IResult Models()
        => Results.Json(new ModelList("list", [new ModelEntry(state.ModelId, "model", state.Started.ToUnixTimeSeconds(), "quantllama")]), OpenAiJson.Options);

    public IResult Metrics()
        => Results.Text(state.Metrics.ToPrometheus(state.Model?.Slots, state.Model?.Batcher), "text/plain; version=0.0.4");

    /// <summary>llama-server's <c>/tokenize</c>: <c>{"content", "add_special" (false), "parse_special" (true)}</c> → <c>{"tokens"}</c>.</summary>
    public async Task<IResult> TokenizeAsync(HttpContext http)
    {
        var (model, tokens) = await state.ReadRequestAsync(http, (model, body) =>
        {
            var content = JsonMembers.Optional(body, "content") ?? throw ApiException.BadRequest("'content' is required", "content");
            bool addSpecial = JsonMembers.Optional(body, "add_special") is { } a && JsonMembers.Bool(a, "add_special");
            bool parseSpecial = JsonMembers.Optional(body, "parse_special") is not { } p || JsonMembers.Bool(p, "parse_special");
            return model.Tokenizer.Encode(JsonMembers.String(content, "content"), addSpecial, parseSpecial);
        });
        return Results.Json(new { tokens });
    }

    /// <summary>llama-server's <c>/detokenize</c>: <c>{"tokens"}</c> → <c>{"content"}</c>.</summary>
    public async Task<IResult> DetokenizeAsync(HttpContext http)
    {
        var (model, ids) = await state.ReadRequestAsync(http, (model, body) =>
        {
            var tokens = JsonMembers.Optional(body, "tokens") ?? throw ApiException.BadRequest("'tokens' is required", "tokens");
            if (tokens.ValueKind != JsonValueKind.Array) throw ApiException.BadRequest("'tokens' must be an array of token ids", "tokens");
            var list = new List<int>();
            foreach (var token in tokens.EnumerateArray())
            {
                long id = JsonMembers.Integer(token, "tokens");
                if (id < 0 || id >= model.Tokenizer.VocabSize)
                    throw ApiException.BadRequest($"token id {id} is outside the vocabulary (0..{model.Tokenizer.VocabSize - 1})", "tokens");
                list.Add((int)id);
            }
            return list;
        });
        return Results.Json(new { content = model.Tokenizer.Decode(ids) });
    }
}

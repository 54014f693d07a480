using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using QuantLlama.Generation;

namespace QuantLlama.Server;

/// <summary>
/// <c>POST /v1/chat/completions</c> and <c>POST /v1/completions</c>: a request is read and tokenized, takes a slot
/// (or waits for one), and generates on a thread of its own while the handler streams the text out. A client that
/// goes away cancels its generation, which frees the slot at the next token.
/// </summary>
internal sealed class CompletionEndpoints(ServerState state, ILogger<LlamaServer> logger)
{
    public async Task ChatAsync(HttpContext http)
    {
        var (model, request) = await state.ReadRequestAsync(http, (model, body) => CompletionRequest.ReadChat(body, model.ContextSize));
        var prompt = ChatSession.TokenizePrompt(model.Tokenizer, model.Formatter.Render(request.Messages!, addGenerationPrompt: true));
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string modelId = state.ModelId;

        if (!request.Stream)
        {
            var result = await GenerateAsync(http, model, prompt, request, null, null);
            var choice = new ChatChoice(0, Message: new ChatMessageBody("assistant", result.Text), FinishReason: OpenAiJson.FinishReason(result.StopReason));
            await http.Response.WriteAsJsonAsync(new ChatCompletion(id, "chat.completion", created, modelId, [choice], Usage.From(result)), OpenAiJson.Options);
            return;
        }

        ChatCompletion Chunk(ChatDelta delta, string? finish = null)
            => new(id, "chat.completion.chunk", created, modelId, [new ChatChoice(0, Delta: delta, FinishReason: finish)]);
        var events = new ServerSentEvents(http.Response);
        var final = await GenerateAsync(http, model, prompt, request,
            piece => events.WriteAsync(Chunk(new ChatDelta(Content: piece)), http.RequestAborted),
            () => events.WriteAsync(Chunk(new ChatDelta("assistant", "")), http.RequestAborted));
        await events.WriteAsync(Chunk(new ChatDelta(), OpenAiJson.FinishReason(final.StopReason)), http.RequestAborted);
        if (request.IncludeUsage)
            await events.WriteAsync(new ChatCompletion(id, "chat.completion.chunk", created, modelId, [], Usage.From(final)), http.RequestAborted);
        await events.WriteDoneAsync(http.RequestAborted);
    }

    public async Task TextAsync(HttpContext http)
    {
        var (model, request) = await state.ReadRequestAsync(http, (model, body) => CompletionRequest.ReadText(body, model.ContextSize));
        var prompt = model.Tokenizer.Encode(request.Prompt!, addSpecial: true, parseSpecial: true);
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string modelId = state.ModelId;

        if (!request.Stream)
        {
            var result = await GenerateAsync(http, model, prompt, request, null, null);
            var choice = new TextChoice(0, result.Text, OpenAiJson.FinishReason(result.StopReason));
            await http.Response.WriteAsJsonAsync(new TextCompletion(id, "text_completion", created, modelId, [choice], Usage.From(result)), OpenAiJson.Options);
            return;
        }

        TextCompletion Chunk(string text, string? finish = null) => new(id, "text_completion", created, modelId, [new TextChoice(0, text, finish)]);
        var events = new ServerSentEvents(http.Response);
        var final = await GenerateAsync(http, model, prompt, request, piece => events.WriteAsync(Chunk(piece), http.RequestAborted),
            () => events.StartAsync(http.RequestAborted));
        await events.WriteAsync(Chunk("", OpenAiJson.FinishReason(final.StopReason)), http.RequestAborted);
        if (request.IncludeUsage)
            await events.WriteAsync(new TextCompletion(id, "text_completion", created, modelId, [], Usage.From(final)), http.RequestAborted);
        await events.WriteDoneAsync(http.RequestAborted);
    }

    /// <summary>
    /// Takes a slot for <paramref name="prompt"/> and generates in it on a dedicated thread, passing each piece of
    /// text to <paramref name="onText"/> when streaming (the result holds the whole text either way).
    /// <paramref name="onStart"/> runs once the slot is held: a stream's headers go out then, so a refusal before it
    /// can still be an error status. The slot is freed when the generation ends, however it ends.
    /// </summary>
    private async Task<GenerationResult> GenerateAsync(HttpContext http, LoadedModel model, IReadOnlyList<int> prompt,
        CompletionRequest request, Func<string, Task>? onText, Func<Task>? onStart)
    {
        if (prompt.Count == 0) throw ApiException.BadRequest("the prompt is empty", request.Messages != null ? "messages" : "prompt");
        if (prompt.Count > model.ContextSize)
            throw ApiException.BadRequest($"the prompt has {prompt.Count} tokens, more than the context's {model.ContextSize}",
                request.Messages != null ? "messages" : "prompt", "context_length_exceeded");

        var cancel = http.RequestAborted;
        SlotHold hold;
        try
        {
            hold = await model.Slots.AcquireAsync(prompt, cancel);
        }
        catch (QueueFullException e)
        {
            state.Metrics.RecordRejected();
            http.Response.Headers.RetryAfter = "1";
            throw new ApiException(StatusCodes.Status503ServiceUnavailable, e.Message, "server_error", code: "queue_full");
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        var updates = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var worker = Task.Factory.StartNew(() =>
        {
            try
            {
                foreach (var update in hold.Slot.Session.Generator.GenerateUpdates(prompt, request.Generation, stop.Token))
                    updates.Writer.TryWrite(update);
                updates.Writer.TryComplete();
            }
            catch (Exception e)
            {
                updates.Writer.TryComplete(e);
            }
            finally
            {
                hold.Dispose();
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        GenerationResult? result = null;
        try
        {
            if (onStart != null) await onStart();
            await foreach (var update in updates.Reader.ReadAllAsync(CancellationToken.None))
            {
                if (update.Text.Length > 0 && onText != null) await onText(update.Text);
                result = update.Result ?? result;
            }
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(e.Message);
        }
        finally
        {
            stop.Cancel(); // a failed write to the client ends the generation too
            await worker;
        }
        state.Metrics.Record(result!);
        logger.LogInformation("slot {Slot}: {PromptTokens} prompt tokens ({Cached} cached), {Generated} generated, {Reason}",
            hold.Slot.Index, result!.PromptTokens, result.CachedPromptTokens, result.Tokens.Count, result.StopReason);
        if (result.StopReason == StopReason.Cancelled) throw new OperationCanceledException(cancel);
        return result;
    }
}

/// <summary>Server-Sent Events as OpenAI streams them: <c>data: {json}</c> per event, then <c>data: [DONE]</c>.</summary>
internal sealed class ServerSentEvents(HttpResponse response)
{
    private static readonly byte[] DataPrefix = "data: "u8.ToArray(), EventEnd = "\n\n"u8.ToArray(), Done = "data: [DONE]\n\n"u8.ToArray();
    private bool _started;

    public async Task StartAsync(CancellationToken cancel)
    {
        if (_started) return;
        _started = true;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        await response.StartAsync(cancel);
    }

    public async Task WriteAsync<T>(T value, CancellationToken cancel)
    {
        await StartAsync(cancel);
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(value, OpenAiJson.Options);
        await response.Body.WriteAsync(DataPrefix, cancel);
        await response.Body.WriteAsync(json, cancel);
        await response.Body.WriteAsync(EventEnd, cancel);
        await response.Body.FlushAsync(cancel);
    }

    public async Task WriteDoneAsync(CancellationToken cancel)
    {
        await response.Body.WriteAsync(Done, cancel);
        await response.Body.FlushAsync(cancel);
    }
}

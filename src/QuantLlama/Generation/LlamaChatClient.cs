using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using QuantLlama.Models;
using QuantLlama.Tokenizers;

namespace QuantLlama.Generation;

public sealed record LlamaChatClientOptions
{
    /// <summary>The context this client generates in (its KV cache size and type).</summary>
    public ContextOptions Context { get; init; } = new();

    /// <summary>Sampling where a request's <see cref="ChatOptions"/> say nothing.</summary>
    public SamplingOptions Sampling { get; init; } = new() { RepeatPenalty = 1f };

    /// <summary>Tokens a reply may have where a request sets no MaxOutputTokens.</summary>
    public int MaxOutputTokens { get; init; } = 1024;

    /// <summary>The model id reported in responses and metadata.</summary>
    public string ModelId { get; init; } = "quantllama";
}

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over a loaded model: each call renders the messages it is
/// given with the model's chat format and generates in this client's own <see cref="InferenceContext"/>, which
/// keeps the longest common prefix between calls, so a conversation re-sent with one more turn computes only that
/// turn. Calls on one client run one at a time (each waits for the one before); use one client per concurrent
/// conversation, all on the same <see cref="LlamaModel"/>.
/// <para>
/// <see cref="ChatOptions"/>: Temperature, TopP, TopK, MaxOutputTokens, StopSequences and Seed are honoured;
/// FrequencyPenalty and PresencePenalty are ignored (the sampler has llama.cpp's repeat penalty instead, set in
/// <see cref="LlamaChatClientOptions.Sampling"/>); tools, a JSON response format and non-text content are refused
/// with <see cref="NotSupportedException"/>.
/// </para>
/// </summary>
public sealed class LlamaChatClient : IChatClient
{
    private readonly LlamaModel _model;
    private readonly ChatSession _session;
    private readonly LlamaChatClientOptions _options;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ChatClientMetadata _metadata;
    private bool _disposed;

    public LlamaChatClient(LlamaModel model, ITokenizer tokenizer, IChatFormatter formatter, LlamaChatClientOptions? options = null,
        ILogger<LlamaChatClient>? logger = null)
    {
        _model = model;
        _options = options ?? new LlamaChatClientOptions();
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _session = new ChatSession(model.CreateContext(_options.Context), tokenizer, formatter);
        _metadata = new ChatClientMetadata("quantllama", null, _options.ModelId);
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
            updates.Add(update);
        return updates.ToChatResponse();
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var turns = ToTurns(messages);
        var generation = ToGenerationOptions(options);
        string responseId = "chatcmpl-" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await foreach (var update in _session.ReplyAsync(turns, generation, cancellationToken).ConfigureAwait(false))
            {
                var chunk = new ChatResponseUpdate(ChatRole.Assistant, update.Text)
                {
                    ResponseId = responseId, MessageId = responseId, CreatedAt = created, ModelId = _options.ModelId,
                };
                if (update.Result is { } result)
                {
                    if (result.StopReason == StopReason.Cancelled) cancellationToken.ThrowIfCancellationRequested();
                    chunk.FinishReason = result.StopReason is StopReason.Length or StopReason.ContextFull ? ChatFinishReason.Length : ChatFinishReason.Stop;
                    var usage = new UsageDetails
                    {
                        InputTokenCount = result.PromptTokens,
                        OutputTokenCount = result.Tokens.Count,
                        TotalTokenCount = result.PromptTokens + result.Tokens.Count,
                        CachedInputTokenCount = result.CachedPromptTokens,
                    };
                    chunk.Contents.Add(new UsageContent(usage));
                    _logger.LogDebug("reply {ResponseId}: {PromptTokens} prompt tokens ({Cached} cached), {Tokens} generated, {Reason}",
                        responseId, result.PromptTokens, result.CachedPromptTokens, result.Tokens.Count, result.StopReason);
                }
                else if (update.Text.Length == 0) continue;
                yield return chunk;
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private static List<ChatTurn> ToTurns(IEnumerable<ChatMessage> messages)
    {
        var turns = new List<ChatTurn>();
        foreach (var m in messages)
        {
            if (m.Contents.Any(c => c is not TextContent))
                throw new NotSupportedException($"only text content is supported, not {m.Contents.First(c => c is not TextContent).GetType().Name}");
            turns.Add(new ChatTurn(m.Role.Value, m.Text));
        }
        if (turns.Count == 0) throw new ArgumentException("there are no messages to reply to");
        return turns;
    }

    private GenerationOptions ToGenerationOptions(ChatOptions? options)
    {
        var sampling = _options.Sampling;
        if (options == null) return new GenerationOptions { MaxTokens = _options.MaxOutputTokens, Sampling = sampling };
        if (options.Tools is { Count: > 0 }) throw new NotSupportedException("tools are not supported");
        if (options.ResponseFormat is ChatResponseFormatJson) throw new NotSupportedException("a JSON response format is not supported");
        sampling = sampling with
        {
            Temperature = options.Temperature ?? sampling.Temperature,
            TopP = options.TopP ?? sampling.TopP,
            TopK = options.TopK ?? sampling.TopK,
            Seed = options.Seed is long seed ? unchecked((ulong)seed) : sampling.Seed,
        };
        return new GenerationOptions
        {
            MaxTokens = options.MaxOutputTokens ?? _options.MaxOutputTokens,
            Sampling = sampling,
            StopStrings = options.StopSequences?.ToArray() ?? [],
        };
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey != null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(LlamaModel)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _session.Context.Dispose();
        _gate.Dispose();
    }
}

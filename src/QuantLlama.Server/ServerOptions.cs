using QuantLlama.Hub;
using QuantLlama.Models;

namespace QuantLlama.Server;

/// <summary>What <see cref="LlamaServer"/> serves and how: the model, the listening address and the limits.</summary>
public sealed record ServerOptions
{
    /// <summary>The GGUF (or legacy GGML) model file.</summary>
    public required string ModelPath { get; init; }

    /// <summary>Group-query attention factor for legacy GGML files.</summary>
    public int Gqa { get; init; } = 1;

    /// <summary>How the model's weights are prepared at load (the copy repacked for prompts).</summary>
    public ModelOptions Model { get; init; } = new();

    /// <summary>A Hugging Face tokenizer.json to use instead of the model file's vocabulary.</summary>
    public string? TokenizerPath { get; init; }

    /// <summary>The chat format for a model file that names none in its metadata.</summary>
    public ChatTemplateFamily ChatTemplate { get; init; } = ChatTemplateFamily.None;

    /// <summary>The model id reported by the API; the file's name without extension when null.</summary>
    public string? ModelId { get; init; }

    /// <summary>An IP address, or "localhost".</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The TCP port; 0 picks a free one (see <see cref="LlamaServer.BaseAddress"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>Conversation slots: requests generated at once, each in its own KV cache.</summary>
    public int Parallel { get; init; } = 4;

    /// <summary>Positions in each slot's KV cache (default: the model's context length, at most 4096).</summary>
    public int? ContextSize { get; init; }

    /// <summary>
    /// Generate the busy slots' tokens together, one pass through the weights per step (continuous batching);
    /// off: each slot generates on its own. The tokens are the same either way.
    /// </summary>
    public bool BatchedDecoding { get; init; } = true;

    /// <summary>
    /// Prompt tokens per pass through the weights (llama-server's ubatch). With batched decoding a prompt is read
    /// in passes of this many tokens beside the busy slots' next tokens, so they keep generating while it is read;
    /// each of their tokens waits for at most one such pass. The same in every mode, so the tokens never depend on it.
    /// </summary>
    public int PromptBatch { get; init; } = DefaultPromptBatch;

    public const int DefaultPromptBatch = 64;

    /// <summary>When set, every endpoint but /health requires <c>Authorization: Bearer</c> with this key.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Requests that may wait for a slot; more are refused with 503 and Retry-After.</summary>
    public int MaxQueue { get; init; } = 16;

    /// <summary>Largest request body accepted; larger ones get 413.</summary>
    public long MaxRequestBodyBytes { get; init; } = 1 << 20;

    /// <summary>How long a shutdown waits for in-flight requests to finish.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);

    internal string EffectiveModelId => ModelId ?? Path.GetFileNameWithoutExtension(ModelPath);

    internal void Validate()
    {
        if (string.IsNullOrEmpty(ModelPath)) throw new ArgumentException("a model path is required");
        if (Gqa <= 0) throw new ArgumentException($"the GQA factor must be positive, got {Gqa}");
        if (Port is < 0 or > 65535) throw new ArgumentException($"the port must be in 0..65535, got {Port}");
        if (Parallel <= 0) throw new ArgumentException($"the slot count must be positive, got {Parallel}");
        if (ContextSize is <= 0) throw new ArgumentException($"the context size must be positive, got {ContextSize}");
        if (PromptBatch <= 0) throw new ArgumentException($"the prompt batch must be positive, got {PromptBatch}");
        if (MaxQueue < 0) throw new ArgumentException($"the queue length must not be negative, got {MaxQueue}");
        if (MaxRequestBodyBytes <= 0) throw new ArgumentException($"the body size limit must be positive, got {MaxRequestBodyBytes}");
        if (ApiKey is "") throw new ArgumentException("the API key must not be empty");
    }
}

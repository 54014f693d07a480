namespace QuantLlama.Models;

/// <summary>How RoPE pairs the values of a head.</summary>
public enum RopeMode
{
    /// <summary>Adjacent pairs (x[2i], x[2i+1]): LLaMA.</summary>
    Normal,

    /// <summary>Halves (x[i], x[i + n_rot/2]): GPT-NeoX, Qwen.</summary>
    Neox,
}

/// <summary>The gated feed-forward's activation of the gate.</summary>
public enum FeedForwardActivation
{
    /// <summary>silu(gate) · up: LLaMA, Qwen.</summary>
    Silu,

    /// <summary>gelu(gate) · up with GELU's tanh approximation, as ggml's lookup table of f16 inputs gives it: Gemma.</summary>
    GeluTanh,
}

/// <summary>
/// A GGUF <c>general.architecture</c> we run: the LLaMA forward pass plus the few things each one does differently,
/// which the one forward pass in <see cref="InferenceContext"/> tests where they apply. Its metadata keys are
/// prefixed with <see cref="Name"/>.
/// </summary>
public sealed record ModelArchitecture
{
    public required string Name { get; init; }

    public required RopeMode Rope { get; init; }

    /// <summary>Q, K and V projections carry biases (attn_q.bias, attn_k.bias, attn_v.bias).</summary>
    public bool RequiresQkvBias { get; init; }

    /// <summary>Q, K, V and output projections may carry biases, each optional.</summary>
    public bool AllowsAttentionBias { get; init; }

    /// <summary>Each head's queries and keys are RMS-normed (attn_q_norm, attn_k_norm) before RoPE.</summary>
    public bool HasQkNorm { get; init; }

    /// <summary>May carry rope_freqs.weight, a divisor of each rotated pair's frequency (Llama 3.1 and later).</summary>
    public bool AllowsRopeFreqFactors { get; init; }

    /// <summary>May carry LongRoPE's rope_factors_short.weight and rope_factors_long.weight, picked by the context size (Phi-3 128k, Phi-3.5).</summary>
    public bool AllowsLongRope { get; init; }

    /// <summary>The feed-forward's activation.</summary>
    public FeedForwardActivation Activation { get; init; } = FeedForwardActivation.Silu;

    /// <summary>Token embeddings are multiplied by √embedding_length before the first layer (Gemma).</summary>
    public bool ScalesEmbeddings { get; init; }

    /// <summary>The attention and feed-forward outputs are RMS-normed (post_attention_norm, post_ffw_norm) before
    /// their residual adds (Gemma 2 and 3).</summary>
    public bool HasPostNorms { get; init; }

    /// <summary>Q, K and V come from one matrix, attn_qkv [dim → q, k, v rows in that order] (Phi-3).</summary>
    public bool FusedQkv { get; init; }

    /// <summary>Gate and up come from one matrix, ffn_up [dim → 2·ff], the gate's rows first (Phi-3).</summary>
    public bool FusedGateUp { get; init; }

    /// <summary>
    /// Queries are multiplied by 1/√head_size after RoPE and attention scales by 1 (Gemma, Phi-3), except in files with
    /// <see cref="WideQueryScaleLayers"/> layers (Gemma's 27B), where the factor is 1/√(embedding_length / heads):
    /// llama.cpp picks the factor by layer count, not from query_pre_attn_scalar.
    /// </summary>
    public bool ScalesQueries { get; init; }

    public int WideQueryScaleLayers { get; init; }

    /// <summary>
    /// Layers with sliding-window attention: layer l looks back attention.sliding_window positions when
    /// l mod pattern &lt; pattern − 1 (Gemma 2: 2, every other layer from the first; Gemma 3: 6, five of six); 0: none.
    /// </summary>
    public int SlidingWindowPattern { get; init; }

    /// <summary>attention.sliding_window when the file does not say (Gemma 2: 4096); 0: no window without the key.</summary>
    public int DefaultSlidingWindow { get; init; }

    /// <summary>Attention scores are soft-capped, cap·tanh(s/cap), with attn_logit_softcapping (default 50; Gemma 2).</summary>
    public bool SoftCapsAttention { get; init; }

    /// <summary>The logits are soft-capped with final_logit_softcapping (default 30; Gemma 2).</summary>
    public bool SoftCapsLogits { get; init; }

    /// <summary>The RoPE base of sliding-window layers when rope.freq_base_swa is absent, unscaled (Gemma 3: 10000);
    /// 0: the same RoPE as the other layers.</summary>
    public float LocalRopeBase { get; init; }

    /// <summary>LLaMA 1-3, Mistral, Mixtral (and any file without general.architecture).</summary>
    public static readonly ModelArchitecture Llama = new() { Name = "llama", Rope = RopeMode.Normal, AllowsAttentionBias = true, AllowsRopeFreqFactors = true };

    /// <summary>Qwen2 / Qwen2.5: LLaMA with Q/K/V biases and NeoX RoPE.</summary>
    public static readonly ModelArchitecture Qwen2 = new() { Name = "qwen2", Rope = RopeMode.Neox, RequiresQkvBias = true };

    /// <summary>Qwen3 (dense): LLaMA with per-head Q/K RMS norms and NeoX RoPE.</summary>
    public static readonly ModelArchitecture Qwen3 = new() { Name = "qwen3", Rope = RopeMode.Neox, HasQkNorm = true };

    /// <summary>Gemma 2: scaled embeddings, GELU, post-norms, soft-capped attention and logits, every other layer local.</summary>
    public static readonly ModelArchitecture Gemma2 = new()
    {
        Name = "gemma2", Rope = RopeMode.Neox, Activation = FeedForwardActivation.GeluTanh, ScalesEmbeddings = true, HasPostNorms = true,
        ScalesQueries = true, WideQueryScaleLayers = 46, SlidingWindowPattern = 2, DefaultSlidingWindow = 4096,
        SoftCapsAttention = true, SoftCapsLogits = true,
    };

    /// <summary>Gemma 3 (text): Gemma 2 without soft-capping, with Q/K norms, five local layers to one global, and local RoPE of base 10000.</summary>
    public static readonly ModelArchitecture Gemma3 = new()
    {
        Name = "gemma3", Rope = RopeMode.Neox, Activation = FeedForwardActivation.GeluTanh, ScalesEmbeddings = true, HasPostNorms = true,
        HasQkNorm = true, ScalesQueries = true, WideQueryScaleLayers = 62, SlidingWindowPattern = 6, LocalRopeBase = 10000f,
    };

    /// <summary>
    /// Phi-3, Phi-3.5 and Phi-4-mini: fused QKV and gate-up matrices, NeoX RoPE (with LongRoPE factors in the 128k
    /// models), scaled queries (its sliding window is ignored, as llama.cpp does).
    /// </summary>
    public static readonly ModelArchitecture Phi3 = new()
    {
        Name = "phi3", Rope = RopeMode.Neox, FusedQkv = true, FusedGateUp = true, ScalesQueries = true, AllowsLongRope = true,
    };

    public static IReadOnlyList<ModelArchitecture> Supported { get; } = [Llama, Qwen2, Qwen3, Gemma2, Gemma3, Phi3];

    public static string SupportedNames => string.Join(", ", Supported.Select(a => a.Name));

    public static ModelArchitecture? Find(string name) => Supported.FirstOrDefault(a => a.Name == name);

    public override string ToString() => Name;
}

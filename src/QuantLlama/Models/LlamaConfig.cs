using QuantLlama.Gguf;

namespace QuantLlama.Models;

/// <summary>How the model's RoPE stretches positions beyond its training context (<c>rope.scaling.type</c>).</summary>
public enum RopeScalingType
{
    None,

    /// <summary>Positions divided by the factor (position interpolation).</summary>
    Linear,

    /// <summary>YaRN: low frequencies interpolated, high ones extrapolated, with a ramp between and a magnitude scale.</summary>
    Yarn,
}

/// <summary>
/// Hyper-parameters of a LLaMA-family model (LLaMA 1-3, Mistral, Mixtral, Qwen2, Qwen3, Gemma 2 and 3, Phi-3), read from the
/// <c>{architecture}.*</c> metadata of a model file. The vocabulary size comes from the token embedding's shape,
/// which is what the weights really hold.
/// </summary>
public sealed record LlamaConfig
{
    public ModelArchitecture Architecture { get; init; } = ModelArchitecture.Llama;
    public required int ContextLength { get; init; }
    public required int EmbeddingLength { get; init; }
    public required int BlockCount { get; init; }
    public required int FeedForwardLength { get; init; }
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }

    /// <summary>Values per attention head (<c>attention.key_length</c>; by default embedding_length / head_count).</summary>
    public required int HeadDim { get; init; }

    public required float RmsEpsilon { get; init; }
    public required float RopeFreqBase { get; init; }
    public required int RopeDimensionCount { get; init; }
    public RopeScalingType RopeScaling { get; init; } = RopeScalingType.None;

    /// <summary>1 / rope.scaling.factor: how much each position's angle shrinks (1 without scaling).</summary>
    public float RopeFreqScale { get; init; } = 1f;

    /// <summary>The training context YaRN's correction range is computed from (rope.scaling.original_context_length;
    /// 0: absent, so <see cref="ContextLength"/>).</summary>
    public int RopeOriginalContext { get; init; }

    /// <summary><see cref="RopeOriginalContext"/>, or the training context where the file does not say.</summary>
    public int RopeYarnContext => RopeOriginalContext > 0 ? RopeOriginalContext : ContextLength;

    /// <summary>rope.scaling.attn_factor: a magnitude every rotated value is multiplied by.</summary>
    public float RopeAttnFactor { get; init; } = 1f;

    /// <summary>Positions a sliding-window layer looks back, its own included (attention.sliding_window); 0: none.</summary>
    public int SlidingWindow { get; init; }

    /// <summary>The RoPE base of sliding-window layers (rope.freq_base_swa, or the architecture's); 0: as the others.</summary>
    public float RopeFreqBaseLocal { get; init; }

    /// <summary>cap of the attention scores' soft-capping cap·tanh(s/cap); 0: none.</summary>
    public float AttentionSoftCap { get; init; }

    /// <summary>cap of the logits' soft-capping; 0: none.</summary>
    public float FinalSoftCap { get; init; }

    /// <summary>The factor queries are multiplied by after RoPE, attention then scaling by 1; 0: attention scales by 1/√head size.</summary>
    public float QueryScale { get; init; }

    public required int ExpertCount { get; init; }
    public required int ExpertUsedCount { get; init; }
    public required int VocabSize { get; init; }

    /// <summary>Width of the queries and of the attention output: heads × head size (not always the embedding length).</summary>
    public int QueryDim => HeadDim * HeadCount;
    public int KvDim => HeadDim * HeadCountKv;
    public bool IsMixtureOfExperts => ExpertCount > 0;

    /// <summary>Whether layer <paramref name="layer"/> attends over the sliding window only (llama.cpp's swa pattern).</summary>
    public bool IsLocalLayer(int layer)
    {
        int pattern = Architecture.SlidingWindowPattern;
        return SlidingWindow > 0 && pattern > 0 && layer % pattern < pattern - 1;
    }

    /// <summary>Reads and validates the hyper-parameters; a file that makes no sense gives an InvalidDataException.</summary>
    public static LlamaConfig FromModelFile(IModelFile file)
    {
        var m = file.Metadata;
        string archName = m.GetStringOrNull("general.architecture") ?? "llama";
        var arch = ModelArchitecture.Find(archName)
            ?? throw new NotSupportedException($"{file.FileName}: architecture '{archName}' is not supported ({ModelArchitecture.SupportedNames})");
        string p = arch.Name + ".";

        var embd = file.FindTensor("token_embd.weight")
            ?? throw new InvalidDataException($"{file.FileName}: tensor 'token_embd.weight' is missing");

        int dim = Int(m, p + "embedding_length");
        int heads = Int(m, p + "attention.head_count");
        int headsKv = m.ContainsKey(p + "attention.head_count_kv") ? Int(m, p + "attention.head_count_kv") : heads;
        int headDim = m.ContainsKey(p + "attention.key_length") ? Int(m, p + "attention.key_length") : (heads > 0 ? dim / heads : 0);
        int valueDim = m.ContainsKey(p + "attention.value_length") ? Int(m, p + "attention.value_length") : headDim;
        if (valueDim != headDim)
            throw new NotSupportedException($"{file.FileName}: attention.value_length {valueDim} differs from key_length {headDim}");
        int contextLength = Int(m, p + "context_length");

        // As llama.cpp: no scaling type means linear, and the factor (or the older scale_linear) applies.
        string scalingName = m.GetStringOrNull(p + "rope.scaling.type") ?? "linear";
        var scaling = scalingName switch
        {
            "none" => RopeScalingType.None,
            "linear" => RopeScalingType.Linear,
            "yarn" => RopeScalingType.Yarn,
            _ => throw new NotSupportedException($"{file.FileName}: rope scaling type '{scalingName}' is not supported (none, linear, yarn)"),
        };
        float factor = (float)(m.ContainsKey(p + "rope.scaling.factor") ? m.GetFloat(p + "rope.scaling.factor", 0)
            : m.GetFloat(p + "rope.scale_linear", 0));
        float freqScale = scaling == RopeScalingType.None || factor == 0 ? 1f : 1f / factor;
        if (freqScale == 1f && scaling == RopeScalingType.Linear) scaling = RopeScalingType.None;

        int blocks = Int(m, p + "block_count");
        int window = m.ContainsKey(p + "attention.sliding_window") ? Int(m, p + "attention.sliding_window") : arch.DefaultSlidingWindow;
        if (arch.SlidingWindowPattern == 0) window = 0;
        float finalCap = arch.SoftCapsLogits ? (float)m.GetFloat(p + "final_logit_softcapping", 30.0) : 0f;
        // Gemma 3 without a window runs llama.cpp's other gemma3 graph, the one that soft-caps the logits.
        if (arch == ModelArchitecture.Gemma3 && window == 0) finalCap = (float)m.GetFloat(p + "final_logit_softcapping", 0.0);
        float queryScale = !arch.ScalesQueries ? 0f
            : blocks == arch.WideQueryScaleLayers ? 1f / MathF.Sqrt(dim / heads) : 1f / MathF.Sqrt(headDim);

        var config = new LlamaConfig
        {
            Architecture = arch,
            ContextLength = contextLength,
            EmbeddingLength = dim,
            BlockCount = blocks,
            FeedForwardLength = Int(m, p + "feed_forward_length"),
            HeadCount = heads,
            HeadCountKv = headsKv,
            HeadDim = headDim,
            RmsEpsilon = (float)m.GetFloat(p + "attention.layer_norm_rms_epsilon", 1e-5),
            RopeFreqBase = (float)m.GetFloat(p + "rope.freq_base", 10000.0),
            RopeDimensionCount = m.ContainsKey(p + "rope.dimension_count") ? Int(m, p + "rope.dimension_count") : headDim,
            RopeScaling = scaling,
            RopeFreqScale = freqScale,
            RopeOriginalContext = m.ContainsKey(p + "rope.scaling.original_context_length")
                ? Int(m, p + "rope.scaling.original_context_length") : 0,
            RopeAttnFactor = (float)m.GetFloat(p + "rope.scaling.attn_factor", 1.0),
            SlidingWindow = window,
            RopeFreqBaseLocal = window == 0 ? 0f
                : (float)m.GetFloat(p + "rope.freq_base_swa", arch.LocalRopeBase),
            AttentionSoftCap = arch.SoftCapsAttention ? (float)m.GetFloat(p + "attn_logit_softcapping", 50.0) : 0f,
            FinalSoftCap = finalCap,
            QueryScale = queryScale,
            ExpertCount = m.ContainsKey(p + "expert_count") ? Int(m, p + "expert_count") : 0,
            ExpertUsedCount = m.ContainsKey(p + "expert_used_count") ? Int(m, p + "expert_used_count") : 0,
            VocabSize = embd.Dimensions.Length == 2 && embd.Dimensions[1] is > 0 and <= int.MaxValue
                ? (int)embd.Dimensions[1]
                : throw new InvalidDataException($"{file.FileName}: token_embd.weight has shape {embd.ShapeText}, expected 2 dimensions"),
        };
        config.Validate(file.FileName);
        return config;
    }

    private void Validate(string fileName)
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new InvalidDataException($"{fileName}: {what}");
        }
        Require(EmbeddingLength > 0 && BlockCount > 0 && FeedForwardLength > 0 && ContextLength > 0,
            "embedding_length, block_count, feed_forward_length and context_length must be positive");
        Require(HeadCount > 0 && HeadDim > 0, $"head_count {HeadCount} and the head size {HeadDim} must be positive");
        Require(HeadCountKv > 0 && HeadCount % HeadCountKv == 0, $"head_count {HeadCount} is not a multiple of head_count_kv {HeadCountKv}");
        Require(RopeDimensionCount > 0 && RopeDimensionCount <= HeadDim && RopeDimensionCount % 2 == 0,
            $"rope.dimension_count {RopeDimensionCount} must be even and at most the head size {HeadDim}");
        Require(float.IsFinite(RmsEpsilon) && RmsEpsilon >= 0, "layer_norm_rms_epsilon must be a non-negative number");
        Require(float.IsFinite(RopeFreqBase) && RopeFreqBase > 0, "rope.freq_base must be positive");
        Require(float.IsFinite(RopeFreqScale) && RopeFreqScale > 0, "rope.scaling.factor must be positive");
        Require(float.IsFinite(AttentionSoftCap) && AttentionSoftCap >= 0 && float.IsFinite(FinalSoftCap) && FinalSoftCap >= 0,
            "soft-capping values must be non-negative numbers");
        Require(float.IsFinite(RopeFreqBaseLocal) && RopeFreqBaseLocal >= 0, "rope.freq_base_swa must be positive");
        Require(ExpertCount == 0 || (ExpertUsedCount > 0 && ExpertUsedCount <= ExpertCount),
            $"expert_used_count {ExpertUsedCount} must be between 1 and expert_count {ExpertCount}");
    }

    private static int Int(GgufMetadata m, string key)
    {
        long v = m.GetInteger(key);
        if (v < 0 || v > int.MaxValue) throw new InvalidDataException($"{m.FileName}: metadata '{key}' = {v} is out of range");
        return (int)v;
    }

    public override string ToString() =>
        $"arch: {Architecture.Name}, n_vocab: {VocabSize}, n_ctx_train: {ContextLength}, n_embd: {EmbeddingLength}, n_ff: {FeedForwardLength}, " +
        $"n_layer: {BlockCount}, n_head: {HeadCount}, n_head_kv: {HeadCountKv}, n_embd_head: {HeadDim}, n_rot: {RopeDimensionCount}, " +
        $"rms_eps: {RmsEpsilon:G}, rope_freq_base: {RopeFreqBase:G}" +
        (RopeScaling == RopeScalingType.None ? "" : $", rope scaling: {RopeScaling.ToString().ToLowerInvariant()}, freq_scale: {RopeFreqScale:G}, n_ctx_orig: {RopeYarnContext}") +
        (SlidingWindow > 0 ? $", n_swa: {SlidingWindow}" + (RopeFreqBaseLocal > 0 ? $", rope_freq_base_swa: {RopeFreqBaseLocal:G}" : "") : "") +
        (AttentionSoftCap > 0 ? $", attn_soft_cap: {AttentionSoftCap:G}" : "") + (FinalSoftCap > 0 ? $", final_soft_cap: {FinalSoftCap:G}" : "") +
        (IsMixtureOfExperts ? $", n_expert: {ExpertCount}, n_expert_used: {ExpertUsedCount}" : "");
}

using QuantLlama.Gguf;

namespace QuantLlama.Models;

/// <summary>
/// Hyper-parameters of a LLaMA-family model (LLaMA, Mistral, Mixtral), read from the <c>llama.*</c> metadata of a
/// model file. The vocabulary size comes from the token embedding's shape, which is what the weights really hold.
/// </summary>
public sealed record LlamaConfig
{
    public required int ContextLength { get; init; }
    public required int EmbeddingLength { get; init; }
    public required int BlockCount { get; init; }
    public required int FeedForwardLength { get; init; }
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }
    public required float RmsEpsilon { get; init; }
    public required float RopeFreqBase { get; init; }
    public required int RopeDimensionCount { get; init; }
    public required int ExpertCount { get; init; }
    public required int ExpertUsedCount { get; init; }
    public required int VocabSize { get; init; }

    public int HeadDim => EmbeddingLength / HeadCount;
    public int KvDim => HeadDim * HeadCountKv;
    public bool IsMixtureOfExperts => ExpertCount > 0;

    /// <summary>Reads and validates the hyper-parameters; a file that makes no sense gives an InvalidDataException.</summary>
    public static LlamaConfig FromModelFile(IModelFile file)
    {
        var m = file.Metadata;
        string arch = m.GetStringOrNull("general.architecture") ?? "llama";
        if (arch != "llama")
            throw new NotSupportedException($"{file.FileName}: architecture '{arch}' is not supported (only 'llama': LLaMA, Mistral, Mixtral)");

        var embd = file.FindTensor("token_embd.weight")
            ?? throw new InvalidDataException($"{file.FileName}: tensor 'token_embd.weight' is missing");

        int dim = Int(m, "llama.embedding_length");
        int heads = Int(m, "llama.attention.head_count");
        int headsKv = m.ContainsKey("llama.attention.head_count_kv") ? Int(m, "llama.attention.head_count_kv") : heads;
        var config = new LlamaConfig
        {
            ContextLength = Int(m, "llama.context_length"),
            EmbeddingLength = dim,
            BlockCount = Int(m, "llama.block_count"),
            FeedForwardLength = Int(m, "llama.feed_forward_length"),
            HeadCount = heads,
            HeadCountKv = headsKv,
            RmsEpsilon = (float)m.GetFloat("llama.attention.layer_norm_rms_epsilon", 1e-5),
            RopeFreqBase = (float)m.GetFloat("llama.rope.freq_base", 10000.0),
            RopeDimensionCount = m.ContainsKey("llama.rope.dimension_count")
                ? Int(m, "llama.rope.dimension_count") : (heads > 0 ? dim / heads : 0),
            ExpertCount = m.ContainsKey("llama.expert_count") ? Int(m, "llama.expert_count") : 0,
            ExpertUsedCount = m.ContainsKey("llama.expert_used_count") ? Int(m, "llama.expert_used_count") : 0,
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
        Require(HeadCount > 0 && EmbeddingLength % HeadCount == 0, $"embedding_length {EmbeddingLength} is not a multiple of head_count {HeadCount}");
        Require(HeadCountKv > 0 && HeadCount % HeadCountKv == 0, $"head_count {HeadCount} is not a multiple of head_count_kv {HeadCountKv}");
        Require(RopeDimensionCount > 0 && RopeDimensionCount <= HeadDim && RopeDimensionCount % 2 == 0,
            $"rope.dimension_count {RopeDimensionCount} must be even and at most the head size {HeadDim}");
        Require(float.IsFinite(RmsEpsilon) && RmsEpsilon >= 0, "layer_norm_rms_epsilon must be a non-negative number");
        Require(float.IsFinite(RopeFreqBase) && RopeFreqBase > 0, "rope.freq_base must be positive");
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
        $"n_vocab: {VocabSize}, n_ctx_train: {ContextLength}, n_embd: {EmbeddingLength}, n_ff: {FeedForwardLength}, " +
        $"n_layer: {BlockCount}, n_head: {HeadCount}, n_head_kv: {HeadCountKv}, n_rot: {RopeDimensionCount}, " +
        $"rms_eps: {RmsEpsilon:G}, rope_freq_base: {RopeFreqBase:G}" +
        (IsMixtureOfExperts ? $", n_expert: {ExpertCount}, n_expert_used: {ExpertUsedCount}" : "");
}

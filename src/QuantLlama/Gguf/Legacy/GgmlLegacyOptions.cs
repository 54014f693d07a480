namespace QuantLlama.Gguf.Legacy;

/// <summary>
/// What a legacy ggml/ggmf/ggjt file does not record and a reader must assume. The defaults are candle's for these
/// files (its quantized example runs Llama-2 GGML files with a 4096-token rope table, RMS epsilon 1e-5, rope base
/// 10000); llama.cpp's own ggml-to-gguf converter asked the user instead (defaults 2048 and 5e-6).
/// </summary>
public sealed record GgmlLegacyOptions
{
    /// <summary>Query heads per key/value head (8 for Llama-2-70B). The K projection's shape, when present, decides;
    /// a value other than 1 that contradicts it is an error.</summary>
    public int Gqa { get; init; } = 1;

    /// <summary>Written as <c>llama.context_length</c>.</summary>
    public int ContextLength { get; init; } = 4096;

    /// <summary>Written as <c>llama.attention.layer_norm_rms_epsilon</c> (1e-5 for Llama 2, 1e-6 for Llama 1).</summary>
    public float RmsNormEpsilon { get; init; } = 1e-5f;

    /// <summary>Written as <c>llama.rope.freq_base</c>.</summary>
    public float RopeFreqBase { get; init; } = 10000f;

    public static GgmlLegacyOptions Default { get; } = new();
}

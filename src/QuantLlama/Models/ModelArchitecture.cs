namespace QuantLlama.Models;

/// <summary>How RoPE pairs the values of a head.</summary>
public enum RopeMode
{
    /// <summary>Adjacent pairs (x[2i], x[2i+1]): LLaMA.</summary>
    Normal,

    /// <summary>Halves (x[i], x[i + n_rot/2]): GPT-NeoX, Qwen.</summary>
    Neox,
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

    /// <summary>LLaMA 1-3, Mistral, Mixtral (and any file without general.architecture).</summary>
    public static readonly ModelArchitecture Llama = new() { Name = "llama", Rope = RopeMode.Normal, AllowsAttentionBias = true, AllowsRopeFreqFactors = true };

    /// <summary>Qwen2 / Qwen2.5: LLaMA with Q/K/V biases and NeoX RoPE.</summary>
    public static readonly ModelArchitecture Qwen2 = new() { Name = "qwen2", Rope = RopeMode.Neox, RequiresQkvBias = true };

    /// <summary>Qwen3 (dense): LLaMA with per-head Q/K RMS norms and NeoX RoPE.</summary>
    public static readonly ModelArchitecture Qwen3 = new() { Name = "qwen3", Rope = RopeMode.Neox, HasQkNorm = true };

    public static IReadOnlyList<ModelArchitecture> Supported { get; } = [Llama, Qwen2, Qwen3];

    public static string SupportedNames => string.Join(", ", Supported.Select(a => a.Name));

    public static ModelArchitecture? Find(string name) => Supported.FirstOrDefault(a => a.Name == name);

    public override string ToString() => Name;
}

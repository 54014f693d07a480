namespace QuantLlama.Gguf.Legacy;

/// <summary>
/// Maps the tensor names of legacy llama files (Meta's checkpoint names) to GGUF's and back.
/// Names it does not know are kept unchanged.
/// </summary>
public static class LegacyTensorNames
{
    private static readonly (string Legacy, string Gguf)[] TopLevel =
    [
        ("tok_embeddings", "token_embd"),
        ("norm", "output_norm"),
        ("output", "output"),
    ];

    private static readonly (string Legacy, string Gguf)[] PerLayer =
    [
        ("attention.wq", "attn_q"),
        ("attention.wk", "attn_k"),
        ("attention.wv", "attn_v"),
        ("attention.wo", "attn_output"),
        ("attention_norm", "attn_norm"),
        ("feed_forward.w1", "ffn_gate"),
        ("feed_forward.w2", "ffn_down"),
        ("feed_forward.w3", "ffn_up"),
        ("ffn_norm", "ffn_norm"),
    ];

    public static string ToGguf(string legacyName) => Map(legacyName, "layers.", "blk.", fromLegacy: true);

    public static string ToLegacy(string ggufName) => Map(ggufName, "blk.", "layers.", fromLegacy: false);

    private static string Map(string name, string layerPrefix, string newLayerPrefix, bool fromLegacy)
    {
        string stem = name, suffix = "";
        foreach (var s in (ReadOnlySpan<string>)[".weight", ".bias"])
        {
            if (name.EndsWith(s, StringComparison.Ordinal))
            {
                stem = name[..^s.Length];
                suffix = s;
                break;
            }
        }

        foreach (var (legacy, gguf) in TopLevel)
        {
            if (stem == (fromLegacy ? legacy : gguf)) return (fromLegacy ? gguf : legacy) + suffix;
        }

        if (stem.StartsWith(layerPrefix, StringComparison.Ordinal))
        {
            int dot = stem.IndexOf('.', layerPrefix.Length);
            if (dot > layerPrefix.Length && IsDigits(stem.AsSpan(layerPrefix.Length, dot - layerPrefix.Length)))
            {
                string layer = stem[layerPrefix.Length..dot];
                string rest = stem[(dot + 1)..];
                foreach (var (legacy, gguf) in PerLayer)
                {
                    if (rest == (fromLegacy ? legacy : gguf))
                        return newLayerPrefix + layer + "." + (fromLegacy ? gguf : legacy) + suffix;
                }
            }
        }
        return name;
    }

    private static bool IsDigits(ReadOnlySpan<char> s)
    {
        foreach (char c in s)
        {
            if (c is < '0' or > '9') return false;
        }
        return true;
    }
}

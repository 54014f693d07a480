using QuantLlama.Quants.IQuants;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;
using static QuantLlama.Tensors.GgmlTypeInfo;

namespace QuantLlama.Quants;

/// <summary>
/// Every ggml type, one line each: a format's own description (declared in its file), or the block geometry alone of
/// a type the engine can size but not convert. The type table, the quantizer, the dequantizer and the kernel table
/// are all read from here; adding a format is its file plus its line (in place of its geometry line).
/// </summary>
internal static class QuantFormats
{
    private static readonly QuantFormat?[] ByType = Index(
    [
        F32.Description,
        F16.Description,
        BF16.Description,
        Q4_0.Description,
        Q4_1.Description,
        Q5_0.Description,
        Q5_1.Description,
        Q8_0.Description,
        Q8_1.Description,
        Q2_K.Description,
        Q3_K.Description,
        Q4_K.Description,
        Q5_K.Description,
        Q6_K.Description,
        Q8_K.Description,
        IQ2_XXS.Description,
        IQ2_XS.Description,
        IQ3_XXS.Description,
        IQ1_S.Description,
        IQ4_NL.Description,
        IQ3_S.Description,
        IQ2_S.Description,
        IQ4_XS.Description,
        QuantFormat.LayoutOnly(GgmlType.I8, 1, 1),
        QuantFormat.LayoutOnly(GgmlType.I16, 1, 2),
        QuantFormat.LayoutOnly(GgmlType.I32, 1, 4),
        QuantFormat.LayoutOnly(GgmlType.I64, 1, 8),
        QuantFormat.LayoutOnly(GgmlType.F64, 1, 8),
        IQ1_M.Description,
        TQ1_0.Description,
        TQ2_0.Description,
        QuantFormat.LayoutOnly(GgmlType.MXFP4, 32, 1 + 16),
    ]);

    /// <summary>One more than the largest type number listed.</summary>
    public static int Count => ByType.Length;

    /// <summary>The listed types in order of their numbers.</summary>
    public static IEnumerable<QuantFormat> All => ByType.Where(f => f.HasValue).Select(f => f!.Value);

    /// <summary>The description of <paramref name="type"/>, or null for a number ggml does not define.</summary>
    public static QuantFormat? Find(uint type) => type < ByType.Length ? ByType[type] : null;

    private static QuantFormat?[] Index(QuantFormat[] formats)
    {
        var byType = new QuantFormat?[formats.Max(f => (int)f.Type) + 1];
        foreach (var f in formats)
        {
            if (byType[(int)f.Type] != null) throw new InvalidOperationException($"{f.Type} is listed twice");
            byType[(int)f.Type] = f;
        }
        return byType;
    }
}

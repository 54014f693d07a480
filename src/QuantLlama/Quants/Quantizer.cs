using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>f32 values to blocks of any supported type, byte for byte as ggml's reference quantizers.</summary>
public static unsafe class Quantizer
{
    /// <summary>True when <see cref="QuantizeRow"/> handles the type (IQ2_XXS and IQ2_XS only quantize with an importance matrix: <see cref="IsSupportedWithImportance"/>).</summary>
    public static bool IsSupported(GgmlType type) => QuantFormats.Find((uint)type)?.Quantize != null;

    /// <summary>Quantizes src (a whole number of blocks) into dst (RowBytes(type, src.Length) bytes).</summary>
    public static void QuantizeRow(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        var format = QuantFormats.Find((uint)type);
        var quantize = format?.Quantize;
        if (quantize == null && format?.QuantizeWeighted != null)
            throw new ArgumentException($"quantizing to {type} needs an importance matrix (ggml quantizes it only with one)");
        if (quantize == null) throw new NotSupportedException($"quantizing to {type} is not implemented");
        quantize(src, dst);
    }

    /// <summary>
    /// True when <see cref="QuantizeRowWeighted"/> can use an importance matrix for the type: the formats whose
    /// quantizer takes one, and the types ggml quantizes the same with or without it.
    /// </summary>
    public static bool IsSupportedWithImportance(GgmlType type)
        => QuantFormats.Find((uint)type)?.QuantizeWeighted != null || IgnoresImportance(type);

    private static bool IgnoresImportance(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0;

    /// <summary>As ggml_quantize_chunk with quant_weights: <paramref name="importance"/> holds one weight per value of
    /// the row (its columns' importance); empty quantizes as without.</summary>
    public static void QuantizeRowWeighted(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        var weighted = QuantFormats.Find((uint)type)?.QuantizeWeighted;
        if (importance.IsEmpty || (weighted == null && IgnoresImportance(type))) QuantizeRow(type, src, dst);
        else if (weighted != null) weighted(src, dst, importance);
        else throw new NotSupportedException($"quantizing to {type} with an importance matrix is not implemented");
    }
}

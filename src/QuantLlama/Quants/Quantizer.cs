using System.Runtime.InteropServices;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>f32 values to blocks of any supported type, byte for byte as ggml's reference quantizers.</summary>
public static class Quantizer
{
    /// <summary>True when <see cref="QuantizeRow"/> handles the type.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K
        or GgmlType.IQ4_NL or GgmlType.IQ4_XS or GgmlType.IQ3_XXS or GgmlType.IQ3_S;

    /// <summary>Quantizes src (a whole number of blocks) into dst (RowBytes(type, src.Length) bytes).</summary>
    public static void QuantizeRow(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.AsBytes(src).CopyTo(dst);
                return;
            case GgmlType.F16: F16.Quantize(src, dst); return;
            case GgmlType.BF16: BF16.Quantize(src, dst); return;
            case GgmlType.Q4_0: Q4_0.Quantize(src, dst); return;
            case GgmlType.Q4_1: Q4_1.Quantize(src, dst); return;
            case GgmlType.Q5_0: Q5_0.Quantize(src, dst); return;
            case GgmlType.Q5_1: Q5_1.Quantize(src, dst); return;
            case GgmlType.Q8_0: Q8_0.Quantize(src, dst); return;
            case GgmlType.Q8_1: Q8_1.Quantize(src, dst); return;
            case GgmlType.Q2_K: KQuants.Q2_K.Quantize(src, dst); return;
            case GgmlType.Q3_K: KQuants.Q3_K.Quantize(src, dst); return;
            case GgmlType.Q4_K: KQuants.Q4_K.Quantize(src, dst); return;
            case GgmlType.Q5_K: KQuants.Q5_K.Quantize(src, dst); return;
            case GgmlType.Q6_K: KQuants.Q6_K.Quantize(src, dst); return;
            case GgmlType.Q8_K: KQuants.Q8_K.Quantize(src, dst); return;
            case GgmlType.IQ4_NL: IQuants.IQ4_NL.Quantize(src, dst); return;
            case GgmlType.IQ4_XS: IQuants.IQ4_XS.Quantize(src, dst); return;
            case GgmlType.IQ3_XXS: IQuants.IQ3_XXS.Quantize(src, dst); return;
            case GgmlType.IQ3_S: IQuants.IQ3_S.Quantize(src, dst); return;
            default:
                throw new NotSupportedException($"quantizing to {type} is not implemented");
        }
    }

    /// <summary>
    /// True when <see cref="QuantizeRowWeighted"/> can use an
    /// importance matrix for the type: the quantizers that take one, and the types ggml quantizes without it anyway.
    /// </summary>
    public static bool IsSupportedWithImportance(GgmlType type)
        => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.IQ4_NL or GgmlType.IQ4_XS
            or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.IQ3_XXS or GgmlType.IQ3_S;

    /// <summary>As ggml_quantize_chunk with quant_weights: <paramref name="importance"/> holds one weight per value of
    /// the row (its columns' importance); empty quantizes as without.</summary>
    public static void QuantizeRowWeighted(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        if (importance.IsEmpty)
        {
            QuantizeRow(type, src, dst);
            return;
        }
        switch (type)
        {
            case GgmlType.IQ4_NL: IQuants.IQ4_NL.Quantize(src, dst, importance); return;
            case GgmlType.IQ4_XS: IQuants.IQ4_XS.Quantize(src, dst, importance); return;
            case GgmlType.Q4_K: KQuants.Q4_K.Quantize(src, dst, importance); return;
            case GgmlType.Q5_K: KQuants.Q5_K.Quantize(src, dst, importance); return;
            case GgmlType.Q6_K: KQuants.Q6_K.Quantize(src, dst, importance); return;
            case GgmlType.IQ3_XXS: IQuants.IQ3_XXS.Quantize(src, dst, importance); return;
            case GgmlType.IQ3_S: IQuants.IQ3_S.Quantize(src, dst, importance); return;
            case GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0: QuantizeRow(type, src, dst); return;
            default: throw new NotSupportedException($"quantizing to {type} with an importance matrix is not implemented");
        }
    }
}

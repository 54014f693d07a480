using System.Runtime.InteropServices;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>Blocks of any supported type to f32 values.</summary>
public static class Dequantizer
{
    /// <summary>True when <see cref="DequantizeRow"/> handles the type.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K
        or GgmlType.IQ4_NL or GgmlType.IQ4_XS or GgmlType.IQ2_XXS or GgmlType.IQ3_XXS or GgmlType.IQ3_S
        or GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ1_S or GgmlType.IQ1_M or GgmlType.TQ1_0 or GgmlType.TQ2_0;

    /// <summary>Dequantizes src (a whole number of blocks of <paramref name="type"/>) into dst.</summary>
    public static void DequantizeRow(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                return;
            case GgmlType.F16: F16.Dequantize(src, dst); return;
            case GgmlType.BF16: BF16.Dequantize(src, dst); return;
            case GgmlType.Q4_0: Q4_0.Dequantize(src, dst); return;
            case GgmlType.Q4_1: Q4_1.Dequantize(src, dst); return;
            case GgmlType.Q5_0: Q5_0.Dequantize(src, dst); return;
            case GgmlType.Q5_1: Q5_1.Dequantize(src, dst); return;
            case GgmlType.Q8_0: Q8_0.Dequantize(src, dst); return;
            case GgmlType.Q8_1: Q8_1.Dequantize(src, dst); return;
            case GgmlType.Q2_K: KQuants.Q2_K.Dequantize(src, dst); return;
            case GgmlType.Q3_K: KQuants.Q3_K.Dequantize(src, dst); return;
            case GgmlType.Q4_K: KQuants.Q4_K.Dequantize(src, dst); return;
            case GgmlType.Q5_K: KQuants.Q5_K.Dequantize(src, dst); return;
            case GgmlType.Q6_K: KQuants.Q6_K.Dequantize(src, dst); return;
            case GgmlType.Q8_K: KQuants.Q8_K.Dequantize(src, dst); return;
            case GgmlType.IQ4_NL: IQuants.IQ4_NL.Dequantize(src, dst); return;
            case GgmlType.IQ4_XS: IQuants.IQ4_XS.Dequantize(src, dst); return;
            case GgmlType.IQ2_XXS: IQuants.IQ2_XXS.Dequantize(src, dst); return;
            case GgmlType.IQ3_XXS: IQuants.IQ3_XXS.Dequantize(src, dst); return;
            case GgmlType.IQ3_S: IQuants.IQ3_S.Dequantize(src, dst); return;
            case GgmlType.IQ2_XS: IQuants.IQ2_XS.Dequantize(src, dst); return;
            case GgmlType.IQ2_S: IQuants.IQ2_S.Dequantize(src, dst); return;
            case GgmlType.IQ1_S: IQuants.IQ1_S.Dequantize(src, dst); return;
            case GgmlType.IQ1_M: IQuants.IQ1_M.Dequantize(src, dst); return;
            case GgmlType.TQ1_0: TQ1_0.Dequantize(src, dst); return;
            case GgmlType.TQ2_0: TQ2_0.Dequantize(src, dst); return;
            default:
                throw new NotSupportedException($"dequantizing {type} is not implemented");
        }
    }
}

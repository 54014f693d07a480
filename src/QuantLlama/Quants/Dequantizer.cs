using System.Runtime.InteropServices;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>Blocks of any supported type to f32 values.</summary>
public static class Dequantizer
{
    /// <summary>Dequantizes src (a whole number of blocks of <paramref name="type"/>) into dst.</summary>
    public static void DequantizeRow(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                return;
            case GgmlType.F16:
                var h = MemoryMarshal.Cast<byte, Half>(src);
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)h[i];
                return;
            case GgmlType.Q2_K: KQuants.Q2_K.Dequantize(src, dst); return;
            case GgmlType.Q3_K: KQuants.Q3_K.Dequantize(src, dst); return;
            case GgmlType.Q4_K: KQuants.Q4_K.Dequantize(src, dst); return;
            case GgmlType.Q5_K: KQuants.Q5_K.Dequantize(src, dst); return;
            case GgmlType.Q6_K: KQuants.Q6_K.Dequantize(src, dst); return;
            case GgmlType.Q8_K: KQuants.Q8_K.Dequantize(src, dst); return;
            default:
                throw new NotSupportedException($"dequantizing {type} is not implemented");
        }
    }
}

using System.Runtime.InteropServices;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>f32 values to blocks of any supported type, byte for byte as ggml's reference quantizers.</summary>
public static class Quantizer
{
    /// <summary>Quantizes src (a whole number of blocks) into dst (RowBytes(type, src.Length) bytes).</summary>
    public static void QuantizeRow(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.AsBytes(src).CopyTo(dst);
                return;
            case GgmlType.F16:
                var h = MemoryMarshal.Cast<byte, Half>(dst);
                for (int i = 0; i < src.Length; i++) h[i] = (Half)src[i];
                return;
            case GgmlType.Q2_K: KQuants.Q2_K.Quantize(src, dst); return;
            case GgmlType.Q3_K: KQuants.Q3_K.Quantize(src, dst); return;
            case GgmlType.Q4_K: KQuants.Q4_K.Quantize(src, dst); return;
            case GgmlType.Q5_K: KQuants.Q5_K.Quantize(src, dst); return;
            case GgmlType.Q6_K: KQuants.Q6_K.Quantize(src, dst); return;
            case GgmlType.Q8_K: KQuants.Q8_K.Quantize(src, dst); return;
            default:
                throw new NotSupportedException($"quantizing to {type} is not implemented");
        }
    }
}

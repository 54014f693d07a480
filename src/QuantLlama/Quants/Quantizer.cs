using System.Runtime.InteropServices;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>f32 values to blocks of any supported type, byte for byte as ggml's reference quantizers.</summary>
public static class Quantizer
{
    /// <summary>True when <see cref="QuantizeRow"/> handles the type.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1;
    // KQUANTS: add Q2_K..Q8_K here once the kquants branch lands.

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
            // KQUANTS: case GgmlType.Q4_K: KQuants.Q4_K.Quantize(src, dst); return; (and Q2_K, Q3_K, Q5_K, Q6_K, Q8_K)
            default:
                throw new NotSupportedException($"quantizing to {type} is not implemented");
        }
    }
}

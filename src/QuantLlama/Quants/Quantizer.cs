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
            default:
                throw new NotSupportedException($"quantizing to {type} is not implemented");
        }
    }
}

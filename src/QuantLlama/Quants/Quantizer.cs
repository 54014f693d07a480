using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>f32 values to blocks of any supported type, byte for byte as ggml's reference quantizers.</summary>
public static unsafe class Quantizer
{
    /// <summary>True when <see cref="QuantizeRow"/> handles the type.</summary>
    public static bool IsSupported(GgmlType type) => QuantFormats.Find((uint)type)?.Quantize != null;

    /// <summary>Quantizes src (a whole number of blocks) into dst (RowBytes(type, src.Length) bytes).</summary>
    public static void QuantizeRow(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        var quantize = QuantFormats.Find((uint)type)?.Quantize;
        if (quantize == null) throw new NotSupportedException($"quantizing to {type} is not implemented");
        quantize(src, dst);
    }
}

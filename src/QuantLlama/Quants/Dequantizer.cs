using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>Blocks of any supported type to f32 values.</summary>
public static unsafe class Dequantizer
{
    /// <summary>True when <see cref="DequantizeRow"/> handles the type.</summary>
    public static bool IsSupported(GgmlType type) => QuantFormats.Find((uint)type)?.Dequantize != null;

    /// <summary>Dequantizes src (a whole number of blocks of <paramref name="type"/>) into dst.</summary>
    public static void DequantizeRow(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        var dequantize = QuantFormats.Find((uint)type)?.Dequantize;
        if (dequantize == null) throw new NotSupportedException($"dequantizing {type} is not implemented");
        dequantize(src, dst);
    }
}

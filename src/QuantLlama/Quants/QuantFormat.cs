using System.Diagnostics.CodeAnalysis;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// One ggml type as the engine knows it: its block geometry, its row quantizer and dequantizer, and the matrix kernels
/// over weights of the type. Each format declares its own in its file (a static <c>Description</c>), and
/// <see cref="QuantFormats"/> lists them; <see cref="GgmlTypeInfo"/>, <see cref="Quantizer"/>,
/// <see cref="Dequantizer"/> and <see cref="QuantKernels"/> all read that list.
/// </summary>
internal readonly unsafe struct QuantFormat
{
    public required GgmlType Type { get; init; }
    /// <summary>Values per block.</summary>
    public required int BlockSize { get; init; }
    /// <summary>Bytes per block.</summary>
    public required int BlockBytes { get; init; }
    /// <summary>(src, dst): a whole number of blocks of f32 values to blocks; null where the format is read-only.</summary>
    public delegate*<ReadOnlySpan<float>, Span<byte>, void> Quantize { get; init; }
    /// <summary>
    /// (src, dst, importance): <see cref="Quantize"/> weighted by one importance per value (ggml's quant_weights, from an
    /// importance matrix); null where the format's quantizer takes no weights.
    /// </summary>
    public delegate*<ReadOnlySpan<float>, Span<byte>, ReadOnlySpan<float>, void> QuantizeWeighted { get; init; }
    /// <summary>(src, dst): a whole number of blocks to f32 values; null where only the geometry is known.</summary>
    public delegate*<ReadOnlySpan<byte>, Span<float>, void> Dequantize { get; init; }
    /// <summary>Matrix products over weights of this type; null where they are not implemented.</summary>
    public TypeKernel? Kernel { get; init; }

    [SetsRequiredMembers]
    public QuantFormat(GgmlType type, int blockSize, int blockBytes, delegate*<ReadOnlySpan<float>, Span<byte>, void> quantize,
        delegate*<ReadOnlySpan<byte>, Span<float>, void> dequantize, TypeKernel? kernel = null)
    {
        Type = type;
        BlockSize = blockSize;
        BlockBytes = blockBytes;
        Quantize = quantize;
        Dequantize = dequantize;
        Kernel = kernel;
    }

    /// <summary>A type whose tensors can be sized and skipped but not converted or multiplied.</summary>
    public static QuantFormat LayoutOnly(GgmlType type, int blockSize, int blockBytes) => new(type, blockSize, blockBytes, null, null);
}

/// <summary>
/// The form in which a weight type's row dot takes its activation: ggml's vec_dot_type, its quantizer, and how our
/// kernels hold it. Each partner type declares its forms in its own file (<c>Q8_0.Activation</c>, ...).
/// </summary>
internal readonly unsafe struct ActivationForm
{
    /// <summary>The ggml type the activation is quantized to (vec_dot_type).</summary>
    public required GgmlType Type { get; init; }
    /// <summary>(x, dst, n): n f32 values to this form.</summary>
    public required delegate*<float*, byte*, int, void> Quantize { get; init; }
    /// <summary>
    /// True when the activation is held as f32 values already rounded to <see cref="Type"/>: the same numbers ggml's
    /// dot sees, but read without converting them again for every weight row.
    /// </summary>
    public bool AsFloats { get; init; }
    /// <summary>
    /// True when each activation row is followed by its blocks' scales as f32 and sums of quants, read by the AVX2
    /// row dot (Q4_0 and Q8_0: see <see cref="Q8Products.QuantizeActivation"/>).
    /// </summary>
    public bool BlockInfoAppended { get; init; }

    /// <summary>Bytes of one activation row of <paramref name="cols"/> values.</summary>
    public long RowBytes(int cols) => AsFloats ? 4L * cols
        : BlockInfoAppended ? Q8Products.ActivationRowBytes(cols) : GgmlTypeInfo.RowBytes(Type, cols);

    /// <summary>True when two forms are the same (so products can share one quantized activation).</summary>
    public bool SameAs(in ActivationForm other)
        => Type == other.Type && AsFloats == other.AsFloats && BlockInfoAppended == other.BlockInfoAppended;
}

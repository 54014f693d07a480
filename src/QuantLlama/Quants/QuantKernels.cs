using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// For one weight type: the activation form its row dot takes (ggml's vec_dot_type and how we hold it) and the row
/// dot. <c>Dot4Avx2</c> (optional) computes one weight row against 4 activation rows with exactly the per-row
/// arithmetic of <c>Dot</c> on the AVX2 path, so MatMat and MatVec agree to the bit. Declared in the format's
/// <see cref="QuantFormat"/>.
/// </summary>
internal readonly unsafe struct TypeKernel
{
    /// <summary>The weight type (filled in from the format's <see cref="QuantFormat.Type"/>).</summary>
    public GgmlType WeightType { get; init; }
    public required ActivationForm Activation { get; init; }
    /// <summary>(weights, activation, n): dot of n values.</summary>
    public required delegate*<byte*, byte*, int, float> Dot { get; init; }
    /// <summary>
    /// (weights, activation, n): the row dot for every row of a matrix of a multiple of 4 rows, where ggml's batched
    /// products sum differently from its vector dot (F32: tinyBLAS); null: <see cref="Dot"/>.
    /// </summary>
    public delegate*<byte*, byte*, int, float> DotOverRowQuads { get; init; }
    /// <summary>(weights, activation, activationStride, n, y, yStride) for 4 activation rows; AVX2 path only.</summary>
    public delegate*<byte*, byte*, nint, int, float*, nint, void> Dot4Avx2 { get; init; }
    /// <summary>(weights, activation, activationStride, n, y, yStride) for 8 activation rows; AVX2 path only.</summary>
    public delegate*<byte*, byte*, nint, int, float*, nint, void> Dot8Avx2 { get; init; }
    /// <summary><see cref="Dot8Avx2"/>'s form for the AVX-512 path (the same arguments, the same arithmetic per row).</summary>
    public delegate*<byte*, byte*, nint, int, float*, nint, void> Dot8Avx512 { get; init; }
    /// <summary>
    /// (weights, tile, n, y, yStride): one weight row against 8 activation rows packed by
    /// <see cref="PackActivationTile"/>, one activation row per vector lane; AVX2 path only.
    /// </summary>
    public delegate*<byte*, byte*, int, float*, nint, void> Dot8PackedAvx2 { get; init; }
    /// <summary>(rows, stride, n, tile): 8 activation rows into the tile form <see cref="Dot8PackedAvx2"/> reads.</summary>
    public delegate*<byte*, nint, int, byte*, void> PackActivationTile { get; init; }
    /// <summary>(n): bytes of one packed tile of 8 activation rows of n values.</summary>
    public delegate*<int, long> PackedTileBytes { get; init; }
    /// <summary>
    /// <see cref="Dot8PackedAvx2"/>'s form for the AVX-512 path (two blocks per 512-bit step, the same arithmetic per
    /// row), over tiles of the same size packed by <see cref="PackActivationTileAvx512"/>.
    /// </summary>
    public delegate*<byte*, byte*, int, float*, nint, void> Dot8PackedAvx512 { get; init; }
    /// <summary>(rows, stride, n, tile): 8 activation rows into the tile form <see cref="Dot8PackedAvx512"/> reads.</summary>
    public delegate*<byte*, nint, int, byte*, void> PackActivationTileAvx512 { get; init; }
    /// <summary><see cref="Dot8PackedAvx2"/>'s form with AVX-VNNI's byte dot (the same tiles, the same arithmetic per row).</summary>
    public delegate*<byte*, byte*, int, float*, nint, void> Dot8PackedAvxVnni { get; init; }
    /// <summary>
    /// (weights, quad, n, y, yStride, count): one weight row against up to 4 activation rows packed by
    /// <see cref="PackActivationQuad"/>, the first count results stored; per row the row dot's arithmetic; AVX2 path.
    /// </summary>
    public delegate*<byte*, byte*, int, float*, nint, int, void> Dot4PackedAvx2 { get; init; }
    /// <summary><see cref="Dot4PackedAvx2"/>'s form for the AVX-512 path (the same quads, the same arithmetic per row).</summary>
    public delegate*<byte*, byte*, int, float*, nint, int, void> Dot4PackedAvx512 { get; init; }
    /// <summary>(rows, stride, count, n, quad): 1 to 4 activation rows into the form <see cref="Dot4PackedAvx2"/> reads, zero rows after them.</summary>
    public delegate*<byte*, nint, int, int, byte*, void> PackActivationQuad { get; init; }
    /// <summary>(n): bytes of one packed quad of activation rows of n values.</summary>
    public delegate*<int, long> PackedQuadBytes { get; init; }

    /// <summary>
    /// This kernel with its packed tile replaced by the current path's faster form where the format and the CPU have
    /// one: AVX-512's on the AVX-512 path, AVX-VNNI's on the AVX2 path. Each does per row exactly the AVX2 row dot's
    /// arithmetic, so a result does not depend on which serves it.
    /// </summary>
    public TypeKernel OnCurrentPath()
    {
        var kernel = this;
        if (Kernels.UseAvx512 && Dot4PackedAvx512 != null) kernel = kernel with { Dot4PackedAvx2 = Dot4PackedAvx512 };
        if (Kernels.UseAvx512 && Dot8Avx512 != null) kernel = kernel with { Dot8Avx2 = Dot8Avx512 };
        if (Dot8PackedAvx2 == null) return kernel;
        if (Kernels.UseAvx512 && Dot8PackedAvx512 != null)
            return kernel with { Dot8PackedAvx2 = Dot8PackedAvx512, PackActivationTile = PackActivationTileAvx512 };
        if (Kernels.UseAvx2 && !Kernels.UseAvx512 && Dot8PackedAvxVnni != null && System.Runtime.Intrinsics.X86.AvxVnni.IsSupported)
            return kernel with { Dot8PackedAvx2 = Dot8PackedAvxVnni };
        return kernel;
    }

    /// <summary>The activation type ggml pairs with the weight type (vec_dot_type).</summary>
    public GgmlType ActivationType => Activation.Type;
    /// <summary>(x, dst, n): n f32 values to the activation form.</summary>
    public delegate*<float*, byte*, int, void> QuantizeActivation => Activation.Quantize;
    /// <inheritdoc cref="ActivationForm.AsFloats"/>
    public bool ActivationAsFloats => Activation.AsFloats;
    /// <inheritdoc cref="ActivationForm.BlockInfoAppended"/>
    public bool ActivationBlockInfoAppended => Activation.BlockInfoAppended;

    /// <summary>True when the AVX2 path has tiles (several activation rows per call) for this type.</summary>
    public bool HasTiles => Dot4Avx2 != null || Dot8Avx2 != null || Dot8PackedAvx2 != null;

    /// <summary>Bytes of one quantized activation row of <paramref name="cols"/> values.</summary>
    public long ActivationRowBytes(int cols) => Activation.RowBytes(cols);

    /// <summary>True when two kernels take their activation in the same form (so products can share one).</summary>
    public bool SharesActivationWith(in TypeKernel other) => Activation.SameAs(other.Activation);
}

/// <summary>The matrix kernels of every weight type, as the formats in <see cref="QuantFormats"/> declare them.</summary>
internal static class QuantKernels
{
    private static readonly TypeKernel?[] Table = Build();

    private static TypeKernel?[] Build()
    {
        var table = new TypeKernel?[QuantFormats.Count];
        foreach (var format in QuantFormats.All)
            if (format.Kernel is { } kernel) table[(int)format.Type] = kernel with { WeightType = format.Type };
        return table;
    }

    /// <summary>True when matrix products over weights of this type are implemented.</summary>
    public static bool IsSupported(GgmlType type) => (uint)type < (uint)Table.Length && Table[(int)type].HasValue;

    public static TypeKernel Get(GgmlType type)
        => IsSupported(type) ? Table[(int)type]!.Value : throw new NotSupportedException($"matrix products over {type} weights are not implemented");
}

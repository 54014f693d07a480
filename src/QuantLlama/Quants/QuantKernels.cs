using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// For one weight type: the activation type ggml pairs it with (vec_dot_type), the activation quantizer and the
/// row dot. <c>Dot4</c> (optional) computes one weight row against 4 activation rows with exactly the per-row
/// arithmetic of <c>Dot</c> on the AVX2 path, so MatMat and MatVec agree to the bit.
/// </summary>
internal readonly unsafe struct TypeKernel
{
    public required GgmlType WeightType { get; init; }
    public required GgmlType ActivationType { get; init; }
    /// <summary>(x, dst, n): n f32 values to ActivationType.</summary>
    public required delegate*<float*, byte*, int, void> QuantizeActivation { get; init; }
    /// <summary>(weights, activation, n): dot of n values.</summary>
    public required delegate*<byte*, byte*, int, float> Dot { get; init; }
    /// <summary>
    /// The row dot inside a product of two or more activation rows over a matrix of a multiple of 4 rows, where
    /// ggml hands the product to tinyBLAS and that sums differently from its vector dot (F32); null: <see cref="Dot"/>.
    /// </summary>
    public delegate*<byte*, byte*, int, float> DotInBatch { get; init; }
    /// <summary>(weights, activation, activationStride, n, y, yStride) for 4 activation rows; AVX2 path only.</summary>
    public delegate*<byte*, byte*, nint, int, float*, nint, void> Dot4Avx2 { get; init; }
    /// <summary>(weights, activation, activationStride, n, y, yStride) for 8 activation rows; AVX2 path only.</summary>
    public delegate*<byte*, byte*, nint, int, float*, nint, void> Dot8Avx2 { get; init; }
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
    /// True when the activation is held as f32 values already rounded to <see cref="ActivationType"/>: the same
    /// numbers ggml's dot sees, but read without converting them again for every weight row.
    /// </summary>
    public bool ActivationAsFloats { get; init; }

    /// <summary>
    /// True when each activation row is followed by its blocks' scales as f32 and sums of quants, read by the AVX2
    /// row dot (Q4_0 and Q8_0: see Q8Products.QuantizeActivation).
    /// </summary>
    public bool ActivationBlockInfoAppended { get; init; }

    /// <summary>True when the AVX2 path has tiles (several activation rows per call) for this type.</summary>
    public bool HasTiles => Dot4Avx2 != null || Dot8Avx2 != null || Dot8PackedAvx2 != null;

    /// <summary>Bytes of one quantized activation row of <paramref name="cols"/> values.</summary>
    public long ActivationRowBytes(int cols) => ActivationAsFloats ? 4L * cols
        : ActivationBlockInfoAppended ? Q8Products.ActivationRowBytes(cols) : GgmlTypeInfo.RowBytes(ActivationType, cols);

    /// <summary>True when two kernels take their activation in the same form (so products can share one).</summary>
    public bool SharesActivationWith(in TypeKernel other)
        => ActivationType == other.ActivationType && ActivationAsFloats == other.ActivationAsFloats && ActivationBlockInfoAppended == other.ActivationBlockInfoAppended;
}

internal static unsafe class QuantKernels
{
    private static void ActivationQ8_0(float* x, byte* y, int n) => Q8_0.QuantizeActivation(x, y, n / Q8_0.BlockSize, withSum: false);
    private static void ActivationQ8_1(float* x, byte* y, int n) => Q8_0.QuantizeActivation(x, y, n / Q8_1.BlockSize, withSum: true);

    private const int QK_K = GgmlTypeInfo.QK_K;

    private static void ActivationQ8_K(float* x, byte* y, int n) => KQuants.Q8_K.Quantize(x, y, n);
    private static float DotQ2_K(byte* w, byte* a, int n) => KQuants.Q2_K.Dot(w, a, n / QK_K);
    private static float DotQ3_K(byte* w, byte* a, int n) => KQuants.Q3_K.Dot(w, a, n / QK_K);
    private static float DotQ4_K(byte* w, byte* a, int n) => KQuants.Q4_K.Dot(w, a, n / QK_K);
    private static float DotQ5_K(byte* w, byte* a, int n) => KQuants.Q5_K.Dot(w, a, n / QK_K);
    private static float DotQ6_K(byte* w, byte* a, int n) => KQuants.Q6_K.Dot(w, a, n / QK_K);

    private static readonly TypeKernel?[] Table = Build();

    private static TypeKernel?[] Build()
    {
        var t = new TypeKernel?[64];
        t[(int)GgmlType.F32] = new TypeKernel { WeightType = GgmlType.F32, ActivationType = GgmlType.F32, QuantizeActivation = &F32.CopyActivation, Dot = &F32.Dot, DotInBatch = &F32.DotInBatch };
        t[(int)GgmlType.F16] = new TypeKernel { WeightType = GgmlType.F16, ActivationType = GgmlType.F16, QuantizeActivation = &F16.RoundActivation, Dot = &F16.DotRounded, Dot4Avx2 = &F16.DotRounded4Avx2, ActivationAsFloats = true };
        t[(int)GgmlType.BF16] = new TypeKernel { WeightType = GgmlType.BF16, ActivationType = GgmlType.BF16, QuantizeActivation = &BF16.RoundActivation, Dot = &BF16.DotRounded, Dot4Avx2 = &BF16.DotRounded4Avx2, ActivationAsFloats = true };
        t[(int)GgmlType.Q4_0] = new TypeKernel { WeightType = GgmlType.Q4_0, ActivationType = GgmlType.Q8_0, QuantizeActivation = &Q8Products.QuantizeActivation, Dot = &Q4_0.DotScaled,
            ActivationBlockInfoAppended = true, Dot8PackedAvx2 = &Q8Products.Dot8Packed<Q4_0.Weights>,
            PackActivationTile = &Q8Products.PackActivationTile, PackedTileBytes = &Q8Products.PackedTileBytes };
        t[(int)GgmlType.Q4_1] = new TypeKernel { WeightType = GgmlType.Q4_1, ActivationType = GgmlType.Q8_1, QuantizeActivation = &ActivationQ8_1, Dot = &Q4_1.Dot };
        t[(int)GgmlType.Q5_0] = new TypeKernel { WeightType = GgmlType.Q5_0, ActivationType = GgmlType.Q8_0, QuantizeActivation = &ActivationQ8_0, Dot = &Q5_0.Dot };
        t[(int)GgmlType.Q5_1] = new TypeKernel { WeightType = GgmlType.Q5_1, ActivationType = GgmlType.Q8_1, QuantizeActivation = &ActivationQ8_1, Dot = &Q5_1.Dot };
        t[(int)GgmlType.Q8_0] = new TypeKernel { WeightType = GgmlType.Q8_0, ActivationType = GgmlType.Q8_0, QuantizeActivation = &Q8Products.QuantizeActivation, Dot = &Q8_0.DotScaled,
            ActivationBlockInfoAppended = true, Dot8PackedAvx2 = &Q8_0.Dot8Packed,
            PackActivationTile = &Q8Products.PackActivationTile, PackedTileBytes = &Q8Products.PackedTileBytes };
        // ggml has no Q8_1 weight kernel; ours reads its d and quants against a Q8_0 activation.
        t[(int)GgmlType.Q8_1] = new TypeKernel { WeightType = GgmlType.Q8_1, ActivationType = GgmlType.Q8_0, QuantizeActivation = &ActivationQ8_0, Dot = &Q8_1.Dot };
        // K-quants (from the kquants branch): activation Q8_K, quantized by ggml's reference quantize_row_q8_K.
        t[(int)GgmlType.Q2_K] = new TypeKernel { WeightType = GgmlType.Q2_K, ActivationType = GgmlType.Q8_K, QuantizeActivation = &ActivationQ8_K, Dot = &DotQ2_K };
        t[(int)GgmlType.Q3_K] = new TypeKernel { WeightType = GgmlType.Q3_K, ActivationType = GgmlType.Q8_K, QuantizeActivation = &ActivationQ8_K, Dot = &DotQ3_K };
        t[(int)GgmlType.Q4_K] = new TypeKernel { WeightType = GgmlType.Q4_K, ActivationType = GgmlType.Q8_K, QuantizeActivation = &ActivationQ8_K, Dot = &DotQ4_K,
            Dot8PackedAvx2 = &KQuants.Q4_K.Dot8Packed, PackActivationTile = &KQuants.Q4_K.PackActivationTile, PackedTileBytes = &KQuants.Q4_K.PackedTileBytes };
        t[(int)GgmlType.Q5_K] = new TypeKernel { WeightType = GgmlType.Q5_K, ActivationType = GgmlType.Q8_K, QuantizeActivation = &ActivationQ8_K, Dot = &DotQ5_K };
        t[(int)GgmlType.Q6_K] = new TypeKernel { WeightType = GgmlType.Q6_K, ActivationType = GgmlType.Q8_K, QuantizeActivation = &ActivationQ8_K, Dot = &DotQ6_K, Dot4Avx2 = &KQuants.Q6_K.Dot4Avx2, Dot8Avx2 = &KQuants.Q6_K.Dot8Avx2 };
        // i-quants: IQ4_NL pairs with Q8_0 as Q5_0 does, the others with Q8_K as the k-quants do.
        t[(int)GgmlType.IQ4_NL] = new TypeKernel { WeightType = GgmlType.IQ4_NL, ActivationType = GgmlType.Q8_0, QuantizeActivation = &ActivationQ8_0, Dot = &IQuants.IQ4_NL.Dot };
        t[(int)GgmlType.IQ4_XS] = new TypeKernel { WeightType = GgmlType.IQ4_XS, ActivationType = GgmlType.Q8_K, QuantizeActivation = &ActivationQ8_K, Dot = &IQuants.IQ4_XS.Dot };
        t[(int)GgmlType.IQ2_XXS] = new TypeKernel { WeightType = GgmlType.IQ2_XXS, ActivationType = GgmlType.Q8_K, QuantizeActivation = &ActivationQ8_K, Dot = &IQuants.IQ2_XXS.Dot };
        t[(int)GgmlType.IQ3_XXS] = new TypeKernel { WeightType = GgmlType.IQ3_XXS, ActivationType = GgmlType.Q8_K, QuantizeActivation = &ActivationQ8_K, Dot = &IQuants.IQ3_XXS.Dot };
        t[(int)GgmlType.IQ3_S] = new TypeKernel { WeightType = GgmlType.IQ3_S, ActivationType = GgmlType.Q8_K, QuantizeActivation = &ActivationQ8_K, Dot = &IQuants.IQ3_S.Dot };
        return t;
    }

    /// <summary>True when matrix products over weights of this type are implemented.</summary>
    public static bool IsSupported(GgmlType type) => (int)type < Table.Length && Table[(int)type].HasValue;

    public static TypeKernel Get(GgmlType type)
        => IsSupported(type) ? Table[(int)type]!.Value : throw new NotSupportedException($"matrix products over {type} weights are not implemented");
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// One IQ4 format's row as the reference row dot reads it (<see cref="NonLinear4.DotReference{T}"/>): weight blocks
/// of <see cref="BlockSize"/> values, each with one factor d_w·d_y, in sub-blocks of 32 with their own scale.
/// </summary>
internal unsafe interface INonLinear4Row
{
    static abstract int BlockSize { get; }
    static abstract int BlockBytes { get; }
    static abstract int ActivationBlockBytes { get; }

    /// <summary>d_w·d_y of weight block <paramref name="x"/> and activation block <paramref name="y"/>.</summary>
    static abstract float Scale(byte* x, byte* y);

    /// <summary>Sub-block ib's factor in the reference's float steps: d itself, or d · its scale.</summary>
    static abstract float SubBlockScale(float d, byte* x, int ib);

    /// <summary>Sub-block ib's 16 bytes of packed indices.</summary>
    static abstract byte* Indices(byte* x, int ib);

    /// <summary>Sub-block ib's 32 activation quants.</summary>
    static abstract sbyte* Quants(byte* y, int ib);
}

/// <summary>
/// The 4-bit non-linear code shared by IQ4_NL and IQ4_XS: each 4-bit index selects one of 16 fixed levels
/// (ggml's kvalues_iq4nl), denser near zero where weights are; value = scale · level. Also the scale search both
/// formats quantize with (ggml's quantize_row_iq4_nl_impl as llama-quantize runs it: 7 tries either side of the first
/// scale, each value's error weighted by x² or, with an importance matrix, by its column's importance).
/// </summary>
internal static unsafe class NonLinear4
{
    /// <summary>The 16 levels, ascending.</summary>
    public static ReadOnlySpan<sbyte> Levels => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>The levels in both 128-bit lanes, for a byte shuffle to turn indices into levels.</summary>
    public static Vector256<sbyte> LevelTable256 => Vector256.Create(LevelTable128);

    private static Vector128<sbyte> LevelTable128 => Vector128.Create((sbyte)-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

    /// <summary>32 packed indices (16 bytes: index j low nibble of byte j, index j+16 its high nibble) to levels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> LevelsAvx2(byte* packed) => Avx2.Shuffle(LevelTable256, X86Simd.BytesFromNibbles32(packed).AsSByte());

    /// <summary>32 packed indices to scale · level.</summary>
    public static void Dequantize(byte* packed, float scale, float* y)
    {
        var levels = Levels;
        for (int j = 0; j < 16; j++)
        {
            y[j] = scale * levels[packed[j] & 0x0F];
            y[j + 16] = scale * levels[packed[j] >> 4];
        }
    }

    /// <summary>Σ level·q8 over 32 values as an int, scalar (the references' inner sum).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int BlockDotScalar(byte* packed, sbyte* q8)
    {
        var levels = Levels;
        int sum = 0;
        for (int j = 0; j < 16; j++)
        {
            sum += q8[j] * levels[packed[j] & 0x0F];
            sum += q8[j + 16] * levels[packed[j] >> 4];
        }
        return sum;
    }

    /// <summary>
    /// The references' float steps (ggml's generic row dots): sum += factor · Σ level·q8 per sub-block in order, the
    /// integer sums from <see cref="BlockDotAdvSimd"/> where <paramref name="advSimd"/> (the same integers, so the
    /// result to the bit) or <see cref="BlockDotScalar"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float DotReference<T>(byte* w, byte* a, int n, bool advSimd) where T : INonLinear4Row
    {
        float sum = 0;
        for (int i = 0; i < n / T.BlockSize; i++)
        {
            byte* x = w + i * T.BlockBytes, y = a + i * T.ActivationBlockBytes;
            float d = T.Scale(x, y);
            for (int ib = 0; ib < T.BlockSize / SubBlock; ib++)
            {
                byte* packed = T.Indices(x, ib);
                sbyte* q8 = T.Quants(y, ib);
                sum += T.SubBlockScale(d, x, ib) * (advSimd ? BlockDotAdvSimd(packed, q8) : BlockDotScalar(packed, q8));
            }
        }
        return sum;
    }

    /// <summary>
    /// <see cref="BlockDotScalar"/> on ARM64: levels by a table lookup, exact byte products (<see cref="ArmSimd"/>), so the
    /// same integer.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int BlockDotAdvSimd(byte* packed, sbyte* q8)
    {
        var table = LevelTable128.AsByte();
        var v = AdvSimd.LoadVector128(packed);
        var lo = AdvSimd.Arm64.VectorTableLookup(table, AdvSimd.And(v, Vector128.Create((byte)0x0F))).AsSByte();
        var hi = AdvSimd.Arm64.VectorTableLookup(table, AdvSimd.ShiftRightLogical(v, 4)).AsSByte();
        return AdvSimd.Arm64.AddAcross(ArmSimd.DotI8(lo, AdvSimd.LoadVector128(q8), hi, AdvSimd.LoadVector128(q8 + 16))).ToScalar();
    }

    /// <summary>The index of the level nearest x (the lower on ties; NaN gives 15, as ggml's best_index_int8).</summary>
    public static int NearestLevel(float x)
    {
        var levels = Levels;
        if (x <= levels[0]) return 0;
        if (x >= levels[15]) return 15;
        int lo = 0, hi = 15;
        while (hi - lo > 1)
        {
            int mid = (lo + hi) / 2;
            if (x < levels[mid]) hi = mid; else lo = mid;
        }
        return x - levels[hi - 1] < levels[hi] - x ? hi - 1 : hi;
    }

    /// <summary>Block of 32 values per scale in both formats.</summary>
    public const int SubBlock = 32;

    private const int Tries = 7;

    /// <summary>
    /// The best scale for one block of 32: the least-squares scale at the start -max/-127 and at 15 nearby starts,
    /// the one with the largest sumqx²/sumq2 kept. Errors are weighted by <paramref name="weight"/> [32] (see
    /// <see cref="ImportanceWeights"/>), or by x² when null (ggml without an importance matrix).
    /// </summary>
    public static float BestScale(float* x, float* weight = null)
    {
        float max = Blocks.SignedAbsMax(x, SubBlock);
        if (MathF.Abs(max) < KQuantMath.GroupMaxEps) return 0;
        var levels = Levels;
        float d = -max / levels[0];
        var (sumqx, sumq2) = Fit(x, 1 / d, weight);
        d = sumq2 > 0 ? sumqx / sumq2 : 0f;
        float best = d * sumqx;
        for (int itry = -Tries; itry <= Tries; itry++)
        {
            (sumqx, sumq2) = Fit(x, (itry + levels[0]) / max, weight);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
            {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        return d;
    }

    /// <summary>Σ w·q·x and Σ w·q² with w the weight (x² when null) and q each value's nearest level at inverse scale id.</summary>
    private static (float SumQx, float SumQ2) Fit(float* x, float id, float* weight)
    {
        var levels = Levels;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < SubBlock; j++)
        {
            float q = levels[NearestLevel(id * x[j])];
            float w = weight != null ? weight[j] : x[j] * x[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        return (sumqx, sumq2);
    }

    /// <summary>
    /// Error weights from an importance matrix for one super-block of <paramref name="count"/> values (32 for IQ4_NL,
    /// 256 for IQ4_XS), as ggml: importance · sqrt(σ² + x²) with σ² twice the block's mean square.
    /// </summary>
    public static void ImportanceWeights(float* x, float* importance, float* weight, int count)
    {
        float sigma2 = 0;
        for (int j = 0; j < count; j++) sigma2 += x[j] * x[j];
        sigma2 *= 2f / count;
        for (int j = 0; j < count; j++) weight[j] = importance[j] * MathF.Sqrt(sigma2 + x[j] * x[j]);
    }

    /// <summary>32 values as their nearest levels at inverse scale id, packed as the blocks hold them.</summary>
    public static void PackIndices(float* x, float id, byte* packed)
    {
        for (int j = 0; j < 16; j++)
            packed[j] = (byte)(NearestLevel(id * x[j]) | (NearestLevel(id * x[j + 16]) << 4));
    }
}

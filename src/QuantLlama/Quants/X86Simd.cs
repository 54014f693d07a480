using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants;

/// <summary>Building blocks shared by the x86 kernels (SSE, AVX2, AVX-512; the same steps ggml's x86 kernels use).</summary>
internal static unsafe class X86Simd
{
    /// <summary>How far ahead of the weights it is reading a row dot asks for more (<see cref="PrefetchWeights"/>).</summary>
    internal const int WeightPrefetchDistance = 2048;

    /// <summary>
    /// Asks for the weight lines <see cref="WeightPrefetchDistance"/> bytes past [p, p + bytes), the bytes a row dot's
    /// step is about to read. Generation streams every weight once per token; a steady request a few dozen lines
    /// ahead keeps more reads in flight than the kernels' loads alone, whose long instruction runs between loads leave
    /// the hardware prefetchers behind (docs/performance.md, "Approaches tried", has the figures and the distances
    /// tried). Past the end of the weights this
    /// only asks for lines that are never read: a prefetch does not fault. (.NET exposes no prefetch on Arm64, so the
    /// AdvSimd kernels rely on the hardware alone.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchWeights(byte* p, int bytes)
    {
        if (!Sse.IsSupported) return;
        // The lines that start in the range: consecutive steps then ask for each line once, where one request per
        // 64 bytes from p would repeat a line at every step whose size is not a multiple of 64 (Q4_K's 144 bytes: 3
        // requests where 2.25 lines are new).
        byte* end = p + WeightPrefetchDistance + bytes;
        for (byte* line = (byte*)(((nint)(p + WeightPrefetchDistance) + 63) & ~(nint)63); line < end; line += 64)
            Sse.Prefetch0(line);
    }

    /// <summary>Asks for cache line <paramref name="line"/> counted from <paramref name="alignedBase"/> (see <see cref="PrefetchWeights"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(byte* alignedBase, int line)
    {
        if (Sse.IsSupported) Sse.Prefetch0(alignedBase + 64 * line);
    }

    /// <summary>32 nibbles (16 bytes) to 32 bytes: low nibbles in lanes 0-15, high nibbles in lanes 16-31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> BytesFromNibbles32(byte* p)
    {
        // The 16 bytes in both lanes (one broadcast load), the upper lane shifted by 4, then masked: three
        // operations where a load, a shift and a lane insert took four.
        var both = Avx2.BroadcastVector128ToVector256(p);
        var shifted = Avx2.ShiftRightLogicalVariable(both.AsUInt64(), Vector256.Create(0ul, 0ul, 4ul, 4ul)).AsByte();
        return shifted & Vector256.Create((byte)0x0F);
    }

    /// <summary>32 bits (4 bytes) to 32 bytes, 0xFF where the bit is set and 0 where not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> BytesFromBits32(byte* p)
    {
        uint x32 = Unsafe.ReadUnaligned<uint>(p);
        var shuffle = Vector256.Create(0x0000000000000000UL, 0x0101010101010101UL, 0x0202020202020202UL, 0x0303030303030303UL).AsByte();
        var bytes = Avx2.Shuffle(Vector256.Create(x32).AsByte(), shuffle);
        bytes |= Vector256.Create(0x7fbfdfeff7fbfdfeUL).AsByte();
        return Avx2.CompareEqual(bytes, Vector256<byte>.AllBitsSet);
    }

    /// <summary>
    /// The lane sums of eight int32 vectors, in order: [Σv0, ..., Σv7]. Built from unpacks and adds, one µop each,
    /// rather than horizontal adds, which are multi-µop on Zen 3 and, with several per block, keep the row dots
    /// from running far enough ahead of their loads (past the caches a Q4_0 MatVec is about 13 % faster this way).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Sum8(Vector256<int> v0, Vector256<int> v1, Vector256<int> v2, Vector256<int> v3,
        Vector256<int> v4, Vector256<int> v5, Vector256<int> v6, Vector256<int> v7)
        => SumHalves(SumQuads(SumPairs(v0, v1), SumPairs(v2, v3)), SumQuads(SumPairs(v4, v5), SumPairs(v6, v7)));

    /// <summary>First step of <see cref="Sum8"/>: per 128-bit half, (a0 + a2, b0 + b2, a1 + a3, b1 + b3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SumPairs(Vector256<int> a, Vector256<int> b) => Avx2.Add(Avx2.UnpackLow(a, b), Avx2.UnpackHigh(a, b));

    /// <summary>Second step: two <see cref="SumPairs"/> results to per-half lane sums (Σa, Σb, Σc, Σd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SumQuads(Vector256<int> ab, Vector256<int> cd)
        => Avx2.Add(Avx2.UnpackLow(ab.AsInt64(), cd.AsInt64()).AsInt32(), Avx2.UnpackHigh(ab.AsInt64(), cd.AsInt64()).AsInt32());

    /// <summary>Last step: the two halves of each <see cref="SumQuads"/> result added, the first's four sums first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SumHalves(Vector256<int> low, Vector256<int> high)
        => Avx2.Add(Avx2.Permute2x128(low, high, 0x20), Avx2.Permute2x128(low, high, 0x31));

    /// <summary>Sums of four adjacent unsigned-by-signed byte products, as 8 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MulSumU8I8Quads(Vector256<byte> ax, Vector256<sbyte> sy)
    {
        if (AvxVnni.IsSupported) return AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, ax, sy);
        var dot = Avx2.MultiplyAddAdjacent(ax, sy);
        return Avx2.MultiplyAddAdjacent(dot, Vector256.Create((short)1));
    }

    /// <summary>ggml's mul_sum_us8_pairs_float: unsigned x by signed y, summed in fours, as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MulSumU8I8Float(Vector256<byte> ax, Vector256<sbyte> sy)
        => Avx.ConvertToVector256Single(MulSumU8I8Quads(ax, sy));

    /// <summary>ggml's mul_sum_i8_pairs_float: signed x by signed y via |x| and sign(y, x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MulSumI8Float(Vector256<sbyte> x, Vector256<sbyte> y)
    {
        var ax = Avx2.Sign(x, x).AsByte();
        var sy = Avx2.Sign(y, x);
        return MulSumU8I8Float(ax, sy);
    }

    /// <summary>Horizontal sum of 8 floats in ggml's order (hsum_float_8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HSum(Vector256<float> x)
    {
        var res = Sse.Add(x.GetUpper(), x.GetLower());
        res = Sse.Add(res, Sse.MoveHighToLow(res, res));
        res = Sse.AddScalar(res, Sse3.MoveHighAndDuplicate(res));
        return res.ToScalar();
    }

    /// <summary>Horizontal sum of 4 floats: (x0 + x2) + (x1 + x3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HSum(Vector128<float> x)
    {
        x = Sse.Add(x, Sse.MoveHighToLow(x, x));
        x = Sse.AddScalar(x, Sse.Shuffle(x, x, 0x55));
        return x.ToScalar();
    }

    /// <summary>Horizontal sum of 8 int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int HSum(Vector256<int> x)
    {
        var s = Sse2.Add(x.GetUpper(), x.GetLower());
        s = Sse2.Add(s, Sse2.Shuffle(s, 0b_01_00_11_10));
        s = Sse2.Add(s, Sse2.Shuffle(s, 0b_10_11_00_01));
        return s.ToScalar();
    }

    /// <summary>Horizontal sum of 16 floats (pairwise halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HSum(Vector512<float> x) => HSum(Avx.Add(x.GetLower(), x.GetUpper()));

    /// <summary>
    /// 8 halves at p to 8 floats, exactly (subnormals and infinities included; a NaN stays a NaN), in eight operations after
    /// the load: each half moved to the top of its 32-bit lane, shifted right arithmetically by 3 so that the sign
    /// stays on top and exponent and mantissa land in float position, the sign copies masked off, and a multiply by
    /// 2^112 to re-bias the exponent (which also normalises subnormals). Exponent 31 (infinity, NaN) comes out of the
    /// multiply as a magnitude of at least 2^16, which no finite half reaches, and gets the all-ones exponent back.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadHalf8(ushort* p)
    {
        Vector256<int> top = Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16);
        Vector256<int> moved = Avx2.ShiftRightArithmetic(top, 3) & Vector256.Create(unchecked((int)0x8FFFE000));
        Vector256<float> f = Avx.Multiply(moved.AsSingle(), Vector256.Create(BitConverter.UInt32BitsToSingle(0x77800000u)));
        Vector256<float> infOrNan = Avx.CompareGreaterThanOrEqual(Avx.AndNot(Vector256.Create(-0f), f), Vector256.Create(65536f));
        return Avx.Or(f, Avx.And(infOrNan, Vector256.Create(0x7F800000).AsSingle()));
    }

    /// <summary>8 bfloat16 at p to 8 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadBF16x8(ushort* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();

    // The k-quants' building blocks.

    /// <summary>
    /// <see cref="KQuants.KQuantMath.UnpackScaleMinK4(byte*)"/> in vector registers (8 operations instead of 15 scalar ones
    /// and three lane inserts): the 8 six-bit scales then the 8 mins of a Q4_K/Q5_K block, widened to 16 bits.
    /// Reads 16 bytes from <paramref name="table"/> (the 12-byte table and 4 bytes of the quants after it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<short> ScalesAndMinsK4(byte* table) => Avx2.ConvertToVector256Int16(PackedScalesAndMinsK4(table));

    /// <summary>
    /// <see cref="ScalesAndMinsK4"/> before the widening: bytes 0–7 the 8 scales, bytes 8–15 the 8 mins (each 0–63).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector128<byte> PackedScalesAndMinsK4(byte* table)
    {
        Vector128<uint> raw = Sse2.LoadVector128((uint*)table);
        // Lanes (u0, u2, u1, u2 >> 4) masked to (low 6 bits, low 4 bits, low 6 bits, low 4 bits) ...
        Vector128<uint> low = Avx2.ShiftRightLogicalVariable(Sse2.Shuffle(raw, 0b10_01_10_00), Vector128.Create(0u, 0u, 0u, 4u));
        low = Sse2.And(low, Vector128.Create(0x3f3f3f3fu, 0x0f0f0f0fu, 0x3f3f3f3fu, 0x0f0f0f0fu));
        // ... or'ed in lanes 1 and 3 with the top 2 bits of u0 and u1 moved to bits 4-5.
        Vector128<uint> high = Sse2.And(Sse2.ShiftRightLogical(Sse2.Shuffle(raw, 0b01_01_00_00), 2), Vector128.Create(0u, 0x30303030u, 0u, 0x30303030u));
        return Sse2.Or(low, high).AsByte();
    }

    /// <summary>
    /// Sixteen signed 8-bit group scales widened to 16 bits, as two vectors holding scales 0–7 (then 8–15) in both
    /// 128-bit lanes, so that one in-lane shuffle gives a 32-value group its pair of scales (<see cref="ScaledGroup"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<byte> Low, Vector256<byte> High) ScalePairs(Vector256<short> scales16)
        => (Avx2.Permute4x64(scales16.AsInt64(), 0b01_00_01_00).AsByte(), Avx2.Permute4x64(scales16.AsInt64(), 0b11_10_11_10).AsByte());

    /// <summary>
    /// 32 unsigned quants times 32 activations summed in pairs, the low 16 scaled by scale 2j and the high 16 by
    /// 2j+1 of <paramref name="scalePairs"/> (one half of <see cref="ScalePairs"/>): eight exact int32 sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<int> ScaledGroup(Vector256<byte> q, sbyte* q8, Vector256<byte> scalePairs, int j)
    {
        Vector256<short> products = Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256(q8));
        Vector256<byte> mask = Vector256.Create(WordBroadcastMask(2 * j).GetLower(), WordBroadcastMask(2 * j + 1).GetLower());
        return Avx2.MultiplyAddAdjacent(products, Avx2.Shuffle(scalePairs, mask).AsInt16());
    }

    /// <summary>The four groups of a 128-value half (quants q0…q3 against q8, q8+32, q8+64, q8+96), summed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<int> QuarterSums(Vector256<byte> q0, Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3,
        sbyte* q8, Vector256<byte> scalePairs)
    {
        Vector256<int> s01 = Avx2.Add(ScaledGroup(q0, q8, scalePairs, 0), ScaledGroup(q1, q8 + 32, scalePairs, 1));
        Vector256<int> s23 = Avx2.Add(ScaledGroup(q2, q8 + 64, scalePairs, 2), ScaledGroup(q3, q8 + 96, scalePairs, 3));
        return Avx2.Add(s01, s23);
    }

    /// <summary>
    /// Σ min_j · (bsum_2j + bsum_2j+1) for a Q4_K/Q5_K block's 8 sub-block mins (16-bit) against the activation's
    /// 16 group sums, as 4 float lanes (pairs of sub-blocks): the integer part of the mins' term, exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector128<float> MinSums(Vector128<short> mins, short* bsums)
    {
        Vector256<short> sums = Avx.LoadVector256(bsums);
        Vector128<short> pairSums = Ssse3.HorizontalAdd(sums.GetLower(), sums.GetUpper());
        return Sse2.ConvertToVector128Single(Sse2.MultiplyAddAdjacent(mins, pairSums));
    }

    /// <summary>
    /// 64 vectors of 16 int16 lanes, vector k all k (32 bytes each; 2 KiB, never freed): the broadcast of a 6-bit
    /// Q4_K/Q5_K sub-block scale s is the vector at 32·s, so a madd takes it straight from memory. On Zen 3 the
    /// register shuffle this replaces would compete with the nibble shifts for two ports (the row dot is 3–4 % faster).
    /// </summary>
    public static readonly unsafe short* ScaleBroadcasts = CreateScaleBroadcasts();

    private static unsafe short* CreateScaleBroadcasts()
    {
        var table = (short*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(64 * 32, 64);
        for (int k = 0; k < 64; k++)
            for (int lane = 0; lane < 16; lane++) table[16 * k + lane] = (short)k;
        return table;
    }

    /// <summary>
    /// The 8 scales of <see cref="PackedScalesAndMinsK4"/>'s result, each times 4, in the bytes of a general register:
    /// the keys <see cref="ScaleBroadcast"/> takes (at most 252, so no bit crosses into the next byte).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong ScaleKeys(Vector128<byte> packedScalesAndMins) => Sse2.ShiftLeftLogical(packedScalesAndMins.AsUInt64(), 2).ToScalar();

    /// <summary>
    /// The broadcast of scale <paramref name="j"/> from <paramref name="broadcasts"/> (<see cref="ScaleBroadcasts"/>),
    /// given <see cref="ScaleKeys"/>: a rotate and a byte move give its key, and the address mode's ×8 the table's
    /// 32-byte stride, so the load folds into the madd that uses it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<short> ScaleBroadcast(byte* broadcasts, ulong scaleKeys, int j)
        => Avx.LoadVector256((short*)(broadcasts + (nuint)(byte)System.Numerics.BitOperations.RotateRight(scaleKeys, 8 * j) * 8));

    /// <summary>
    /// pshufb mask that broadcasts 16-bit element <paramref name="k"/> of each 128-bit lane to the whole lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> WordBroadcastMask(int k) => Vector256.Create((ushort)((2 * k) | ((2 * k + 1) << 8))).AsByte();

    /// <summary>
    /// pshufb mask over 16 signed scale bytes giving byte 2k eight times, then byte 2k+1 eight times: sign-extended
    /// to 16 bits it puts scale 2k in the low 128-bit lane and scale 2k+1 in the high one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> ScalePairMask(int k) =>
        Vector128.Create((ulong)(0x0101010101010101UL * (ulong)(2 * k)), 0x0101010101010101UL * (ulong)(2 * k + 1)).AsByte();
}

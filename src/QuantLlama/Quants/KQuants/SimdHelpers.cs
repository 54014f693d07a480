using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants.KQuants;

/// <summary>Small SIMD building blocks shared by the k-quant dot kernels.</summary>
internal static class SimdHelpers
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalSum(Vector256<float> v)
    {
        Vector128<float> s = Sse.Add(v.GetLower(), v.GetUpper());
        s = Sse.Add(s, Sse.MoveHighToLow(s, s));
        s = Sse.AddScalar(s, Sse.Shuffle(s, s, 0x55));
        return s.ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalSum(Vector128<float> s)
    {
        s = Sse.Add(s, Sse.MoveHighToLow(s, s));
        s = Sse.AddScalar(s, Sse.Shuffle(s, s, 0x55));
        return s.ToScalar();
    }

    /// <summary>
    /// <see cref="KQuantMath.UnpackScaleMinK4(byte*)"/> in vector registers (8 operations instead of 15 scalar ones
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

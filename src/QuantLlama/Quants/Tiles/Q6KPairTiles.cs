using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// The AVX-512 form of Q6_K's 8-row tile (<see cref="Q6_K.Dot8Avx2"/>): one weight row against 8 Q8_K activation
/// rows, each 512-bit step taking two 32-value groups of quants that lie side by side in the block (low nibbles of
/// Ql bytes 0–63, or their high nibbles) against 64 contiguous activation bytes. The block's 6-bit quants and its
/// scales, widened to one int16 per pair of products, are decoded once for the 8 rows.
/// </summary>
/// <remarks>
/// Per (weight row, activation row) every block gives the AVX2 row dot's eight int32 sums (<see cref="Q6_K.DotAvx2"/>:
/// lane k holds values 4k..4k+3 of each 32-value group times its group scale, minus 32 · Σ scale · bsum over scale
/// pairs 2k, 2k+1): the two 256-bit halves of the 512-bit sum hold lane k of two groups each, so low + high half is
/// the same exact integer. The float step per block (one FMA of d_w · d_y on the 8 lanes, two activation rows per
/// 512-bit FMA) and the final horizontal sum are DotAvx2's, so every result equals the row dot's bits.
/// </remarks>
internal static unsafe class Q6KPairTiles
{
    // Field offsets in block_q6_K (Ql, Qh, Scales, D) and block_q8_K (D, Qs, BSums).
    private const int QhAt = 128, ScalesAt = 192, DAt = 208;
    private const int ActivationQsAt = 4, ActivationSumsAt = 260;

    /// <summary>One weight row against 8 Q8_K activation rows <paramref name="aStride"/> bytes apart; results <paramref name="yStride"/> floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot8(byte* weights, byte* q8k, nint aStride, int n, float* result, nint yStride)
    {
        int blocks = n / Q6_K.BlockSize;
        var m4 = Vector512.Create((byte)0x0F);
        var m30 = Vector512.Create((byte)0x30);
        // High bit pairs to bits 4–5: by 4 and 2 for groups 0 and 1 (left), by 0 and 2 for groups 2 and 3 (right).
        var lowGroupShifts = Vector512.Create(Vector256.Create((ushort)4), Vector256.Create((ushort)2));
        var highGroupShifts = Vector512.Create(Vector256.Create((ushort)0), Vector256.Create((ushort)2));
        // Permutations giving int16 lane i scale 8h + 4s + i / 8 for half h, step s (values 128h + 64s + 2i, +1).
        Vector512<short> index00 = ScaleIndex(0), index01 = ScaleIndex(4), index10 = ScaleIndex(8), index11 = ScaleIndex(12);
        // Chains of activation rows 2k (low half) and 2k + 1 (high half).
        Vector512<float> c01 = default, c23 = default, c45 = default, c67 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* x = weights + (long)b * Q6_K.BlockBytes;
            byte* y = q8k + (long)b * Q8_K.BlockBytes;
            X86Simd.PrefetchWeights(x, Q6_K.BlockBytes);
            var scales16 = Avx2.ConvertToVector256Int16((sbyte*)(x + ScalesAt));
            var wide = Vector512.Create(scales16, scales16);
            var s00 = Avx512BW.PermuteVar32x16(wide, index00);
            var s01 = Avx512BW.PermuteVar32x16(wide, index01);
            var s10 = Avx512BW.PermuteVar32x16(wide, index10);
            var s11 = Avx512BW.PermuteVar32x16(wide, index11);
            // −32 · scale, in both halves: the quants' offset through the activation's group sums in one multiply-add
            // (|−32 · scale| ≤ 4096).
            var offsetScales = Avx512BW.ShiftLeftLogical(Avx512BW.Subtract(Vector512<short>.Zero, wide), 5);
            Quants(x, x + QhAt, m4, m30, lowGroupShifts, highGroupShifts, out var q00, out var q01);
            Quants(x + 64, x + QhAt + 32, m4, m30, lowGroupShifts, highGroupShifts, out var q10, out var q11);
            var dx = Vector512.Create(Fp16.ToFloat(*(ushort*)(x + DAt)));
            c01 = Rows(y, y + aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c01);
            c23 = Rows(y + 2 * aStride, y + 3 * aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c23);
            c45 = Rows(y + 4 * aStride, y + 5 * aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c45);
            c67 = Rows(y + 6 * aStride, y + 7 * aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c67);
        }
        result[0] = X86Simd.HSum(c01.GetLower());
        result[yStride] = X86Simd.HSum(c01.GetUpper());
        result[2 * yStride] = X86Simd.HSum(c23.GetLower());
        result[3 * yStride] = X86Simd.HSum(c23.GetUpper());
        result[4 * yStride] = X86Simd.HSum(c45.GetLower());
        result[5 * yStride] = X86Simd.HSum(c45.GetUpper());
        result[6 * yStride] = X86Simd.HSum(c67.GetLower());
        result[7 * yStride] = X86Simd.HSum(c67.GetUpper());
    }

    /// <summary>
    /// Two activation rows' block: each one's eight exact int32 sums of the row dot (row <paramref name="ya"/> in the
    /// low half, <paramref name="yb"/> in the high half), then the row dot's FMA per lane into <paramref name="chains"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Rows(byte* ya, byte* yb, Vector512<byte> q00, Vector512<byte> q01, Vector512<byte> q10, Vector512<byte> q11,
        Vector512<short> s00, Vector512<short> s01, Vector512<short> s10, Vector512<short> s11, Vector512<short> offsetScales,
        Vector512<float> dx, Vector512<float> chains)
    {
        var a = Sum(ya, q00, q01, q10, q11, s00, s01, s10, s11);
        var b = Sum(yb, q00, q01, q10, q11, s00, s01, s10, s11);
        // Low 256 bits of a and b, plus their high 256 bits: lane k of two groups each, added.
        var lanes = Avx512F.Add(Avx512F.Shuffle4x128(a, b, 0b01_00_01_00), Avx512F.Shuffle4x128(a, b, 0b11_10_11_10));
        var sums = Vector512.Create(Avx.LoadVector256((short*)(ya + ActivationSumsAt)), Avx.LoadVector256((short*)(yb + ActivationSumsAt)));
        lanes = Avx512F.Add(lanes, Avx512BW.MultiplyAddAdjacent(offsetScales, sums));
        var d = Avx512F.Multiply(Vector512.Create(Vector256.Create(*(float*)ya), Vector256.Create(*(float*)yb)), dx);
        return Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(lanes), chains);
    }

    /// <summary>One activation row's block without the offset: lane k and lane 8 + k each hold lane k's sum over two groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Sum(byte* y, Vector512<byte> q00, Vector512<byte> q01, Vector512<byte> q10, Vector512<byte> q11,
        Vector512<short> s00, Vector512<short> s01, Vector512<short> s10, Vector512<short> s11)
    {
        sbyte* qs = (sbyte*)(y + ActivationQsAt);
        return Avx512F.Add(Avx512F.Add(Step(q00, qs, s00), Step(q01, qs + 64, s01)), Avx512F.Add(Step(q10, qs + 128, s10), Step(q11, qs + 192, s11)));
    }

    /// <summary>64 quants times 64 activations: pair sums (≤ 2 · 63 · 128, exact in int16) times their scales, summed in fours.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Step(Vector512<byte> q, sbyte* qs, Vector512<short> scales)
        => Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q, Avx512BW.LoadVector512(qs)), scales);

    /// <summary>
    /// The 128 six-bit quants of one half block (64 bytes of low nibbles at <paramref name="ql"/>, 32 bytes of high
    /// bit pairs at <paramref name="qh"/>): values 0–63 (groups 0 and 1: low nibbles) and 64–127 (groups 2 and 3:
    /// high nibbles), unsigned. As <see cref="Q6_K"/>'s AVX2 decode: each bit pair moved to bits 4–5 by one 16-bit
    /// shift and kept by <paramref name="m30"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quants(byte* ql, byte* qh, Vector512<byte> m4, Vector512<byte> m30, Vector512<ushort> lowGroupShifts,
        Vector512<ushort> highGroupShifts, out Vector512<byte> low, out Vector512<byte> high)
    {
        var nibbles = Avx512BW.LoadVector512(ql);
        var half = Avx.LoadVector256((ushort*)qh);
        var bits = Vector512.Create(half, half);
        low = Avx512F.Or(Avx512F.And(nibbles, m4), Avx512F.And(Avx512BW.ShiftLeftLogicalVariable(bits, lowGroupShifts).AsByte(), m30));
        high = Avx512F.Or(Avx512F.And(Avx512BW.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte(), m4),
            Avx512F.And(Avx512BW.ShiftRightLogicalVariable(bits, highGroupShifts).AsByte(), m30));
    }

    /// <summary>Permutation index giving int16 lane i scale <paramref name="first"/> + i / 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> ScaleIndex(short first)
        => Vector512.Create(Vector256.Create(Vector128.Create(first), Vector128.Create((short)(first + 1))),
            Vector256.Create(Vector128.Create((short)(first + 2)), Vector128.Create((short)(first + 3))));
}

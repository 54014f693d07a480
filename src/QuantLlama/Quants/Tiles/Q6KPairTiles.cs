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
/// the same exact integer. The float step per block (one FMA of d_w · d_y on the 8 lanes) and the final horizontal sum
/// are DotAvx2's, so every result equals the row dot's bits.
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
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* x = weights + (long)b * Q6_K.BlockBytes;
            byte* y = q8k + (long)b * Q8_K.BlockBytes;
            X86Simd.PrefetchWeights(x, Q6_K.BlockBytes);
            // Scale of int16 lane i of a step's pair sums: scale 8h + 4s + i / 8 for half h, step s (values 64s + 2i, +1).
            var scales16 = Vector512.Create(Avx2.ConvertToVector256Int16((sbyte*)(x + ScalesAt)), Vector256<short>.Zero);
            var s00 = Avx512BW.PermuteVar32x16(scales16, ScaleIndex(0));
            var s01 = Avx512BW.PermuteVar32x16(scales16, ScaleIndex(4));
            var s10 = Avx512BW.PermuteVar32x16(scales16, ScaleIndex(8));
            var s11 = Avx512BW.PermuteVar32x16(scales16, ScaleIndex(12));
            // −32 · scale: the quants' offset through the activation's group sums in one multiply-add (|−32 · scale| ≤ 4096).
            var offsetScales = Avx2.ShiftLeftLogical(Avx2.Subtract(Vector256<short>.Zero, scales16.GetLower()), 5);
            Quants(x, x + QhAt, m4, m30, lowGroupShifts, highGroupShifts, out var q00, out var q01);
            Quants(x + 64, x + QhAt + 32, m4, m30, lowGroupShifts, highGroupShifts, out var q10, out var q11);
            float dx = Fp16.ToFloat(*(ushort*)(x + DAt));
            c0 = Row(y, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c0);
            c1 = Row(y + aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c1);
            c2 = Row(y + 2 * aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c2);
            c3 = Row(y + 3 * aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c3);
            c4 = Row(y + 4 * aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c4);
            c5 = Row(y + 5 * aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c5);
            c6 = Row(y + 6 * aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c6);
            c7 = Row(y + 7 * aStride, q00, q01, q10, q11, s00, s01, s10, s11, offsetScales, dx, c7);
        }
        result[0] = X86Simd.HSum(c0);
        result[yStride] = X86Simd.HSum(c1);
        result[2 * yStride] = X86Simd.HSum(c2);
        result[3 * yStride] = X86Simd.HSum(c3);
        result[4 * yStride] = X86Simd.HSum(c4);
        result[5 * yStride] = X86Simd.HSum(c5);
        result[6 * yStride] = X86Simd.HSum(c6);
        result[7 * yStride] = X86Simd.HSum(c7);
    }

    /// <summary>One activation row's block: the row dot's eight exact int32 sums, then its FMA into <paramref name="chain"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Row(byte* y, Vector512<byte> q00, Vector512<byte> q01, Vector512<byte> q10, Vector512<byte> q11,
        Vector512<short> s00, Vector512<short> s01, Vector512<short> s10, Vector512<short> s11, Vector256<short> offsetScales,
        float dx, Vector256<float> chain)
    {
        sbyte* qs = (sbyte*)(y + ActivationQsAt);
        var sum = Avx512F.Add(
            Avx512F.Add(Step(q00, qs, s00), Step(q01, qs + 64, s01)),
            Avx512F.Add(Step(q10, qs + 128, s10), Step(q11, qs + 192, s11)));
        var offset = Avx2.MultiplyAddAdjacent(offsetScales, Avx.LoadVector256((short*)(y + ActivationSumsAt)));
        var lanes = Avx2.Add(Avx2.Add(sum.GetLower(), sum.GetUpper()), offset);
        return Fma.MultiplyAdd(Vector256.Create(*(float*)y * dx), Avx.ConvertToVector256Single(lanes), chain);
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

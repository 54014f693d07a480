using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// Q4_0 weights repacked in groups of 8 rows (as llama.cpp's q4_0_8x8 does, in a layout of our own) for products over
/// several activation rows (prompts, conversations decoding together) on the AVX-512 path: 8 weight rows x 1 to 8
/// activation rows per call, the weights' nibbles used in place in 512-bit registers and the activation's 4-byte
/// groups broadcast from memory, so no weight shuffles per activation row.
/// Per (weight row, activation row) the arithmetic is the row dot's (<see cref="Q8Products"/>): each block's exact
/// integer sum, chain[b mod 8] = fma(d_w·d_y, Σ, chain[b mod 8]), the chains summed in
/// <see cref="Q8Products.SumChains"/>' order, so every result equals the row dot's bits whatever the number of
/// activation rows.
/// </summary>
/// <remarks>
/// Weights (<see cref="Repack"/>), per pair of blocks (2p, 2p + 1), 320 bytes (5 cache lines): 4 segments of 64 bytes,
/// segment q holding in dword lane 2r + h the nibble bytes 4q..4q+3 of row r's block 2p + h (low nibbles: values
/// 4q..4q+3, high nibbles: values 16 + 4q..), then the 16 scales d_w as f32 in the same lanes. Pair p feeds chains
/// 2p mod 8 and 2p + 1 mod 8, held as the low and high lanes of register p mod 4; each of the 4 registers is run over
/// its own pairs in a pass of its own (chains are independent until the final sum), so a pass keeps one accumulator
/// per activation row and the 8 weight groups in registers. The pairs are stored in the passes' order (p ≡ 0 mod 4
/// first, then 1, 2, 3; <see cref="PassStart"/>), so the kernel reads a group, and a matrix of consecutive groups,
/// as one forward stream, asking for the lines <see cref="PrefetchDistance"/> bytes ahead. One activation row
/// (generation) runs the 4 passes side by side instead (<see cref="OneRow"/>): 4 streams, each asking for the pair 4
/// ahead, in the next group past this one's end.
/// Activation tile of m rows (<see cref="PackActivationRows"/>, at most <see cref="Q8Products.PackedTileBytes"/>),
/// per pair 80·m bytes in natural pair order: for each row 80 bytes: group g (values 4g..4g+3) of both blocks at 8g
/// (block 2p, then 2p + 1), the two scales d_y as f32 at 64, the two sums of quants times 8 at 72.
/// Only whole pairs: n a multiple of 64.
/// </remarks>
internal static unsafe class Q4_0RowGroups
{
    internal const int Rows = 8;
    private const int PairValues = 64;
    private const int PairBytes = 320, ScalesAt = 256;
    private const int ActivationPairBytes = 80, ActivationScalesAt = 64, ActivationSumsAt = 72;

    /// <summary>
    /// How far ahead of the pair being read the kernel asks for weight lines (prefetcht0, 5 lines per pair). Without
    /// it 8 activation rows over weights read from memory ran about 3x slower than in cache.
    /// </summary>
    internal const int PrefetchDistance = 4096;

    /// <summary>True when rows of <paramref name="n"/> values can be repacked (whole pairs of blocks).</summary>
    internal static bool Fits(int n) => n > 0 && n % PairValues == 0;

    /// <summary>Bytes of one repacked group of 8 rows of <paramref name="n"/> values.</summary>
    internal static long GroupBytes(int n) => (long)(n / PairValues) * PairBytes;

    /// <summary>Index among a group's stored pairs of pass <paramref name="k"/>'s first pair (pairs p ≡ k mod 4).</summary>
    private static int PassStart(int k, int pairs)
    {
        int start = 0;
        for (int j = 0; j < k; j++) start += (pairs - j + 3) / 4;
        return start;
    }

    /// <summary>8 Q4_0 rows (<paramref name="rowBytes"/> apart) into one repacked group at <paramref name="group"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Repack(byte* rows, long rowBytes, int n, byte* group)
    {
        int pairs = n / PairValues;
        for (int r = 0; r < Rows; r++)
        {
            byte* row = rows + r * rowBytes;
            for (int p = 0; p < pairs; p++)
            {
                byte* x0 = row + (long)(2 * p) * Q4_0.BlockBytes, x1 = x0 + Q4_0.BlockBytes;
                byte* pair = group + (long)(PassStart(p & 3, pairs) + p / 4) * PairBytes;
                // Lanes 2r and 2r + 1 of each segment: one 8-byte store of both blocks' dwords.
                for (int q = 0; q < 4; q++) *(ulong*)(pair + 64 * q + 8 * r) = *(uint*)(x0 + 2 + 4 * q) | (ulong)*(uint*)(x1 + 2 + 4 * q) << 32;
                ((float*)(pair + ScalesAt))[2 * r] = Fp16.ToFloat(*(ushort*)x0);
                ((float*)(pair + ScalesAt))[2 * r + 1] = Fp16.ToFloat(*(ushort*)x1);
            }
        }
    }

    /// <summary>
    /// <paramref name="count"/> (1 to 8) activation rows of <see cref="Q8Products.QuantizeActivation"/>'s form into this
    /// kernel's tile of that many rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackActivationRows(byte* rows, nint stride, int n, byte* tile, int count)
    {
        int nb = n / Q4_0.BlockSize;
        long pairBytes = (long)count * ActivationPairBytes;
        for (int r = 0; r < count; r++)
        {
            byte* row = rows + r * stride;
            float* scales = Q8Products.BlockInfo(row, n);
            int* sums = (int*)(scales + nb);
            for (int b = 0; b < nb; b++)
            {
                byte* quants = row + (long)b * Q8_0.BlockBytes + 2;
                byte* t = tile + (b / 2) * pairBytes + r * ActivationPairBytes;
                int half = b & 1;
                for (int g = 0; g < 8; g++) *(uint*)(t + 8 * g + 4 * half) = *(uint*)(quants + 4 * g);
                ((float*)(t + ActivationScalesAt))[half] = scales[b];
                ((int*)(t + ActivationSumsAt))[half] = sums[b] << 3;
            }
        }
    }

    /// <summary>One repacked group against a tile of <paramref name="activationRows"/> (1 to 8) rows: the kernel compiled for that count.</summary>
    internal static void DotRows(byte* group, byte* tile, int n, float* y, nint yStride, int activationRows)
    {
        if (activationRows == 1) OneRow(group, tile, n, y);
        else ActivationRows.Dot<Kernel>(group, tile, n, y, yStride, activationRows);
    }

    /// <summary>Pairs ahead of the one being read that <see cref="OneRow"/> asks for, in each of its 4 streams (2 and 8 generated slower).</summary>
    private const int OneRowPrefetchPairs = 4;

    /// <summary>
    /// One activation row: the 4 passes side by side (4 streams, one register each), each register's pairs in the
    /// passes' order, so the bits of <see cref="Dot{TRows}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void OneRow(byte* group, byte* tile, int n, float* y)
    {
        int pairs = n / PairValues, quads = pairs / 4;
        long groupBytes = GroupBytes(n);
        byte* s0 = group, s1 = group + (long)PassStart(1, pairs) * PairBytes;
        byte* s2 = group + (long)PassStart(2, pairs) * PairBytes, s3 = group + (long)PassStart(3, pairs) * PairBytes;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int i = 0; i < quads; i++)
        {
            long at = (long)i * PairBytes;
            // Each stream's pair OneRowPrefetchPairs ahead, in the next group past this one's end.
            long ahead = at + OneRowPrefetchPairs * PairBytes + (i + OneRowPrefetchPairs >= quads ? groupBytes - (long)quads * PairBytes : 0);
            PrefetchPair(s0 + ahead); PrefetchPair(s1 + ahead); PrefetchPair(s2 + ahead); PrefetchPair(s3 + ahead);
            byte* a = tile + (long)(4 * i) * ActivationPairBytes;
            c0 = PairStep(s0 + at, a, c0);
            c1 = PairStep(s1 + at, a + ActivationPairBytes, c1);
            c2 = PairStep(s2 + at, a + 2 * ActivationPairBytes, c2);
            c3 = PairStep(s3 + at, a + 3 * ActivationPairBytes, c3);
        }
        // Pairs past the last whole quad: passes 0, 1 and 2 hold one more each, in order.
        int rest = pairs - 4 * quads;
        byte* last = tile + (long)(4 * quads) * ActivationPairBytes;
        long end = (long)quads * PairBytes;
        if (rest > 0) c0 = PairStep(s0 + end, last, c0);
        if (rest > 1) c1 = PairStep(s1 + end, last + ActivationPairBytes, c1);
        if (rest > 2) c2 = PairStep(s2 + end, last + 2 * ActivationPairBytes, c2);
        var total = Avx512F.Add(Avx512F.Add(c0, c2), Avx512F.Add(c1, c3));
        var evens = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
        var odds = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);
        Avx.Add(Avx512F.PermuteVar16x32(total, evens).GetLower(), Avx512F.PermuteVar16x32(total, odds).GetLower()).Store(y);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchPair(byte* w)
    {
        Sse.Prefetch0(w);
        Sse.Prefetch0(w + 64);
        Sse.Prefetch0(w + 128);
        Sse.Prefetch0(w + 192);
        Sse.Prefetch0(w + 256);
    }

    /// <summary>One pair of blocks of the 8 weight rows against one activation row's pair: <see cref="Step"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairStep(byte* w, byte* a, Vector512<float> chains)
    {
        Nibbles(w, out var w0, out var w1, out var w2, out var w3, out var w4, out var w5, out var w6, out var w7);
        return Step(w0, w1, w2, w3, w4, w5, w6, w7, Avx512F.LoadVector512((float*)(w + ScalesAt)), a, chains);
    }

    /// <summary>A pair's 4 segments of nibble bytes: low nibbles in w0..w3, high nibbles in w4..w7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Nibbles(byte* w, out Vector512<byte> w0, out Vector512<byte> w1, out Vector512<byte> w2, out Vector512<byte> w3,
        out Vector512<byte> w4, out Vector512<byte> w5, out Vector512<byte> w6, out Vector512<byte> w7)
    {
        var mask = Vector512.Create((byte)0x0F);
        var v0 = Avx512F.LoadVector512(w);
        var v1 = Avx512F.LoadVector512(w + 64);
        var v2 = Avx512F.LoadVector512(w + 128);
        var v3 = Avx512F.LoadVector512(w + 192);
        w0 = Avx512F.And(v0, mask);
        w1 = Avx512F.And(v1, mask);
        w2 = Avx512F.And(v2, mask);
        w3 = Avx512F.And(v3, mask);
        w4 = Avx512F.And(Avx512BW.ShiftRightLogical(v0.AsUInt16(), 4).AsByte(), mask);
        w5 = Avx512F.And(Avx512BW.ShiftRightLogical(v1.AsUInt16(), 4).AsByte(), mask);
        w6 = Avx512F.And(Avx512BW.ShiftRightLogical(v2.AsUInt16(), 4).AsByte(), mask);
        w7 = Avx512F.And(Avx512BW.ShiftRightLogical(v3.AsUInt16(), 4).AsByte(), mask);
    }

    /// <summary>This layout's kernel, for <see cref="ActivationRows.Dot{TKernel}"/>.</summary>
    private struct Kernel : IRowGroupKernel
    {
        public static void Dot<TRows>(byte* group, byte* tile, int n, float* y, nint yStride) where TRows : struct, IActivationRows
            => Q4_0RowGroups.Dot<TRows>(group, tile, n, y, yStride);
    }

    /// <summary>
    /// One repacked group of 8 weight rows against a tile of <typeparamref name="TRows"/> activation rows:
    /// y[j·yStride + r] for activation row j, weight row r. The row count is a type parameter so the JIT compiles one
    /// body per count with only its accumulators.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // every total is written before it is read: no 2 KB clear per call
    internal static void Dot<TRows>(byte* group, byte* tile, int n, float* y, nint yStride) where TRows : struct, IActivationRows
    {
        int m = TRows.Count;
        int pairs = n / PairValues;
        long tilePairBytes = (long)m * ActivationPairBytes;
        var totals = stackalloc Vector512<float>[8 * 4]; // [activation row][register]
        byte* w = group;
        for (int k = 0; k < 4; k++)
        {
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
            byte* a = tile + k * tilePairBytes;
            for (int p = k; p < pairs; p += 4, w += PairBytes, a += 4 * tilePairBytes)
            {
                Sse.Prefetch0(w + PrefetchDistance);
                Sse.Prefetch0(w + PrefetchDistance + 64);
                Sse.Prefetch0(w + PrefetchDistance + 128);
                Sse.Prefetch0(w + PrefetchDistance + 192);
                Sse.Prefetch0(w + PrefetchDistance + 256);
                Nibbles(w, out var w0, out var w1, out var w2, out var w3, out var w4, out var w5, out var w6, out var w7);
                var dw = Avx512F.LoadVector512((float*)(w + ScalesAt));
                c0 = Step(w0, w1, w2, w3, w4, w5, w6, w7, dw, a, c0);
                if (m > 1) c1 = Step(w0, w1, w2, w3, w4, w5, w6, w7, dw, a + ActivationPairBytes, c1);
                if (m > 2) c2 = Step(w0, w1, w2, w3, w4, w5, w6, w7, dw, a + 2 * ActivationPairBytes, c2);
                if (m > 3) c3 = Step(w0, w1, w2, w3, w4, w5, w6, w7, dw, a + 3 * ActivationPairBytes, c3);
                if (m > 4) c4 = Step(w0, w1, w2, w3, w4, w5, w6, w7, dw, a + 4 * ActivationPairBytes, c4);
                if (m > 5) c5 = Step(w0, w1, w2, w3, w4, w5, w6, w7, dw, a + 5 * ActivationPairBytes, c5);
                if (m > 6) c6 = Step(w0, w1, w2, w3, w4, w5, w6, w7, dw, a + 6 * ActivationPairBytes, c6);
                if (m > 7) c7 = Step(w0, w1, w2, w3, w4, w5, w6, w7, dw, a + 7 * ActivationPairBytes, c7);
            }
            totals[0 * 4 + k] = c0; totals[1 * 4 + k] = c1; totals[2 * 4 + k] = c2; totals[3 * 4 + k] = c3;
            totals[4 * 4 + k] = c4; totals[5 * 4 + k] = c5; totals[6 * 4 + k] = c6; totals[7 * 4 + k] = c7;
        }
        // Register k holds chains 2k (even lanes) and 2k + 1 (odd lanes): (r0 + r2) + (r1 + r3) gives (c0 + c4) + (c2 + c6)
        // in lane 2r and (c1 + c5) + (c3 + c7) in lane 2r + 1, which SumChains adds last.
        var evens = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
        var odds = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);
        for (int j = 0; j < m; j++)
        {
            var t = totals + 4 * j;
            var total = Avx512F.Add(Avx512F.Add(t[0], t[2]), Avx512F.Add(t[1], t[3]));
            var sum = Avx.Add(Avx512F.PermuteVar16x32(total, evens).GetLower(), Avx512F.PermuteVar16x32(total, odds).GetLower());
            sum.Store(y + j * yStride);
        }
    }

    /// <summary>One activation row against a pair of blocks of the 8 weight rows: chains = fma(d_w·d_y, Σ (q - 8)·y, chains).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Step(Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3,
        Vector512<byte> w4, Vector512<byte> w5, Vector512<byte> w6, Vector512<byte> w7, Vector512<float> dw, byte* a, Vector512<float> chains)
    {
        // Σ q·y over 8 groups in int16: 8 · 2 · 15 · 127 < 32768.
        var s = ActivationRows.GroupSums(w0, w1, w2, w3, w4, w5, w6, w7, a);
        var sums = Avx512F.Subtract(Avx512BW.MultiplyAddAdjacent(s, Vector512.Create((short)1)), Vector512.Create(*(long*)(a + ActivationSumsAt)).AsInt32());
        var d = Avx512F.Multiply(dw, Vector512.Create(*(double*)(a + ActivationScalesAt)).AsSingle());
        return Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(sums), chains);
    }
}

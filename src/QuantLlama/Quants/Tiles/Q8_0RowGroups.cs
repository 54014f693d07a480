using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// Q8_0 weights repacked in groups of 8 rows on the AVX-512 path (with AVX-VNNI), for products over any number of
/// activation rows (prompts, conversations decoding together, generation): 8 weight rows x 1 to 8 activation rows per call, a vector holding one 4-value group of the 8 weight rows (lane r: row r), so each weight
/// load serves 8 activation rows, whose groups are broadcast from memory. The activations are stored as unsigned bytes
/// y + 128, so AVX-VNNI's unsigned-by-signed byte dot (`vpdpbusd`, 4 products into int32, no saturation) takes them
/// against the signed weights; it starts from -128 · Σ of the weight group (one `vpdpbusd` of 128s against the
/// weights per block, shared by the 8 activation rows), so each lane ends at the group's exact Σ w·y.
/// Per (weight row, activation row) the arithmetic is the row dot's (<see cref="Q8_0.DotAvx2"/>, ggml's order): chain g
/// = fma(d_w·d_y, Σ of group g, chain g) over the blocks in order, the chains summed as hsum_float_8
/// (((c0 + c4) + (c2 + c6)) + ((c1 + c5) + (c3 + c7))), so every result equals the row dot's bits.
/// </summary>
/// <remarks>
/// Weights (<see cref="Repack"/>), for a group of 8 rows of nb blocks: the scales d_w as f32, 8 per block (lane r: row
/// r), then 4 passes' regions of nb · 64 bytes; pass k holds groups <see cref="PassGroups"/>[2k] and [2k + 1] of each
/// block (32 bytes each: row r's 4 bytes at 4r), so a pass reads its weights in order. Chains g and g + 4 run in the
/// same pass (16 accumulators for 8 activation rows, in the 32 registers of AVX-512), so a pass ends with
/// c_g + c_{g+4}, the first step of the sum. One or two activation rows (generation, two conversations decoding
/// together) run the 4 passes side by side instead (<see cref="SideBySide{TRows}"/>): 8 chains per row, 4 forward
/// streams, each asking for its line 32 blocks ahead, in the next group once past this one's end. Run pass after
/// pass, one stream asking 16 KiB ahead, one row generated 17–21 % slower.
/// Activation tile (<see cref="PackActivationRows"/>), per block 8 rows of 40 bytes: the 32 quants + 128, the scale
/// d_y as f32, 4 bytes of padding.
/// </remarks>
internal static unsafe class Q8_0RowGroups
{
    internal const int Rows = 8;
    private const int BlockSize = 32;
    private const int ScaleBytes = 8 * sizeof(float), PassBlockBytes = 64;
    private const int ActivationRowBytes = 40, ActivationScaleAt = 32;
    private const int TileBlockBytes = 8 * ActivationRowBytes;

    /// <summary>Groups per pass: chain pairs (0, 4), (2, 6), (1, 5), (3, 7), hsum_float_8's order of additions.</summary>
    private static ReadOnlySpan<byte> PassGroups => [0, 4, 2, 6, 1, 5, 3, 7];

    /// <summary>True when rows of <paramref name="n"/> values can be repacked (whole blocks).</summary>
    internal static bool Fits(int n) => n > 0 && n % BlockSize == 0;

    /// <summary>Bytes of one repacked group of 8 rows of <paramref name="n"/> values.</summary>
    internal static long GroupBytes(int n) => (long)(n / BlockSize) * (ScaleBytes + 4 * PassBlockBytes);

    /// <summary>Bytes of one activation tile of 8 rows of <paramref name="n"/> values (<see cref="PackActivationRows"/>).</summary>
    internal static long TileBytes(int n) => (long)(n / BlockSize) * TileBlockBytes;

    /// <summary>8 Q8_0 rows (<paramref name="rowBytes"/> apart) into one repacked group at <paramref name="group"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Repack(byte* rows, long rowBytes, int n, byte* group)
    {
        int nb = n / BlockSize;
        float* scales = (float*)group;
        byte* passes = group + (long)nb * ScaleBytes;
        long passBytes = (long)nb * PassBlockBytes;
        for (int b = 0; b < nb; b++)
        {
            byte* x = rows + (long)b * Q8_0.BlockBytes;
            var d = Vector256.Create(Fp16.ToFloat(*(ushort*)x), Fp16.ToFloat(*(ushort*)(x + rowBytes)),
                Fp16.ToFloat(*(ushort*)(x + 2 * rowBytes)), Fp16.ToFloat(*(ushort*)(x + 3 * rowBytes)),
                Fp16.ToFloat(*(ushort*)(x + 4 * rowBytes)), Fp16.ToFloat(*(ushort*)(x + 5 * rowBytes)),
                Fp16.ToFloat(*(ushort*)(x + 6 * rowBytes)), Fp16.ToFloat(*(ushort*)(x + 7 * rowBytes)));
            Avx.Store(scales + 8 * b, d);
            // Row r's 8 groups (dwords) to group g's 8 rows: an 8 x 8 dword transpose.
            Transpose(Load(x, 0, rowBytes), Load(x, 1, rowBytes), Load(x, 2, rowBytes), Load(x, 3, rowBytes),
                Load(x, 4, rowBytes), Load(x, 5, rowBytes), Load(x, 6, rowBytes), Load(x, 7, rowBytes),
                out var g0, out var g1, out var g2, out var g3, out var g4, out var g5, out var g6, out var g7);
            byte* dest = passes + (long)b * PassBlockBytes;
            // PassGroups: (0, 4), (2, 6), (1, 5), (3, 7).
            Avx.Store(dest, g0); Avx.Store(dest + 32, g4);
            Avx.Store(dest + passBytes, g2); Avx.Store(dest + passBytes + 32, g6);
            Avx.Store(dest + 2 * passBytes, g1); Avx.Store(dest + 2 * passBytes + 32, g5);
            Avx.Store(dest + 3 * passBytes, g3); Avx.Store(dest + 3 * passBytes + 32, g7);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Load(byte* x, int r, long rowBytes)
        => Avx.LoadVector256(x + r * rowBytes + 2).AsInt32();

    /// <summary>Dword j of input i to dword i of output j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose(Vector256<int> r0, Vector256<int> r1, Vector256<int> r2, Vector256<int> r3,
        Vector256<int> r4, Vector256<int> r5, Vector256<int> r6, Vector256<int> r7,
        out Vector256<byte> g0, out Vector256<byte> g1, out Vector256<byte> g2, out Vector256<byte> g3,
        out Vector256<byte> g4, out Vector256<byte> g5, out Vector256<byte> g6, out Vector256<byte> g7)
    {
        // Pairs of rows interleaved by dword, then by qword: per 128-bit half, 4 rows' dword j.
        var t0 = Avx2.UnpackLow(r0, r1).AsInt64(); var t1 = Avx2.UnpackHigh(r0, r1).AsInt64();
        var t2 = Avx2.UnpackLow(r2, r3).AsInt64(); var t3 = Avx2.UnpackHigh(r2, r3).AsInt64();
        var t4 = Avx2.UnpackLow(r4, r5).AsInt64(); var t5 = Avx2.UnpackHigh(r4, r5).AsInt64();
        var t6 = Avx2.UnpackLow(r6, r7).AsInt64(); var t7 = Avx2.UnpackHigh(r6, r7).AsInt64();
        var q0 = Avx2.UnpackLow(t0, t2); var q1 = Avx2.UnpackHigh(t0, t2); var q2 = Avx2.UnpackLow(t1, t3); var q3 = Avx2.UnpackHigh(t1, t3);
        var q4 = Avx2.UnpackLow(t4, t6); var q5 = Avx2.UnpackHigh(t4, t6); var q6 = Avx2.UnpackLow(t5, t7); var q7 = Avx2.UnpackHigh(t5, t7);
        // q0: rows 0-3 of dwords 0 (low half) and 4 (high half); q4 the same for rows 4-7.
        g0 = Avx2.Permute2x128(q0, q4, 0x20).AsByte(); g4 = Avx2.Permute2x128(q0, q4, 0x31).AsByte();
        g1 = Avx2.Permute2x128(q1, q5, 0x20).AsByte(); g5 = Avx2.Permute2x128(q1, q5, 0x31).AsByte();
        g2 = Avx2.Permute2x128(q2, q6, 0x20).AsByte(); g6 = Avx2.Permute2x128(q2, q6, 0x31).AsByte();
        g3 = Avx2.Permute2x128(q3, q7, 0x20).AsByte(); g7 = Avx2.Permute2x128(q3, q7, 0x31).AsByte();
    }

    /// <summary>
    /// <paramref name="count"/> (1 to 8) activation rows of <see cref="Q8Products.QuantizeActivation"/>'s form into this
    /// kernel's tile; the tile's other rows are zeros (their outputs are computed and dropped).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackActivationRows(byte* rows, nint stride, int n, byte* tile, int count)
    {
        int nb = n / BlockSize;
        for (int r = 0; r < Rows; r++)
        {
            if (r >= count)
            {
                for (int b = 0; b < nb; b++) new Span<byte>(tile + (long)b * TileBlockBytes + r * ActivationRowBytes, ActivationRowBytes).Clear();
                continue;
            }
            byte* row = rows + r * stride;
            float* scales = Q8Products.BlockInfo(row, n);
            for (int b = 0; b < nb; b++)
            {
                sbyte* quants = (sbyte*)(row + (long)b * Q8_0.BlockBytes + 2);
                byte* t = tile + (long)b * TileBlockBytes + r * ActivationRowBytes;
                *(Vector256<byte>*)t = Avx2.Xor(Avx.LoadVector256((byte*)quants), Vector256.Create((byte)0x80));
                *(float*)(t + ActivationScaleAt) = scales[b];
                *(int*)(t + ActivationScaleAt + 4) = 0;
            }
        }
    }

    /// <summary>
    /// One repacked group of 8 weight rows against a tile of up to 8 activation rows: y[j·yStride + r] for activation
    /// row j below <paramref name="activationRows"/> (1 or 2 rows run side by side, else 4 or 8, the tile's other rows
    /// being zeros), weight row r.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    [SkipLocalsInit] // the rows read are the rows written: no 1 KB clear per call
    internal static void DotRows(byte* group, byte* tile, int n, float* y, nint yStride, int activationRows)
    {
        int nb = n / BlockSize;
        var pairSums = stackalloc Vector256<float>[8 * 4]; // [activation row][pass]: c_g + c_{g+4}
        if (activationRows == 1) SideBySide<ActivationRows.One>(group, tile, nb, pairSums);
        else if (activationRows == 2) SideBySide<ActivationRows.Two>(group, tile, nb, pairSums);
        else
        {
            for (int k = 0; k < 4; k++)
            {
                byte* weights = group + (long)nb * ScaleBytes + (long)k * nb * PassBlockBytes;
                if (activationRows > 4) Pass<ActivationRows.Eight>(group, weights, tile, nb, PassGroups[2 * k], PassGroups[2 * k + 1], pairSums + k);
                else Pass<ActivationRows.Four>(group, weights, tile, nb, PassGroups[2 * k], PassGroups[2 * k + 1], pairSums + k);
            }
        }
        for (int j = 0; j < activationRows; j++)
        {
            var s = pairSums + 4 * j;
            Avx.Store(y + j * yStride, Avx.Add(Avx.Add(s[0], s[1]), Avx.Add(s[2], s[3])));
        }
    }

    /// <summary>
    /// Groups ga and gb of every block of the 8 weight rows (pass region <paramref name="weights"/>) against the first
    /// 4 or 8 activation rows of <paramref name="tile"/>: chains c_ga + c_gb into <paramref name="pairSums"/>[4j] for row j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pass<TRows>(byte* group, byte* weights, byte* tile, int nb, int ga, int gb, Vector256<float>* pairSums)
        where TRows : struct, IActivationRows
    {
        float* scales = (float*)group;
        nint quantsA = 4 * ga, quantsB = 4 * gb;
        var offsets = Vector256.Create((byte)0x80);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* w = weights + (long)b * PassBlockBytes;
            Sse.Prefetch0(w + PrefetchDistance<TRows>());
            if ((b & 1) == 0) X86Simd.PrefetchWeights((byte*)(scales + 8 * b), 2 * ScaleBytes);
            var wa = Avx.LoadVector256(w).AsSByte();
            var wb = Avx.LoadVector256(w + 32).AsSByte();
            var dw = Avx.LoadVector256(scales + 8 * b);
            // -128 · Σ w per group and weight row: the start that takes the activations' + 128 back out.
            var ca = Vector256<int>.Zero - AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, offsets, wa);
            var cb = Vector256<int>.Zero - AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, offsets, wb);
            byte* t = tile + (long)b * TileBlockBytes;
            Step(wa, wb, dw, ca, cb, t, quantsA, quantsB, ref a0, ref b0);
            if (TRows.Count > 1)
            {
                Step(wa, wb, dw, ca, cb, t + ActivationRowBytes, quantsA, quantsB, ref a1, ref b1);
                Step(wa, wb, dw, ca, cb, t + 2 * ActivationRowBytes, quantsA, quantsB, ref a2, ref b2);
                Step(wa, wb, dw, ca, cb, t + 3 * ActivationRowBytes, quantsA, quantsB, ref a3, ref b3);
            }
            if (TRows.Count > 4)
            {
                Step(wa, wb, dw, ca, cb, t + 4 * ActivationRowBytes, quantsA, quantsB, ref a4, ref b4);
                Step(wa, wb, dw, ca, cb, t + 5 * ActivationRowBytes, quantsA, quantsB, ref a5, ref b5);
                Step(wa, wb, dw, ca, cb, t + 6 * ActivationRowBytes, quantsA, quantsB, ref a6, ref b6);
                Step(wa, wb, dw, ca, cb, t + 7 * ActivationRowBytes, quantsA, quantsB, ref a7, ref b7);
            }
        }
        pairSums[0] = Avx.Add(a0, b0);
        if (TRows.Count > 1)
        {
            pairSums[4] = Avx.Add(a1, b1);
            pairSums[8] = Avx.Add(a2, b2);
            pairSums[12] = Avx.Add(a3, b3);
        }
        if (TRows.Count > 4)
        {
            pairSums[16] = Avx.Add(a4, b4);
            pairSums[20] = Avx.Add(a5, b5);
            pairSums[24] = Avx.Add(a6, b6);
            pairSums[28] = Avx.Add(a7, b7);
        }
    }

    /// <summary>
    /// One or two activation rows against all 8 groups of every block: the 4 passes' chains side by side (8 chains per
    /// row, 4 weight streams, each block's scales and weights read once for both rows), each chain's additions in the
    /// passes' order, so the same bits. The requests run <see cref="SideBySidePrefetchBlocks"/> blocks ahead in every
    /// stream (8 KiB in all), past the group's end into the same stream of the next group, which the next call reads.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SideBySide<TRows>(byte* group, byte* tile, int nb, Vector256<float>* pairSums) where TRows : struct, IActivationRows
    {
        float* scales = (float*)group;
        byte* w0 = group + (long)nb * ScaleBytes;
        long passBytes = (long)nb * PassBlockBytes, groupBytes = GroupBytes(nb * BlockSize);
        var offsets = Vector256.Create((byte)0x80);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, f0 = default, f1 = default, f2 = default, f3 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* w = w0 + (long)b * PassBlockBytes;
            byte* t = tile + (long)b * TileBlockBytes;
            var dw = Avx.LoadVector256(scales + 8 * b);
            var d = Avx.Multiply(dw, Vector256.Create(*(float*)(t + ActivationScaleAt)));
            var d1 = TRows.Count > 1 ? Avx.Multiply(dw, Vector256.Create(*(float*)(t + ActivationRowBytes + ActivationScaleAt))) : default;
            // Each stream's block SideBySidePrefetchBlocks ahead, in the next group (the same stream) past this one's
            // end; and the next group's scales.
            byte* ahead = w + SideBySidePrefetchBlocks * PassBlockBytes + (b + SideBySidePrefetchBlocks >= nb ? groupBytes - passBytes : 0);
            Sse.Prefetch0(ahead);
            Sse.Prefetch0(ahead + passBytes);
            Sse.Prefetch0(ahead + 2 * passBytes);
            Sse.Prefetch0(ahead + 3 * passBytes);
            if ((b & 1) == 0) Sse.Prefetch0((byte*)(scales + 8 * b) + groupBytes);
            // PassGroups: (0, 4), (2, 6), (1, 5), (3, 7).
            StreamStep<TRows>(w, offsets, d, d1, t, 0, 16, ref a0, ref b0, ref e0, ref f0);
            StreamStep<TRows>(w + passBytes, offsets, d, d1, t, 8, 24, ref a1, ref b1, ref e1, ref f1);
            StreamStep<TRows>(w + 2 * passBytes, offsets, d, d1, t, 4, 20, ref a2, ref b2, ref e2, ref f2);
            StreamStep<TRows>(w + 3 * passBytes, offsets, d, d1, t, 12, 28, ref a3, ref b3, ref e3, ref f3);
        }
        pairSums[0] = Avx.Add(a0, b0);
        pairSums[1] = Avx.Add(a1, b1);
        pairSums[2] = Avx.Add(a2, b2);
        pairSums[3] = Avx.Add(a3, b3);
        if (TRows.Count > 1)
        {
            pairSums[4] = Avx.Add(e0, f0);
            pairSums[5] = Avx.Add(e1, f1);
            pairSums[6] = Avx.Add(e2, f2);
            pairSums[7] = Avx.Add(e3, f3);
        }
    }

    /// <summary>Blocks ahead of the one being read that <see cref="SideBySide{TRows}"/> asks for (16 and 64 generated slower).</summary>
    private const int SideBySidePrefetchBlocks = 32;

    /// <summary>
    /// One pass's block (groups at byte offsets quantsA and quantsB) against the first one or two activation rows of
    /// the tile block <paramref name="a"/>: chains (chainA, chainB) for row 0, (chainA1, chainB1) for row 1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StreamStep<TRows>(byte* w, Vector256<byte> offsets, Vector256<float> d, Vector256<float> d1, byte* a, nint quantsA, nint quantsB,
        ref Vector256<float> chainA, ref Vector256<float> chainB, ref Vector256<float> chainA1, ref Vector256<float> chainB1)
        where TRows : struct, IActivationRows
    {
        var wa = Avx.LoadVector256(w).AsSByte();
        var wb = Avx.LoadVector256(w + 32).AsSByte();
        var ca = Vector256<int>.Zero - AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, offsets, wa);
        var cb = Vector256<int>.Zero - AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, offsets, wb);
        var sa = AvxVnni.MultiplyWideningAndAdd(ca, Vector256.Create(*(int*)(a + quantsA)).AsByte(), wa);
        chainA = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sa), chainA);
        var sb = AvxVnni.MultiplyWideningAndAdd(cb, Vector256.Create(*(int*)(a + quantsB)).AsByte(), wb);
        chainB = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sb), chainB);
        if (TRows.Count > 1)
        {
            byte* a1 = a + ActivationRowBytes;
            var sa1 = AvxVnni.MultiplyWideningAndAdd(ca, Vector256.Create(*(int*)(a1 + quantsA)).AsByte(), wa);
            chainA1 = Fma.MultiplyAdd(d1, Avx.ConvertToVector256Single(sa1), chainA1);
            var sb1 = AvxVnni.MultiplyWideningAndAdd(cb, Vector256.Create(*(int*)(a1 + quantsB)).AsByte(), wb);
            chainB1 = Fma.MultiplyAdd(d1, Avx.ConvertToVector256Single(sb1), chainB1);
        }
    }

    /// <summary>
    /// How far ahead of the block being read a pass asks for its weight line: fewer activation rows read the weights
    /// faster, so the request must go further ahead to arrive in time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int PrefetchDistance<TRows>() where TRows : struct, IActivationRows
        => TRows.Count <= 4 ? 8192 : 4096;

    /// <summary>One activation row (its block at <paramref name="a"/>) against groups ga and gb of the 8 weight rows (byte offsets in the block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(Vector256<sbyte> wa, Vector256<sbyte> wb, Vector256<float> dw, Vector256<int> ca, Vector256<int> cb, byte* a,
        nint quantsA, nint quantsB, ref Vector256<float> chainA, ref Vector256<float> chainB)
    {
        var d = Avx.Multiply(dw, Vector256.Create(*(float*)(a + ActivationScaleAt)));
        var sa = AvxVnni.MultiplyWideningAndAdd(ca, Vector256.Create(*(int*)(a + quantsA)).AsByte(), wa);
        chainA = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sa), chainA);
        var sb = AvxVnni.MultiplyWideningAndAdd(cb, Vector256.Create(*(int*)(a + quantsB)).AsByte(), wb);
        chainB = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sb), chainB);
    }
}

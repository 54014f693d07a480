using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// One Q4_0 weight row against up to 4 activation rows (a few conversations decoding together): each weight block is
/// loaded and unpacked once for all the rows. A vector lane holds one (block, activation row) pair: 128-bit lane k
/// is block k of a run of 4 (AVX-512) or 2 (AVX2), its 4 dwords the 4 activation rows, so an in-lane dword broadcast
/// of the unpacked weights meets a packed activation group (<see cref="PackActivationQuad"/>) with no horizontal
/// reduction. Per row the arithmetic is <see cref="Q8Products"/>' row dot's: each block's exact integer sum, then
/// chain[b mod 8] = fma(d_w·d_y, Σ, chain[b mod 8]) in block order, the chains summed in
/// <see cref="Q8Products.SumChains"/>' order; so each result is the row dot's to the bit.
/// </summary>
/// <remarks>
/// Activation layout: blocks in quads of <see cref="QuadBytes"/> bytes. Group g (values 4g..4g+3) at 64g: for each
/// block k of the quad, the 4 rows' 4 bytes (byte 16k + 4r); the 16 scales as f32 at 512 (float 4k + r); 8 times
/// the 16 sums of quants as int32 at 576. Missing rows and the blocks after the last are zero: their sums are 0 and
/// their scales 0, so they add exactly 0 to a chain (a chain is never -0: it starts at +0 and round-to-nearest
/// gives +0 for a zero sum).
/// </remarks>
internal static unsafe class Q4_0QuadTiles
{
    private const int BlockSize = 32;
    private const int Rows = 4;
    internal const int QuadBytes = 640;
    private const int ScalesAt = 512, SumsAt = 576;

    /// <summary>Bytes of one packed quad tile of 4 activation rows of <paramref name="n"/> values.</summary>
    internal static long PackedBytes(int n) => (long)((n / BlockSize + 3) / 4) * QuadBytes;

    /// <summary>
    /// <paramref name="count"/> (1 to 4) activation rows of <see cref="Q8Products.QuantizeActivation"/>'s form,
    /// <paramref name="stride"/> bytes apart, into the quad layout; rows count..3 are zero.
    /// </summary>
    internal static void PackActivationQuad(byte* rows, nint stride, int count, int n, byte* tile)
    {
        int nb = n / BlockSize;
        new Span<byte>(tile, (int)PackedBytes(n)).Clear();
        for (int r = 0; r < count; r++)
        {
            byte* row = rows + r * stride;
            float* scales = Q8Products.BlockInfo(row, n);
            int* sums = (int*)(scales + nb);
            for (int b = 0; b < nb; b++)
            {
                byte* quad = tile + (long)(b / 4) * QuadBytes;
                int k = b & 3;
                byte* quants = row + (long)b * Q8_0.BlockBytes + 2;
                for (int g = 0; g < 8; g++) *(uint*)(quad + 64 * g + 16 * k + 4 * r) = *(uint*)(quants + 4 * g);
                ((float*)(quad + ScalesAt))[4 * k + r] = scales[b];
                ((int*)(quad + SumsAt))[4 * k + r] = 8 * sums[b];
            }
        }
    }

    /// <summary>
    /// One weight row against a packed quad tile; the first <paramref name="count"/> rows' results stored
    /// <paramref name="yStride"/> floats apart. AVX-512: each step takes 4 blocks; chains 0-3 in one register, 4-7 in the other.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot4PackedAvx512(byte* w, byte* tile, int n, float* y, nint yStride, int count)
    {
        int nb = n / BlockSize;
        Vector512<float> c0 = default, c1 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            c0 = QuadStep(w + b * Q4_0.BlockBytes, tile + (b / 4) * QuadBytes, c0);
            c1 = QuadStep(w + (b + 4) * Q4_0.BlockBytes, tile + (b / 4 + 1) * QuadBytes, c1);
        }
        if (b + 4 <= nb)
        {
            c0 = QuadStep(w + b * Q4_0.BlockBytes, tile + (b / 4) * QuadBytes, c0);
            b += 4;
        }
        if (b < nb)
        {
            // The last 1-3 blocks, copied so that nothing past the row is read; the zero blocks add exactly 0.
            byte* last = stackalloc byte[4 * Q4_0.BlockBytes];
            new Span<byte>(last, 4 * Q4_0.BlockBytes).Clear();
            Buffer.MemoryCopy(w + b * Q4_0.BlockBytes, last, 4 * Q4_0.BlockBytes, (nb - b) * Q4_0.BlockBytes);
            if ((b & 4) == 0) c0 = QuadStep(last, tile + (b / 4) * QuadBytes, c0);
            else c1 = QuadStep(last, tile + (b / 4) * QuadBytes, c1);
        }
        // Lane (k, r) of c0 + c1 is chain k + chain k + 4 of row r; then SumChains' ((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7)).
        var s = Avx512F.Add(c0, c1);
        var total = Sse.Add(Sse.Add(s.GetLower().GetLower(), s.GetUpper().GetLower()), Sse.Add(s.GetLower().GetUpper(), s.GetUpper().GetUpper()));
        for (int r = 0; r < count; r++) y[r * yStride] = total.GetElement(r);
    }

    /// <summary>Blocks x..x+3 against one quad: chains = fma(d_w·d_y, Σ w·y, chains) for 4 activation rows each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> QuadStep(byte* x, byte* quad, Vector512<float> chains)
    {
        const int B = Q4_0.BlockBytes;
        var nibbles = Vector512.Create(
            Vector256.Create(Vector128.Load(x + 2), Vector128.Load(x + B + 2)),
            Vector256.Create(Vector128.Load(x + 2 * B + 2), Vector128.Load(x + 3 * B + 2)));
        var mask = Vector512.Create((byte)0x0F);
        // Lane k: block k's values 0-15 (groups 0-3) and, from the high nibbles, 16-31 (groups 4-7).
        var low = Avx512F.And(nibbles, mask).AsInt32();
        var high = Avx512F.And(Avx512BW.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte(), mask).AsInt32();
        // 8 groups of pair sums in int16: 8 · 2 · 15 · 128 < 32768.
        var pairs = Avx512BW.Add(Avx512BW.Add(Group(low, 0x00, quad), Group(low, 0x55, quad + 64)), Avx512BW.Add(Group(low, 0xAA, quad + 128), Group(low, 0xFF, quad + 192)));
        pairs = Avx512BW.Add(pairs, Avx512BW.Add(Avx512BW.Add(Group(high, 0x00, quad + 256), Group(high, 0x55, quad + 320)), Avx512BW.Add(Group(high, 0xAA, quad + 384), Group(high, 0xFF, quad + 448))));
        var sums = Avx512F.Subtract(Avx512BW.MultiplyAddAdjacent(pairs, Vector512.Create((short)1)), Avx512F.LoadVector512((int*)(quad + SumsAt)));
        var dw = Vector512.Create(
            Vector256.Create(Vector128.Create(Fp16.ToFloat(*(ushort*)x)), Vector128.Create(Fp16.ToFloat(*(ushort*)(x + B)))),
            Vector256.Create(Vector128.Create(Fp16.ToFloat(*(ushort*)(x + 2 * B))), Vector128.Create(Fp16.ToFloat(*(ushort*)(x + 3 * B)))));
        var d = Avx512F.Multiply(dw, Avx512F.LoadVector512((float*)(quad + ScalesAt)));
        return Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(sums), chains);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Group(Vector512<int> quarters, [ConstantExpected] byte lane, byte* group)
        => Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(quarters, lane).AsByte(), Avx512BW.LoadVector512((sbyte*)group));

    /// <summary>
    /// <see cref="Dot4PackedAvx512"/> on AVX2 (with AVX-VNNI's byte dot where the CPU has it): each step takes 2
    /// blocks (half a quad); chains 2j and 2j + 1 in register j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot4PackedAvx2(byte* w, byte* tile, int n, float* y, nint yStride, int count)
    {
        int nb = n / BlockSize;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            byte* x = w + b * Q4_0.BlockBytes, t = tile + (b / 4) * QuadBytes;
            c0 = PairStep(x, t, c0);
            c1 = PairStep(x + 2 * Q4_0.BlockBytes, t + 32, c1);
            c2 = PairStep(x + 4 * Q4_0.BlockBytes, t + QuadBytes, c2);
            c3 = PairStep(x + 6 * Q4_0.BlockBytes, t + QuadBytes + 32, c3);
        }
        // A tail of fewer than 8 blocks: its pairs go to registers 0, 1, 2 in turn, an odd last block (with a zero
        // block copied beside it, so nothing past the row is read) to the next.
        byte* last = stackalloc byte[2 * Q4_0.BlockBytes];
        for (int j = 0; b < nb; j++, b += 2)
        {
            byte* x = w + b * Q4_0.BlockBytes, t = tile + (b / 4) * QuadBytes + 32 * ((b / 2) & 1);
            if (b + 1 == nb)
            {
                new Span<byte>(last, 2 * Q4_0.BlockBytes).Clear();
                Buffer.MemoryCopy(x, last, 2 * Q4_0.BlockBytes, Q4_0.BlockBytes);
                x = last;
            }
            switch (j)
            {
                case 0: c0 = PairStep(x, t, c0); break;
                case 1: c1 = PairStep(x, t, c1); break;
                case 2: c2 = PairStep(x, t, c2); break;
                default: c3 = PairStep(x, t, c3); break;
            }
        }
        // Low lane: (c0 + c4) + (c2 + c6); high lane: (c1 + c5) + (c3 + c7); then low + high, SumChains' order.
        var halves = Avx.Add(Avx.Add(c0, c2), Avx.Add(c1, c3));
        var total = Sse.Add(halves.GetLower(), halves.GetUpper());
        for (int r = 0; r < count; r++) y[r * yStride] = total.GetElement(r);
    }

    /// <summary>Blocks x and x + 1 against half a quad (groups 32 bytes into each 64, scales and sums likewise).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PairStep(byte* x, byte* half, Vector256<float> chains)
    {
        const int B = Q4_0.BlockBytes;
        var nibbles = Vector256.Create(Vector128.Load(x + 2), Vector128.Load(x + B + 2));
        var mask = Vector256.Create((byte)0x0F);
        var low = Avx2.And(nibbles, mask).AsInt32();
        var high = Avx2.And(Avx2.ShiftRightLogical(nibbles.AsUInt16(), 4).AsByte(), mask).AsInt32();
        Vector256<int> sums;
        if (AvxVnni.IsSupported)
        {
            // Two accumulators, so that 8 dependent byte dots do not wait on each other's latency.
            var a = Dpbusd(Vector256<int>.Zero, Avx2.Shuffle(low, 0x00), half);
            var c = Dpbusd(Vector256<int>.Zero, Avx2.Shuffle(high, 0x00), half + 256);
            a = Dpbusd(a, Avx2.Shuffle(low, 0x55), half + 64);
            c = Dpbusd(c, Avx2.Shuffle(high, 0x55), half + 320);
            a = Dpbusd(a, Avx2.Shuffle(low, 0xAA), half + 128);
            c = Dpbusd(c, Avx2.Shuffle(high, 0xAA), half + 384);
            a = Dpbusd(a, Avx2.Shuffle(low, 0xFF), half + 192);
            c = Dpbusd(c, Avx2.Shuffle(high, 0xFF), half + 448);
            sums = Avx2.Add(a, c);
        }
        else
        {
            var pairs = Avx2.Add(Avx2.Add(Group(low, 0x00, half), Group(low, 0x55, half + 64)), Avx2.Add(Group(low, 0xAA, half + 128), Group(low, 0xFF, half + 192)));
            pairs = Avx2.Add(pairs, Avx2.Add(Avx2.Add(Group(high, 0x00, half + 256), Group(high, 0x55, half + 320)), Avx2.Add(Group(high, 0xAA, half + 384), Group(high, 0xFF, half + 448))));
            sums = Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
        }
        sums = Avx2.Subtract(sums, Avx.LoadVector256((int*)(half + SumsAt)));
        var dw = Vector256.Create(Vector128.Create(Fp16.ToFloat(*(ushort*)x)), Vector128.Create(Fp16.ToFloat(*(ushort*)(x + B))));
        var d = Avx.Multiply(dw, Avx.LoadVector256((float*)(half + ScalesAt)));
        return Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sums), chains);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Group(Vector256<int> quarters, [ConstantExpected] byte lane, byte* group)
        => Avx2.MultiplyAddAdjacent(Avx2.Shuffle(quarters, lane).AsByte(), Avx.LoadVector256((sbyte*)group));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dpbusd(Vector256<int> acc, Vector256<int> unsignedWeights, byte* group)
        => AvxVnni.MultiplyWideningAndAdd(acc, unsignedWeights.AsByte(), Avx.LoadVector256((sbyte*)group));
}

using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants;

// Q4_0's x86 kernels, over the activation form and packed tiles of Q8Products. Single rows and 8-row tiles share
// one arithmetic, so that a batch gives the same bits as its rows one at a time: each block's Σ (q - 8)·y as an
// exact integer first, then chain[b mod 8] = fma(d_w·d_y, Σ, chain[b mod 8]) over the blocks in order (d_w·d_y is
// exact: a product of two halves fits a float), and the 8 chains summed in Q8Products.SumChains' order.
// A row dot holds the 8 chains in the lanes of one vector (8 blocks' integer sums meet in one vector, one FMA);
// a tile holds one activation row per lane and one vector per chain, so its integer sums need no horizontal
// reduction and each block's float step serves 8 rows. ggml repacks the weights at load for the same effect;
// here the weights stay as mapped and the small activation is packed instead.
public static unsafe partial class Q4_0
{
    /// <summary>The AVX2 row dot over ggml's form of the activation (Q8_0 blocks only): its block information computed here first.</summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        int nb = n / BlockSize;
        var info = nb <= 512 ? stackalloc float[2 * nb] : new float[2 * nb];
        fixed (float* i = info)
        {
            Q8Products.WriteBlockInfo(a, nb, i);
            return DotAvx2(w, a, i, n);
        }
    }

    /// <summary>
    /// The AVX2 row dot; <paramref name="aInfo"/> holds the activation blocks' scales as f32, then their sums of
    /// quants (<see cref="Q8Products.BlockInfo"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* w, byte* a, float* aInfo, int n)
    {
        const int ts = BlockBytes;
        int nb = n / BlockSize;
        var chains = Vector256<float>.Zero;
        int i = 0;
        for (; i + 8 <= nb; i += 8)
        {
            byte* x = w + i * ts, y = a + i * Q8_0.BlockBytes;
            X86Simd.PrefetchWeights(x, 8 * ts);
            var sums = CompleteSums8(X86Simd.Sum8(
                PartialBlockSums(x, y), PartialBlockSums(x + ts, y + Q8_0.BlockBytes),
                PartialBlockSums(x + 2 * ts, y + 2 * Q8_0.BlockBytes), PartialBlockSums(x + 3 * ts, y + 3 * Q8_0.BlockBytes),
                PartialBlockSums(x + 4 * ts, y + 4 * Q8_0.BlockBytes), PartialBlockSums(x + 5 * ts, y + 5 * Q8_0.BlockBytes),
                PartialBlockSums(x + 6 * ts, y + 6 * Q8_0.BlockBytes), PartialBlockSums(x + 7 * ts, y + 7 * Q8_0.BlockBytes)),
                (int*)(aInfo + nb) + i);
            var dw = Vector256.Create(
                Fp16.ToFloat(*(ushort*)x), Fp16.ToFloat(*(ushort*)(x + ts)),
                Fp16.ToFloat(*(ushort*)(x + 2 * ts)), Fp16.ToFloat(*(ushort*)(x + 3 * ts)),
                Fp16.ToFloat(*(ushort*)(x + 4 * ts)), Fp16.ToFloat(*(ushort*)(x + 5 * ts)),
                Fp16.ToFloat(*(ushort*)(x + 6 * ts)), Fp16.ToFloat(*(ushort*)(x + 7 * ts)));
            chains = Fma.MultiplyAdd(Avx.Multiply(dw, Avx.LoadVector256(aInfo + i)), Avx.ConvertToVector256Single(sums), chains);
        }
        float* c = stackalloc float[8];
        Avx.Store(c, chains);
        for (; i < nb; i++)
        {
            byte* x = w + i * ts, y = a + i * Q8_0.BlockBytes;
            c[i & 7] = MathF.FusedMultiplyAdd(Fp16.ToFloat(*(ushort*)x) * aInfo[i], X86Simd.HSum(BlockSums(x, y)), c[i & 7]);
        }
        return Q8Products.SumChains(c);
    }

    /// <summary>One block's Σ (q - 8)·y, spread over 8 int32 lanes: q·y - 8·y in pairs, the same int16 values as ggml's sign trick, one operation fewer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockSums(byte* x, byte* y)
    {
        var q8 = Avx.LoadVector256((sbyte*)(y + 2));
        var pairs = Avx2.Subtract(Avx2.MultiplyAddAdjacent(X86Simd.BytesFromNibbles32(x + 2), q8), Avx2.MultiplyAddAdjacent(Vector256.Create((byte)8), q8));
        return Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
    }

    /// <summary>One block's Σ q·y: the -8·Σy is left to <see cref="CompleteSums8"/>, once per 8 blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PartialBlockSums(byte* x, byte* y)
        => Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(X86Simd.BytesFromNibbles32(x + 2), Avx.LoadVector256((sbyte*)(y + 2))), Vector256.Create((short)1));

    /// <summary>8 blocks' totals from their partial sums, given the activation blocks' sums of quants.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> CompleteSums8(Vector256<int> partialTotals, int* activationSums)
        => Avx2.Subtract(partialTotals, Avx2.ShiftLeftLogical(Avx.LoadVector256(activationSums), 3));

    /// <summary>
    /// One weight row against a packed tile of 8 activation rows (<see cref="Q8Products.PackActivationTile"/>),
    /// results <paramref name="yStride"/> floats apart: per row exactly <see cref="DotAvx2(byte*, byte*, float*, int)"/>'s
    /// arithmetic, with the 8 chains in 8 registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void Dot8PackedAvx2(byte* w, byte* tile, int n, float* y, nint yStride) => Dot8Packed<Avx2Tile>(w, tile, n, y, yStride);

    /// <summary>
    /// <see cref="Dot8PackedAvx2"/> with AVX-VNNI's byte dot (u8·s8, four products added into an int32 lane in one
    /// instruction) in place of the byte and word multiply-adds and the int16 additions: the same exact integer sums
    /// and the same float steps, so the same bits as the row dot, in fewer instructions.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot8PackedAvxVnni(byte* w, byte* tile, int n, float* y, nint yStride) => Dot8Packed<VnniTile>(w, tile, n, y, yStride);

    /// <summary>One block of a 256-bit packed tile: chain = fma(d_w·d_y, Σ w·y, chain) for 8 activation rows.</summary>
    private interface ITileStep
    {
        static abstract Vector256<float> Step(byte* w, byte* tile, int b, Vector256<float> chain);
    }

    private readonly struct Avx2Tile : ITileStep
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Step(byte* w, byte* tile, int b, Vector256<float> chain) => TileStep(w, tile, b, chain);
    }

    private readonly struct VnniTile : ITileStep
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Step(byte* w, byte* tile, int b, Vector256<float> chain) => VnniStep(w, tile, b, chain);
    }

    /// <summary>The 256-bit tiles' block loop: block b into chain b mod 8, the 8 chains in 8 registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot8Packed<TStep>(byte* w, byte* tile, int n, float* y, nint yStride) where TStep : struct, ITileStep
    {
        int nb = n / BlockSize;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            c0 = TStep.Step(w, tile, b, c0); c1 = TStep.Step(w, tile, b + 1, c1);
            c2 = TStep.Step(w, tile, b + 2, c2); c3 = TStep.Step(w, tile, b + 3, c3);
            c4 = TStep.Step(w, tile, b + 4, c4); c5 = TStep.Step(w, tile, b + 5, c5);
            c6 = TStep.Step(w, tile, b + 6, c6); c7 = TStep.Step(w, tile, b + 7, c7);
        }
        if (b < nb) { c0 = TStep.Step(w, tile, b, c0); b++; }
        if (b < nb) { c1 = TStep.Step(w, tile, b, c1); b++; }
        if (b < nb) { c2 = TStep.Step(w, tile, b, c2); b++; }
        if (b < nb) { c3 = TStep.Step(w, tile, b, c3); b++; }
        if (b < nb) { c4 = TStep.Step(w, tile, b, c4); b++; }
        if (b < nb) { c5 = TStep.Step(w, tile, b, c5); b++; }
        if (b < nb) { c6 = TStep.Step(w, tile, b, c6); }
        Q8Products.StoreChainSums(c0, c1, c2, c3, c4, c5, c6, c7, y, yStride);
    }

    /// <summary>One block of a tile: chain = fma(d_w·d_y, Σ w·y, chain) for 8 activation rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TileStep(byte* w, byte* tile, int b, Vector256<float> chain)
    {
        byte* x = w + (long)b * BlockBytes;
        byte* t = tile + (long)b * Q8Products.PackedBlockBytes;
        var sums = TileSums(x, t);
        var d = Avx.Multiply(Vector256.Create(Fp16.ToFloat(*(ushort*)x)), Avx.LoadVector256((float*)(t + Q8Products.PackedScales)));
        return Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sums), chain);
    }

    /// <summary>
    /// One block's Σ (q - 8)·y against one block of a packed tile, lane r for activation row r: Σ q·y over the 8
    /// groups in int16 (8 groups of |2 · 15 · 128| stay below 32768), widened once, minus 8·Σy.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> TileSums(byte* x, byte* tile)
    {
        var sums = Avx2.MultiplyAddAdjacent(Q8Products.GroupPairSums(X86Simd.BytesFromNibbles32(x + 2), tile), Vector256.Create((short)1));
        return Avx2.Subtract(sums, Avx2.ShiftLeftLogical(Avx.LoadVector256((int*)(tile + Q8Products.PackedSums)), 3));
    }

    /// <summary>One block of a tile with AVX-VNNI's byte dot: <see cref="TileStep"/>'s integer sums and float step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> VnniStep(byte* w, byte* tile, int b, Vector256<float> chain)
    {
        byte* x = w + (long)b * BlockBytes;
        byte* t = tile + (long)b * Q8Products.PackedBlockBytes;
        Q8Products.SplitGroups(X86Simd.BytesFromNibbles32(x + 2), out var low, out var high);
        // Two accumulators: a chain of 8 dependent byte dots would make each block wait on their latency.
        var sumsLow = Dpbusd(Vector256<int>.Zero, Avx2.Shuffle(low, 0x00), t);
        var sumsHigh = Dpbusd(Vector256<int>.Zero, Avx2.Shuffle(high, 0x00), t + 128);
        sumsLow = Dpbusd(sumsLow, Avx2.Shuffle(low, 0x55), t + 32);
        sumsHigh = Dpbusd(sumsHigh, Avx2.Shuffle(high, 0x55), t + 160);
        sumsLow = Dpbusd(sumsLow, Avx2.Shuffle(low, 0xAA), t + 64);
        sumsHigh = Dpbusd(sumsHigh, Avx2.Shuffle(high, 0xAA), t + 192);
        sumsLow = Dpbusd(sumsLow, Avx2.Shuffle(low, 0xFF), t + 96);
        sumsHigh = Dpbusd(sumsHigh, Avx2.Shuffle(high, 0xFF), t + 224);
        var sums = Avx2.Add(sumsLow, sumsHigh);
        sums = Avx2.Subtract(sums, Avx2.ShiftLeftLogical(Avx.LoadVector256((int*)(t + Q8Products.PackedSums)), 3));
        var d = Avx.Multiply(Vector256.Create(Fp16.ToFloat(*(ushort*)x)), Avx.LoadVector256((float*)(t + Q8Products.PackedScales)));
        return Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sums), chain);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dpbusd(Vector256<int> acc, Vector256<int> unsignedWeights, byte* group)
        => AvxVnni.MultiplyWideningAndAdd(acc, unsignedWeights.AsByte(), Avx.LoadVector256((sbyte*)group));

    // The AVX-512 tile: the AVX2 tile's arithmetic per row, so every result equals the AVX2 row dot's bits, but each
    // 512-bit step takes two blocks, 8 activation rows per 256-bit half, which halves the instructions per block.
    // Its layout (PackActivationTileAvx512): blocks in pairs of 640 bytes, the size of two of Q8Products' tile blocks.
    // Group g (values 4g..4g+3) at 64g: the first block's 8 rows x 4 bytes, then the second block's; the 16 scales as
    // f32 at 512; the 16 sums of quants at 576. An odd last block keeps Q8Products' single-block layout and the AVX2
    // tile's step.
    private const int PairBytes = 2 * Q8Products.PackedBlockBytes;
    private const int PairScalesAt = 512, PairSumsAt = 576;

    /// <summary>8 activation rows of <see cref="Q8Products.QuantizeActivation"/>'s form into the AVX-512 tile layout.</summary>
    internal static void PackActivationTileAvx512(byte* rows, nint stride, int n, byte* tile)
    {
        int nb = n / BlockSize;
        for (int r = 0; r < 8; r++)
        {
            byte* row = rows + r * stride;
            float* scales = Q8Products.BlockInfo(row, n);
            int* sums = (int*)(scales + nb);
            for (int b = 0; b < nb; b++)
            {
                byte* quants = row + (long)b * Q8_0.BlockBytes + 2;
                byte* pair = tile + (long)(b / 2) * PairBytes;
                if ((nb & 1) == 1 && b == nb - 1)
                {
                    // The odd last block: Q8Products' single-block layout.
                    Q8Products.PackGroups(quants, r, pair);
                    ((float*)(pair + Q8Products.PackedScales))[r] = scales[b];
                    ((int*)(pair + Q8Products.PackedSums))[r] = sums[b];
                    continue;
                }
                int half = 32 * (b & 1);
                for (int g = 0; g < 8; g++) *(uint*)(pair + 64 * g + half + 4 * r) = *(uint*)(quants + 4 * g);
                ((float*)(pair + PairScalesAt + half))[r] = scales[b];
                ((int*)(pair + PairSumsAt + half))[r] = sums[b];
            }
        }
    }

    /// <summary>
    /// One weight row against an AVX-512 tile of 8 activation rows (<see cref="PackActivationTileAvx512"/>), results
    /// <paramref name="yStride"/> floats apart. Chains 2k and 2k + 1 share register k (low and high half), so a
    /// block pair's float step is one FMA.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot8PackedAvx512(byte* w, byte* tile, int n, float* y, nint yStride)
    {
        int nb = n / BlockSize;
        Vector512<float> c01 = default, c23 = default, c45 = default, c67 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            c01 = PairStep(w, tile, b, c01);
            c23 = PairStep(w, tile, b + 2, c23);
            c45 = PairStep(w, tile, b + 4, c45);
            c67 = PairStep(w, tile, b + 6, c67);
        }
        // A tail of fewer than 8 blocks: its pairs go to registers 0, 1, 2 in turn, an odd last block to the next.
        if (b + 2 <= nb) { c01 = PairStep(w, tile, b, c01); b += 2; }
        if (b + 2 <= nb) { c23 = PairStep(w, tile, b, c23); b += 2; }
        if (b + 2 <= nb) { c45 = PairStep(w, tile, b, c45); b += 2; }
        if (b < nb)
        {
            switch ((b >> 1) & 3)
            {
                case 0: c01 = OddLastStep(w, tile, b, c01); break;
                case 1: c23 = OddLastStep(w, tile, b, c23); break;
                case 2: c45 = OddLastStep(w, tile, b, c45); break;
                default: c67 = OddLastStep(w, tile, b, c67); break;
            }
        }
        // Halves (c0 + c4) + (c2 + c6) and (c1 + c5) + (c3 + c7), then low + high: SumChains' order.
        var total = Avx512F.Add(Avx512F.Add(c01, c45), Avx512F.Add(c23, c67));
        var sum = Avx.Add(total.GetLower(), total.GetUpper());
        for (int k = 0; k < 8; k++) y[k * yStride] = sum.GetElement(k);
    }

    /// <summary>The odd last block b (chain b mod 8, the low half of <paramref name="chains"/>), in Q8Products' single-block layout.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Vector512<float> OddLastStep(byte* w, byte* tile, int b, Vector512<float> chains)
    {
        byte* x = w + (long)b * BlockBytes;
        byte* t = tile + (long)(b / 2) * PairBytes;
        var d = Avx.Multiply(Vector256.Create(Fp16.ToFloat(*(ushort*)x)), Avx.LoadVector256((float*)(t + Q8Products.PackedScales)));
        return chains.WithLower(Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(TileSums(x, t)), chains.GetLower()));
    }

    /// <summary>Blocks b and b + 1: chains = fma(d_w·d_y, Σ w·y, chains) for 8 activation rows each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairStep(byte* w, byte* tile, int b, Vector512<float> chains)
    {
        byte* x = w + (long)b * BlockBytes;
        byte* pair = tile + (long)(b / 2) * PairBytes;
        var sums = PairSums(x, pair);
        var dw = Vector512.Create(Vector256.Create(Fp16.ToFloat(*(ushort*)x)), Vector256.Create(Fp16.ToFloat(*(ushort*)(x + BlockBytes))));
        var d = Avx512F.Multiply(dw, Avx512F.LoadVector512((float*)(pair + PairScalesAt)));
        return Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(sums), chains);
    }

    /// <summary>Two blocks against a pair: Σ q·y over the 8 groups in int16 (8 · 2 · 15 · 128 &lt; 32768), widened once, minus 8·Σy.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairSums(byte* x, byte* pair)
    {
        // The two blocks' 16 nibble bytes as 128-bit quarters (b, b', b, b'); the low nibbles (values 0-15) of
        // each and, shifted by 4, the high ones (values 16-31).
        var halves = Vector256.Create(Sse2.LoadVector128(x + 2), Sse2.LoadVector128(x + BlockBytes + 2)).AsUInt64();
        var both = Vector512.Create(halves, halves);
        var low = Avx512F.And(both, Vector512.Create(0x0F0F0F0F0F0F0F0Ful));
        var high = Avx512F.And(Avx512F.ShiftRightLogical(both, 4), Vector512.Create(0x0F0F0F0F0F0F0F0Ful));
        // Quarters (b, b, b', b') of each: then one in-lane dword broadcast per group.
        var lowQ = Avx512F.Shuffle4x128(low, low, 0b01_01_00_00).AsInt32();
        var highQ = Avx512F.Shuffle4x128(high, high, 0b01_01_00_00).AsInt32();
        var pairs = Avx512BW.Add(Avx512BW.Add(PairGroup(lowQ, 0x00, pair), PairGroup(lowQ, 0x55, pair + 64)), Avx512BW.Add(PairGroup(lowQ, 0xAA, pair + 128), PairGroup(lowQ, 0xFF, pair + 192)));
        pairs = Avx512BW.Add(pairs, Avx512BW.Add(Avx512BW.Add(PairGroup(highQ, 0x00, pair + 256), PairGroup(highQ, 0x55, pair + 320)), Avx512BW.Add(PairGroup(highQ, 0xAA, pair + 384), PairGroup(highQ, 0xFF, pair + 448))));
        var sums = Avx512BW.MultiplyAddAdjacent(pairs, Vector512.Create((short)1));
        return Avx512F.Subtract(sums, Avx512F.ShiftLeftLogical(Avx512F.LoadVector512((int*)(pair + PairSumsAt)), 3));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> PairGroup(Vector512<int> quarters, [ConstantExpected] byte lane, byte* group)
        => Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(quarters, lane).AsByte(), Avx512BW.LoadVector512((sbyte*)group));
}

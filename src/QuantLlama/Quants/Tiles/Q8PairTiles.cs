using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// The AVX-512 form of <see cref="Q8Products"/>' packed 8-row tile for Q4_0: the same arithmetic per row
/// (each block's exact integer sum, chain[b mod 8] = fma(d_w·d_y, Σ, chain[b mod 8]), the chains summed in
/// <see cref="Q8Products.SumChains"/>' order), so every result equals the AVX2 row dot's bits; but each 512-bit step
/// takes two blocks, 8 activation rows per 256-bit half, which halves the instructions per block.
/// </summary>
/// <remarks>
/// Tile layout (<see cref="PackActivationTile"/>): blocks in pairs of 640 bytes, the size of two of
/// <see cref="Q8Products.PackActivationTile"/>'s blocks. Group g (values 4g..4g+3) at 64g: the first block's 8 rows
/// x 4 bytes, then the second block's; the 16 scales as f32 at 512; the 16 sums of quants at 576. An odd last block
/// keeps <see cref="Q8Products"/>' single-block layout and its 256-bit step.
/// </remarks>
internal static unsafe class Q8PairTiles
{
    private const int BlockSize = 32;
    private const int PairBytes = 2 * Q8Products.PackedBlockBytes;
    private const int PairScalesAt = 512, PairSumsAt = 576;


    /// <summary>8 activation rows of <see cref="Q8Products.QuantizeActivation"/>'s form into this tile layout.</summary>
    internal static void PackActivationTile(byte* rows, nint stride, int n, byte* tile)
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
    /// One weight row against a tile of 8 activation rows (<see cref="PackActivationTile"/>), results
    /// <paramref name="yStride"/> floats apart. Chains 2k and 2k + 1 share register k (low and high half), so a
    /// block pair's float step is one FMA.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot8PackedQ4_0(byte* w, byte* tile, int n, float* y, nint yStride)
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
        byte* x = w + (long)b * Q4_0.BlockBytes;
        byte* t = tile + (long)(b / 2) * PairBytes;
        var d = Avx.Multiply(Vector256.Create(Fp16.ToFloat(*(ushort*)x)), Avx.LoadVector256((float*)(t + Q8Products.PackedScales)));
        return chains.WithLower(Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Q4_0.TileSums(x, t)), chains.GetLower()));
    }

    /// <summary>Blocks b and b + 1: chains = fma(d_w·d_y, Σ w·y, chains) for 8 activation rows each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairStep(byte* w, byte* tile, int b, Vector512<float> chains)
    {
        byte* x = w + (long)b * Q4_0.BlockBytes;
        byte* pair = tile + (long)(b / 2) * PairBytes;
        var sums = Q4_0Pairs.PairSums(x, pair);
        var dw = Vector512.Create(Vector256.Create(Fp16.ToFloat(*(ushort*)x)), Vector256.Create(Fp16.ToFloat(*(ushort*)(x + Q4_0.BlockBytes))));
        var d = Avx512F.Multiply(dw, Avx512F.LoadVector512((float*)(pair + PairScalesAt)));
        return Avx512F.FusedMultiplyAdd(d, Avx512F.ConvertToVector512Single(sums), chains);
    }

    /// <summary>
    /// Two blocks' 32 bytes of values as dwords (each block's 8 groups of 4 values in order, the second block's at
    /// dwords 8-15) to the group <paramref name="index"/> picks (<see cref="GroupIndex"/>) of each in every lane of its half.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<sbyte> GroupBroadcast(Vector512<int> values, Vector512<int> index) => Avx512F.PermuteVar16x32(values, index).AsSByte();

    /// <summary>The index of <see cref="GroupBroadcast"/> for group g: g in the low half, 8 + g in the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> GroupIndex([ConstantExpected] int g) => Vector512.Create(g, g, g, g, g, g, g, g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g);

    /// <summary>Q4_0 blocks against a pair: Σ q·y over the 8 groups in int16 (8 · 2 · 15 · 128 &lt; 32768), widened once, minus 8·Σy.</summary>
    private static class Q4_0Pairs
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> PairSums(byte* x, byte* pair)
        {
            // The two blocks' 16 nibble bytes as 128-bit quarters (b, b, b', b'), the second and fourth shifted by 4:
            // values 0-15 and 16-31 of each block.
            // The two blocks' 16 nibble bytes as 128-bit quarters (b, b', b, b'); the low nibbles (values 0-15) of
            // each and, shifted by 4, the high ones (values 16-31).
            var halves = Vector256.Create(Sse2.LoadVector128(x + 2), Sse2.LoadVector128(x + Q4_0.BlockBytes + 2)).AsUInt64();
            var both = Vector512.Create(halves, halves);
            var low = Avx512F.And(both, Vector512.Create(0x0F0F0F0F0F0F0F0Ful));
            var high = Avx512F.And(Avx512F.ShiftRightLogical(both, 4), Vector512.Create(0x0F0F0F0F0F0F0F0Ful));
            // Quarters (b, b, b', b') of each: then one in-lane dword broadcast per group.
            var lowQ = Avx512F.Shuffle4x128(low, low, 0b01_01_00_00).AsInt32();
            var highQ = Avx512F.Shuffle4x128(high, high, 0b01_01_00_00).AsInt32();
            var pairs = Avx512BW.Add(Avx512BW.Add(Group(lowQ, 0x00, pair), Group(lowQ, 0x55, pair + 64)), Avx512BW.Add(Group(lowQ, 0xAA, pair + 128), Group(lowQ, 0xFF, pair + 192)));
            pairs = Avx512BW.Add(pairs, Avx512BW.Add(Avx512BW.Add(Group(highQ, 0x00, pair + 256), Group(highQ, 0x55, pair + 320)), Avx512BW.Add(Group(highQ, 0xAA, pair + 384), Group(highQ, 0xFF, pair + 448))));
            var sums = Avx512BW.MultiplyAddAdjacent(pairs, Vector512.Create((short)1));
            return Avx512F.Subtract(sums, Avx512F.ShiftLeftLogical(Avx512F.LoadVector512((int*)(pair + PairSumsAt)), 3));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<short> Group(Vector512<int> quarters, [ConstantExpected] byte lane, byte* group)
            => Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(quarters, lane).AsByte(), Avx512BW.LoadVector512((sbyte*)group));
    }
}

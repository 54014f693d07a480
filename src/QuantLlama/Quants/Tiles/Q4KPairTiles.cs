using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// The AVX-512 form of Q4_K's packed 8-row tile (<see cref="Q4_K.Dot8Packed"/>): each 512-bit step takes the two
/// 32-value sub-blocks that share a 32-byte run of nibbles (low nibbles: sub-block 2c, high: 2c + 1), 8 activation
/// rows per 256-bit half. The block's integer sums T and M are the same exact integers and its float step and
/// chains are the AVX2 tile's, so every result equals the AVX2 row dot's bits.
/// </summary>
/// <remarks>
/// Tile layout (<see cref="PackActivationTile"/>), per 256-value block, as large as Q4_K's: for each sub-block pair
/// c, group g (values 4g..4g+3) at 512c + 64g: sub-block 2c's 8 rows x 4 bytes, then sub-block 2c + 1's; then the
/// 8 rows' scales as f32 and the sub-block sums as int16 pairs, where Q4_K's tile has them.
/// </remarks>
internal static unsafe class Q4KPairTiles
{
    private const int BlockSize = 256;
    // Q4_K's tile offsets: scales after the 8 x 256 bytes of quants, then 4 x 32 bytes of sub-block sums.
    private const int PackedScales = 8 * 256;
    private const int PackedBlockSums = PackedScales + 8 * sizeof(float);
    private const int PackedBlockBytes = PackedBlockSums + 4 * 32;

    /// <summary>8 Q8_K activation rows (<paramref name="stride"/> bytes apart) into this tile layout.</summary>
    internal static void PackActivationTile(byte* rows, nint stride, int n, byte* tile)
    {
        int blocks = n / BlockSize;
        for (int r = 0; r < 8; r++)
        {
            for (int b = 0; b < blocks; b++)
            {
                var y = (BlockQ8K*)(rows + r * stride + (long)b * Q8_K.BlockBytes);
                byte* t = tile + (long)b * PackedBlockBytes;
                for (int j = 0; j < 8; j++)
                {
                    byte* quants = (byte*)y->Qs + 32 * j;
                    byte* dest = t + 512 * (j >> 1) + 32 * (j & 1) + 4 * r;
                    for (int g = 0; g < 8; g++) *(uint*)(dest + 64 * g) = *(uint*)(quants + 4 * g);
                }
                ((float*)(t + PackedScales))[r] = y->D;
                for (int p = 0; p < 4; p++)
                {
                    short* pair = (short*)(t + PackedBlockSums + 32 * p + 4 * r);
                    pair[0] = (short)(y->BSums[4 * p] + y->BSums[4 * p + 1]);
                    pair[1] = (short)(y->BSums[4 * p + 2] + y->BSums[4 * p + 3]);
                }
            }
        }
    }

    /// <summary>One weight row against a tile of 8 activation rows (<see cref="PackActivationTile"/>), results <paramref name="yStride"/> floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot8Packed(byte* weights, byte* tile, int n, float* result, nint yStride)
    {
        int blocks = n / BlockSize;
        Vector256<float>* chains = stackalloc Vector256<float>[8];
        for (int k = 0; k < 8; k++) chains[k] = default;
        for (int b = 0; b < blocks; b++)
        {
            var x = (BlockQ4K*)(weights + (long)b * Q4_K.BlockBytes);
            byte* w = (byte*)x;
            byte* t = tile + (long)b * PackedBlockBytes;
            Vector256<short> scalesAndMins = SimdHelpers.ScalesAndMinsK4(w + 4);
            // The 8 scales (int16) in every 128-bit quarter: pair c's two scales are picked with one byte shuffle.
            var scales = Vector512.Create(scalesAndMins.GetLower()).AsByte();
            var wide = Avx512F.Add(Avx512F.Add(PairSums(w + 16, t, scales, 0), PairSums(w + 16, t, scales, 1)),
                Avx512F.Add(PairSums(w + 16, t, scales, 2), PairSums(w + 16, t, scales, 3)));
            var totals = Avx2.Add(wide.GetLower(), wide.GetUpper());
            Vector256<int> minPairs = Vector256.Create(scalesAndMins.GetUpper(), scalesAndMins.GetUpper()).AsInt32();
            short* sums = (short*)(t + PackedBlockSums);
            Vector256<int> mins = Avx2.Add(
                Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.Shuffle(minPairs, 0x00).AsInt16(), Avx.LoadVector256(sums)),
                    Avx2.MultiplyAddAdjacent(Avx2.Shuffle(minPairs, 0x55).AsInt16(), Avx.LoadVector256(sums + 16))),
                Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.Shuffle(minPairs, 0xAA).AsInt16(), Avx.LoadVector256(sums + 32)),
                    Avx2.MultiplyAddAdjacent(Avx2.Shuffle(minPairs, 0xFF).AsInt16(), Avx.LoadVector256(sums + 48))));
            // (a·d)·T − (a·dmin)·M, rounded step by step as Q4_K's AVX2 tile and row dot round it.
            var a = Avx.LoadVector256((float*)(t + PackedScales));
            var term = Avx.Subtract(Avx.Multiply(Avx.Multiply(a, Vector256.Create(Fp16.ToFloat(x->D))), Avx.ConvertToVector256Single(totals)),
                Avx.Multiply(Avx.Multiply(a, Vector256.Create(Fp16.ToFloat(x->DMin))), Avx.ConvertToVector256Single(mins)));
            chains[b & 7] = Avx.Add(chains[b & 7], term);
        }
        Q8Products.StoreChainSums(chains[0], chains[1], chains[2], chains[3], chains[4], chains[5], chains[6], chains[7], result, yStride);
    }

    /// <summary>
    /// Sub-blocks 2c (low half) and 2c + 1 (high half): Σ q·y per group pair in int16 (8 · 2 · 15 · 128 &lt; 32768),
    /// times the sub-block's scale, widened to int32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> PairSums(byte* nibbles, byte* t, Vector512<byte> scales, [ConstantExpected] int c)
    {
        var bits = Avx.LoadVector256(nibbles + 32 * c).AsUInt64();
        var values = Avx512F.And(Avx512F.ShiftRightLogicalVariable(Vector512.Create(bits, bits), Vector512.Create(0ul, 0, 0, 0, 4, 4, 4, 4)),
            Vector512.Create(0x0F0F0F0F0F0F0F0Ful)).AsInt32();
        byte* groups = t + 512 * c;
        var pairs = Avx512BW.Add(Avx512BW.Add(Group(values, 0, groups), Group(values, 1, groups)), Avx512BW.Add(Group(values, 2, groups), Group(values, 3, groups)));
        pairs = Avx512BW.Add(pairs, Avx512BW.Add(Avx512BW.Add(Group(values, 4, groups), Group(values, 5, groups)), Avx512BW.Add(Group(values, 6, groups), Group(values, 7, groups))));
        return Avx512BW.MultiplyAddAdjacent(pairs, Avx512BW.Shuffle(scales, ScaleMask(c)).AsInt16());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Group(Vector512<int> values, [ConstantExpected] int g, byte* groups)
        => Avx512BW.MultiplyAddAdjacent(Q8PairTiles.GroupBroadcast(values, Q8PairTiles.GroupIndex(g)).AsByte(), Avx512BW.LoadVector512((sbyte*)(groups + 64 * g)));

    /// <summary>Byte shuffle giving scale 2c (int16) in every word of the low half and scale 2c + 1 in the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> ScaleMask([ConstantExpected] int c)
    {
        byte l0 = (byte)(4 * c), l1 = (byte)(4 * c + 1), h0 = (byte)(4 * c + 2), h1 = (byte)(4 * c + 3);
        return Vector512.Create(Vector256.Create(Vector128.Create(l0, l1, l0, l1, l0, l1, l0, l1, l0, l1, l0, l1, l0, l1, l0, l1)),
            Vector256.Create(Vector128.Create(h0, h1, h0, h1, h0, h1, h0, h1, h0, h1, h0, h1, h0, h1, h0, h1)));
    }
}

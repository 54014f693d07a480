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
    // Q4_K's tile (its PackActivationTile writes it): 8 x 256 bytes of quants, then the scales and sub-block sums.
    private const int PackedQuants = 8 * 256;
    private static int PackedBlockBytes => (int)Q4_K.PackedTileBytes(BlockSize);

    /// <summary>
    /// 8 Q8_K activation rows (<paramref name="stride"/> bytes apart) into this tile layout: Q4_K's tile, then each
    /// block's 32-byte group runs moved from sub-block order (j, g) to pair order (j / 2, g, j mod 2).
    /// </summary>
    internal static void PackActivationTile(byte* rows, nint stride, int n, byte* tile)
    {
        Q4_K.PackActivationTile(rows, stride, n, tile);
        int blocks = n / BlockSize;
        var quants = stackalloc byte[PackedQuants]; // [8 sub-blocks x 8 groups x 32 bytes] of one block
        for (int b = 0; b < blocks; b++)
        {
            byte* t = tile + (long)b * PackedBlockBytes;
            Buffer.MemoryCopy(t, quants, PackedQuants, PackedQuants);
            for (int j = 0; j < 8; j++)
                for (int g = 0; g < 8; g++)
                    *(Vector256<byte>*)(t + 512 * (j >> 1) + 64 * g + 32 * (j & 1)) = *(Vector256<byte>*)(quants + 256 * j + 32 * g);
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
            Vector256<short> scalesAndMins = X86Simd.ScalesAndMinsK4(w + 4);
            // The 8 scales (int16) in every 128-bit quarter: pair c's two scales are picked with one byte shuffle.
            var scales = Vector512.Create(scalesAndMins.GetLower()).AsByte();
            var wide = Avx512F.Add(Avx512F.Add(PairSums(w + 16, t, scales, 0), PairSums(w + 16, t, scales, 1)),
                Avx512F.Add(PairSums(w + 16, t, scales, 2), PairSums(w + 16, t, scales, 3)));
            var totals = Avx2.Add(wide.GetLower(), wide.GetUpper());
            chains[b & 7] = Avx.Add(chains[b & 7], Q4_K.TileTerm(x, t, totals, scalesAndMins.GetUpper()));
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
        => Avx512BW.MultiplyAddAdjacent(GroupBroadcast(values, GroupIndex(g)).AsByte(), Avx512BW.LoadVector512((sbyte*)(groups + 64 * g)));

    /// <summary>
    /// Two sub-blocks' 32 bytes of values as dwords (each one's 8 groups of 4 values in order, the second's at
    /// dwords 8-15) to the group <paramref name="index"/> picks (<see cref="GroupIndex"/>) of each in every lane of its half.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> GroupBroadcast(Vector512<int> values, Vector512<int> index) => Avx512F.PermuteVar16x32(values, index).AsSByte();

    /// <summary>The index of <see cref="GroupBroadcast"/> for group g: g in the low half, 8 + g in the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> GroupIndex([ConstantExpected] int g) => Vector512.Create(g, g, g, g, g, g, g, g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g, 8 + g);

    /// <summary>Byte shuffle giving scale 2c (int16) in every word of the low half and scale 2c + 1 in the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> ScaleMask([ConstantExpected] int c)
    {
        byte l0 = (byte)(4 * c), l1 = (byte)(4 * c + 1), h0 = (byte)(4 * c + 2), h1 = (byte)(4 * c + 3);
        return Vector512.Create(Vector256.Create(Vector128.Create(l0, l1, l0, l1, l0, l1, l0, l1, l0, l1, l0, l1, l0, l1, l0, l1)),
            Vector256.Create(Vector128.Create(h0, h1, h0, h1, h0, h1, h0, h1, h0, h1, h0, h1, h0, h1, h0, h1)));
    }
}

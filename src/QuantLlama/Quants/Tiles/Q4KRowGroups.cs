using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// Q4_K weights repacked in groups of 8 rows (the idea of llama.cpp's q4_K_8x8, in a layout of our own) for prompts
/// on the AVX-512 path: 8 weight rows x 8 activation rows per call. One 512-bit load of nibbles holds 8 bytes of each
/// of the 8 rows, used in place against 8 bytes of one activation row broadcast from memory, so no weight shuffles
/// per activation row; the 6-bit scales and mins are unpacked at load. Per (weight row, activation row) the arithmetic
/// is the row dot's (<see cref="Q4_K.DotAvx2"/>): each block's exact integers T = Σ scale_j·(q·y)_j and
/// M = Σ min_j·bsum_j, its term (a·d)·T − (a·dmin)·M rounded step by step, the term of block b added to chain b mod 8
/// and the chains summed as <see cref="Q8Products.SumChains"/> sums them, so every result equals the row dot's bits.
/// </summary>
/// <remarks>
/// Weights (<see cref="Repack"/>), per 256-value block, 1216 bytes (19 cache lines): 64 bytes of scales (row r's 8
/// sub-block scales as bytes at 8r), 64 bytes of mins (the same), the 8 rows' d and dmin as f32 (32 bytes each),
/// then 16 segments of nibbles: segment 4c + q holds at 8r row r's values 8q..8q + 7 of sub-blocks 2c and 2c + 1 in 8
/// bytes, rearranged so that both nibbles give sub-block 2c in bytes 0-3 and sub-block 2c + 1 in bytes 4-7 (low
/// nibbles: values 8q..8q + 3, high: 8q + 4..8q + 7); one madd then scales both sub-blocks.
/// Activation tile (<see cref="PackActivationRows"/>), per block, 2432 bytes: for sub-block pair c and activation
/// row j, at 512c + 64j, for q = 0..3 and h = 0, 1 at 16q + 8h the values 8q + 4h..8q + 4h + 3 of sub-block 2c then
/// of sub-block 2c + 1 (4 bytes each); at 2048 + 16j
/// row j's 8 sub-block sums (int16, each the sum of two of Q8_K's 16-value sums); at 2176 + 64p the scales of rows
/// 2p and 2p + 1 as f32, each 8 times. Only whole blocks: n a multiple of 256.
/// </remarks>
internal static unsafe partial class Q4KRowGroups
{
    internal const int Rows = 8;
    private const int BlockSize = Q4_K.BlockSize;
    private const int BlockBytes = 1216, MinsAt = 64, DAt = 128, DMinAt = 160, NibblesAt = 192;
    private const int TileBlockBytes = 2432, TileSumsAt = 2048, TileScalesAt = 2176;
    private const int Q8KSumsAt = 4 + BlockSize; // BlockQ8K: D, Qs[256], BSums[16]

    /// <summary>How far ahead of the block it is reading the kernel asks for weight lines: 3 blocks.</summary>
    private const int PrefetchDistance = 3 * BlockBytes;

    /// <summary>True when rows of <paramref name="n"/> values can be repacked (whole blocks).</summary>
    internal static bool Fits(int n) => n > 0 && n % BlockSize == 0;

    /// <summary>Bytes of one repacked group of 8 rows of <paramref name="n"/> values.</summary>
    internal static long GroupBytes(int n) => (long)(n / BlockSize) * BlockBytes;

    /// <summary>Bytes of one activation tile of 8 rows of <paramref name="n"/> values (<see cref="PackActivationRows"/>).</summary>
    internal static long PackedTileBytes(int n) => (long)(n / BlockSize) * TileBlockBytes;

    /// <summary>8 Q4_K rows (<paramref name="rowBytes"/> apart) into one repacked group at <paramref name="group"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Repack(byte* rows, long rowBytes, int n, byte* group)
    {
        int blocks = n / BlockSize;
        var scalesAndMins = stackalloc byte[16];
        for (int r = 0; r < Rows; r++)
        {
            for (int b = 0; b < blocks; b++)
            {
                var x = (BlockQ4K*)(rows + r * rowBytes + (long)b * Q4_K.BlockBytes);
                byte* g = group + (long)b * BlockBytes;
                KQuantMath.UnpackScaleMinK4(x->Scales, (uint*)scalesAndMins);
                *(ulong*)(g + 8 * r) = *(ulong*)scalesAndMins;
                *(ulong*)(g + MinsAt + 8 * r) = *(ulong*)(scalesAndMins + 8);
                ((float*)(g + DAt))[r] = Fp16.ToFloat(x->D);
                ((float*)(g + DMinAt))[r] = Fp16.ToFloat(x->DMin);
                for (int s = 0; s < 16; s++)
                {
                    // Bytes 8s..8s+7 hold values 8q + k of sub-blocks 2c (low nibbles) and 2c + 1 (high), s = 4c + q:
                    // the low dword takes sub-block 2c's (k in its low nibbles, 4 + k in its high), the high dword
                    // sub-block 2c + 1's.
                    ulong bits = *(ulong*)(x->Qs + 8 * s);
                    uint first = (uint)bits, second = (uint)(bits >> 32);
                    uint low = (first & 0x0F0F0F0F) | (second & 0x0F0F0F0F) << 4;
                    uint high = (first >> 4 & 0x0F0F0F0F) | (second & 0xF0F0F0F0);
                    *(ulong*)(g + NibblesAt + 64 * s + 8 * r) = low | (ulong)high << 32;
                }
            }
        }
    }

    /// <summary>
    /// <paramref name="count"/> (1 to 8) Q8_K activation rows into the first rows of an 8-row tile; with an odd count
    /// the row after them gets zero sums and scales (the partner that <see cref="Dot{TRows}"/> computes beside the
    /// last row and drops).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackActivationRows(byte* rows, nint stride, int n, byte* tile, int count)
    {
        int blocks = n / BlockSize;
        if (count % 2 == 1 && count < Rows)
            for (int b = 0; b < blocks; b++)
            {
                byte* t = tile + (long)b * TileBlockBytes;
                new Span<byte>(t + TileSumsAt + 16 * count, 16).Clear();
                new Span<byte>(t + TileScalesAt + 64 * (count >> 1) + 32, 32).Clear();
            }
        for (int j = 0; j < count; j++)
        {
            for (int b = 0; b < blocks; b++)
            {
                byte* y = rows + j * stride + (long)b * Q8_K.BlockBytes;
                byte* quants = y + 4;
                short* bsums = (short*)(y + Q8KSumsAt);
                byte* t = tile + (long)b * TileBlockBytes;
                for (int c = 0; c < 4; c++)
                    for (int q = 0; q < 4; q++)
                        for (int h = 0; h < 2; h++)
                        {
                            // Values 8q + 4h.. of sub-block 2c, then of sub-block 2c + 1, as the weights' nibbles hold them.
                            byte* group = t + 512 * c + 64 * j + 16 * q + 8 * h;
                            *(uint*)group = *(uint*)(quants + 64 * c + 8 * q + 4 * h);
                            *(uint*)(group + 4) = *(uint*)(quants + 64 * c + 32 + 8 * q + 4 * h);
                        }
                for (int k = 0; k < 8; k++) ((short*)(t + TileSumsAt + 16 * j))[k] = (short)(bsums[2 * k] + bsums[2 * k + 1]);
                float a = *(float*)y;
                float* scales = (float*)(t + TileScalesAt + 64 * (j >> 1) + 32 * (j & 1));
                for (int k = 0; k < 8; k++) scales[k] = a;
            }
        }
    }

    /// <summary>
    /// One activation row against sub-blocks 2c and 2c + 1 of the 8 weight rows: each row's Σ q·y in the 4 int16 words
    /// of its 64-bit lane (words 0-1 sub-block 2c, 2-3 sub-block 2c + 1; 8 · 2 · 15 · 128 &lt; 32768), times the
    /// sub-blocks' scales, widened to 2 int32 per row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Step(Vector512<byte> lo0, Vector512<byte> lo1, Vector512<byte> lo2, Vector512<byte> lo3,
        Vector512<byte> hi0, Vector512<byte> hi1, Vector512<byte> hi2, Vector512<byte> hi3, Vector512<short> scales, byte* a)
    {
        var sum = ActivationRows.GroupSums(lo0, hi0, lo1, hi1, lo2, hi2, lo3, hi3, a);
        return Avx512BW.MultiplyAddAdjacent(sum, scales);
    }

    /// <summary>
    /// Activation rows 2p and 2p + 1's terms for one block, (a·d)·T − (a·dmin)·M lane by lane as
    /// <see cref="KQuantMath.ScaleMinTerm"/> rounds it: lanes 0-7 row 2p's against weight rows 0-7, lanes 8-15 row 2p + 1's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Term(Vector512<int> tEven, Vector512<int> tOdd, Vector512<short> mins03, Vector512<short> mins47,
        Vector512<float> d, Vector512<float> dmin, byte* a, [ConstantExpected] int p, Vector512<int> evens, Vector512<int> odds)
    {
        var mEven = BlockMins(mins03, mins47, a + TileSumsAt + 32 * p);
        var mOdd = BlockMins(mins03, mins47, a + TileSumsAt + 32 * p + 16);
        // Each weight row's two partial sums sit in dwords 2r and 2r + 1: add them, row 2p's then row 2p + 1's.
        var totals = Avx512F.Add(Avx512F.PermuteVar16x32x2(tEven, evens, tOdd), Avx512F.PermuteVar16x32x2(tEven, odds, tOdd));
        var mins = Avx512F.Add(Avx512F.PermuteVar16x32x2(mEven, evens, mOdd), Avx512F.PermuteVar16x32x2(mEven, odds, mOdd));
        var scales = Avx512F.LoadVector512((float*)(a + TileScalesAt + 64 * p));
        return Avx512F.Subtract(Avx512F.Multiply(Avx512F.Multiply(scales, d), Avx512F.ConvertToVector512Single(totals)),
            Avx512F.Multiply(Avx512F.Multiply(scales, dmin), Avx512F.ConvertToVector512Single(mins)));
    }

    /// <summary>One activation row's M = Σ min_j·bsum_j for the 8 weight rows, in two int32 parts per row (dwords 2r, 2r + 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> BlockMins(Vector512<short> mins03, Vector512<short> mins47, byte* sums)
        => Avx512F.Add(Avx512BW.MultiplyAddAdjacent(mins03, Vector512.Create(*(long*)sums).AsInt16()),
            Avx512BW.MultiplyAddAdjacent(mins47, Vector512.Create(*(long*)(sums + 8)).AsInt16()));

    /// <summary>
    /// Byte shuffle giving in each 64-bit lane the words (zero-extended bytes) k0..k3 of that lane's 8 bytes: with k0 =
    /// k1 = k2 = k3 = j, a row's sub-block j scale in all 4 words.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> WordMask(int k0, int k1, int k2, int k3)
    {
        const byte Zero = 0x80;
        var lane = Vector128.Create((byte)k0, Zero, (byte)k1, Zero, (byte)k2, Zero, (byte)k3, Zero,
            (byte)(8 + k0), Zero, (byte)(8 + k1), Zero, (byte)(8 + k2), Zero, (byte)(8 + k3), Zero);
        return Vector512.Create(Vector256.Create(lane, lane), Vector256.Create(lane, lane));
    }
}

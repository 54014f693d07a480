using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// The repacked Q4_K kernel for 1 to 8 activation rows (prompts' tiles, generation, a few conversations decoding
/// together), compiled once per row count with only those rows' accumulators, so each 512-bit load of weights and its
/// nibble decode serve every activation row and no padding rows are computed; bits equal the row dot's.
/// </summary>
internal static unsafe partial class Q4KRowGroups
{
    /// <summary>
    /// One repacked group against a tile of <paramref name="activationRows"/> (1 to 8) rows packed by
    /// <see cref="PackActivationRows"/>: the kernel compiled for that count.
    /// </summary>
    internal static void DotRows(byte* group, byte* tile, int n, float* y, nint yStride, int activationRows)
        => ActivationRows.Dot<Kernel>(group, tile, n, y, yStride, activationRows);

    /// <summary>This layout's kernel, for <see cref="ActivationRows.Dot{TKernel}"/>.</summary>
    private struct Kernel : IRowGroupKernel
    {
        public static void Dot<TRows>(byte* group, byte* tile, int n, float* y, nint yStride) where TRows : struct, IActivationRows
            => Q4KRowGroups.Dot<TRows>(group, tile, n, y, yStride);
    }

    /// <summary>
    /// One repacked group of 8 weight rows against <typeparamref name="TRows"/> activation rows: y[j·yStride + r]. The
    /// count is a type parameter so the JIT compiles one body per count with only its accumulators; an odd count's
    /// last row is computed beside its zero partner (<see cref="PackActivationRows"/>), whose lanes are dropped.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot<TRows>(byte* group, byte* tile, int n, float* y, nint yStride) where TRows : struct, IActivationRows
    {
        int m = TRows.Count;
        int blocks = n / BlockSize;
        var chains = stackalloc Vector512<float>[8 * 4]; // [block mod 8][activation row pair]: lanes 0-7 row 2p, 8-15 row 2p + 1
        for (int k = 0; k < 8 * 4; k++) chains[k] = default;
        var masks = stackalloc Vector512<byte>[4]; // sub-block 2c's scale in words 0-1 of a row's lane, 2c + 1's in 2-3
        for (int c = 0; c < 4; c++) masks[c] = WordMask(2 * c, 2 * c, 2 * c + 1, 2 * c + 1);
        var evens = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odds = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        var mask = Vector512.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++)
        {
            byte* w = group + (long)b * BlockBytes;
            byte* a = tile + (long)b * TileBlockBytes;
            // The block 3 ahead (19 lines, blocks are line-aligned), a few lines per sub-block pair; past the group's
            // end this asks for the next group's, which the caller reads next.
            byte* ahead = w + PrefetchDistance;
            var scaleBytes = Avx512F.LoadVector512(w);
            Vector512<int> t0 = default, t1 = default, t2 = default, t3 = default, t4 = default, t5 = default, t6 = default, t7 = default;
            for (int c = 0; c < 4; c++)
            {
                X86Simd.Prefetch(ahead, 5 * c); X86Simd.Prefetch(ahead, 5 * c + 1); X86Simd.Prefetch(ahead, 5 * c + 2);
                X86Simd.Prefetch(ahead, 5 * c + 3); X86Simd.Prefetch(ahead, 5 * c + 4);
                byte* nibbles = w + NibblesAt + 256 * c;
                var v0 = Avx512F.LoadVector512(nibbles);
                var v1 = Avx512F.LoadVector512(nibbles + 64);
                var v2 = Avx512F.LoadVector512(nibbles + 128);
                var v3 = Avx512F.LoadVector512(nibbles + 192);
                var lo0 = Avx512F.And(v0, mask);
                var lo1 = Avx512F.And(v1, mask);
                var lo2 = Avx512F.And(v2, mask);
                var lo3 = Avx512F.And(v3, mask);
                var hi0 = Avx512F.And(Avx512BW.ShiftRightLogical(v0.AsUInt16(), 4).AsByte(), mask);
                var hi1 = Avx512F.And(Avx512BW.ShiftRightLogical(v1.AsUInt16(), 4).AsByte(), mask);
                var hi2 = Avx512F.And(Avx512BW.ShiftRightLogical(v2.AsUInt16(), 4).AsByte(), mask);
                var hi3 = Avx512F.And(Avx512BW.ShiftRightLogical(v3.AsUInt16(), 4).AsByte(), mask);
                var scales = Avx512BW.Shuffle(scaleBytes, masks[c]).AsInt16();
                byte* s = a + 512 * c;
                t0 = Avx512F.Add(t0, Step(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, scales, s));
                if (m > 1) t1 = Avx512F.Add(t1, Step(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, scales, s + 64));
                if (m > 2) t2 = Avx512F.Add(t2, Step(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, scales, s + 128));
                if (m > 3) t3 = Avx512F.Add(t3, Step(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, scales, s + 192));
                if (m > 4) t4 = Avx512F.Add(t4, Step(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, scales, s + 256));
                if (m > 5) t5 = Avx512F.Add(t5, Step(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, scales, s + 320));
                if (m > 6) t6 = Avx512F.Add(t6, Step(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, scales, s + 384));
                if (m > 7) t7 = Avx512F.Add(t7, Step(lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3, scales, s + 448));
            }
            // Mins as int16: row r's mins 0-3 in the words of its 64-bit lane, then mins 4-7.
            var minBytes = Avx512F.LoadVector512(w + MinsAt);
            var mins03 = Avx512BW.Shuffle(minBytes, WordMask(0, 1, 2, 3)).AsInt16();
            var mins47 = Avx512BW.Shuffle(minBytes, WordMask(4, 5, 6, 7)).AsInt16();
            var d = Vector512.Create(Avx.LoadVector256((float*)(w + DAt)));
            var dmin = Vector512.Create(Avx.LoadVector256((float*)(w + DMinAt)));
            Vector512<float>* blockChains = chains + 4 * (b & 7);
            // An odd count's last row pairs with its zero partner: the partner's integers are the row's own (any
            // integers do), its scale 0.
            blockChains[0] = Avx512F.Add(blockChains[0], Term(t0, m > 1 ? t1 : t0, mins03, mins47, d, dmin, a, 0, evens, odds));
            if (m > 2) blockChains[1] = Avx512F.Add(blockChains[1], Term(t2, m > 3 ? t3 : t2, mins03, mins47, d, dmin, a, 1, evens, odds));
            if (m > 4) blockChains[2] = Avx512F.Add(blockChains[2], Term(t4, m > 5 ? t5 : t4, mins03, mins47, d, dmin, a, 2, evens, odds));
            if (m > 6) blockChains[3] = Avx512F.Add(blockChains[3], Term(t6, m > 7 ? t7 : t6, mins03, mins47, d, dmin, a, 3, evens, odds));
        }
        for (int p = 0; 2 * p < m; p++)
        {
            var c = chains + p;
            var total = Avx512F.Add(Avx512F.Add(Avx512F.Add(c[0], c[16]), Avx512F.Add(c[8], c[24])),
                Avx512F.Add(Avx512F.Add(c[4], c[20]), Avx512F.Add(c[12], c[28])));
            total.GetLower().Store(y + 2 * p * yStride);
            if (2 * p + 1 < m) total.GetUpper().Store(y + (2 * p + 1) * yStride);
        }
    }
}

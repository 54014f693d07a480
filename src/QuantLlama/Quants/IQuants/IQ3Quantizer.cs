using System.Numerics;
using QuantLlama.Quants.KQuants;

using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// ggml's IQ3_XXS and IQ3_S quantizers (quantize_row_iq3_xxs_impl, quantize_row_iq3_s_impl), operation for operation.
/// IQ3_XXS: per block of 32 the signs are taken
/// out (an odd count of negatives flips the least important value, since a block stores only 7 sign bits per 8), 31
/// scales are tried, each snapping groups of 4 levels to the codebook (or its best neighbour), and the scale with the
/// best weighted fit is kept; the blocks' scales are stored as 4-bit multiples of the largest.
/// </summary>
internal static unsafe class IQ3Quantizer
{
    private const int MaxLevel = 8;
    private const float GroupMaxEps = 1e-8f;

    /// <param name="importance">Empty, or the row's column importance [src.Length] from an importance matrix.</param>
    public static void QuantizeXxs(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        const int QK = GgmlTypeInfo.QK_K, BlockBytes = IQ3_XXS.BlockBytes;
        int nb = Blocks.Check(src.Length, QK, dst.Length, BlockBytes);
        Blocks.CheckImportance(importance.Length, src.Length);
        var search = IQ3GridSearch.ForXxs;
        float* scales = stackalloc float[8]; // [block] its fitted scale
        var buffers = new BlockBuffers();
        var b = &buffers;
        byte* q3 = stackalloc byte[BlockBytes - 2]; // [64 entry numbers | 8 x uint32 signs and scale]
        uint* scalesAndSigns = (uint*)(q3 + 64);
        fixed (float* x0 = src)
        fixed (float* qw0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int ibl = 0; ibl < nb; ibl++)
            {
                byte* y = y0 + ibl * BlockBytes;
                *(ushort*)y = 0;
                new Span<byte>(q3, BlockBytes - 2).Clear();
                float maxScale = 0;
                float* xbl = x0 + QK * ibl;
                float sigma2 = Sigma2(xbl);

                for (int ib = 0; ib < QK / 32; ib++)
                {
                    float* xb = xbl + 32 * ib;
                    TakeOutSigns(b, xb, qw0 != null ? qw0 + QK * ibl + 32 * ib : null, sigma2);
                    MakeSignCountsEven(b, xb);
                    if (LargestValue(b) < GroupMaxEps)
                    {
                        scales[ib] = 0;
                        continue;
                    }
                    float scale = SearchBlock(search, b, 32, 15, true, false);
                    if (scale < 0)
                    {
                        scale = -scale;
                        for (int k = 0; k < 4; k++) b->Signs[k] = (byte)(~b->Signs[k] & 127);
                    }
                    for (int k = 0; k < 8; k++) q3[8 * ib + k] = (byte)EntryOf(search, b->Levels + 4 * k);
                    scalesAndSigns[ib] = (uint)(b->Signs[0] | (b->Signs[1] << 7) | (b->Signs[2] << 14) | (b->Signs[3] << 21));
                    scales[ib] = scale;
                    maxScale = Math.Max(maxScale, scale);
                }

                if (maxScale == 0)
                {
                    new Span<byte>(y + 2, BlockBytes - 2).Clear();
                    continue;
                }
                float d = maxScale / 31;
                *(ushort*)y = Fp16.FromFloat(d * 1.0125f); // ggml's fudge factor
                float invD = 1 / d;
                for (int ib = 0; ib < QK / 32; ib++)
                {
                    int l = Math.Clamp(KQuantMath.NearestInt(0.5f * (invD * scales[ib] - 1)), 0, 15);
                    scalesAndSigns[ib] |= (uint)l << 28;
                }
                new Span<byte>(q3, BlockBytes - 2).CopyTo(new Span<byte>(y + 2, BlockBytes - 2));
            }
        }
    }

    /// <summary>
    /// ggml's quantize_iq3_s: as IQ3_XXS but with a sign bit per value (no parity fix), 9-bit codebook entries,
    /// 19 trial scales, every group snapped again at the chosen scale, and a 1.033 fudge factor. Where a block is all
    /// zero ggml skips it without moving its write position for entries and signs, so the next block's land there;
    /// that is kept, for the same bytes.
    /// </summary>
    /// <param name="importance">Empty, or the row's column importance [src.Length] from an importance matrix.</param>
    public static void QuantizeS(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        const int QK = GgmlTypeInfo.QK_K, BlockBytes = IQ3_S.BlockBytes, Entries = 2, HighBits = Entries + 64, SignBytes = HighBits + 8, ScaleBytes = SignBytes + 32;
        int nb = Blocks.Check(src.Length, QK, dst.Length, BlockBytes);
        Blocks.CheckImportance(importance.Length, src.Length);
        var search = IQ3GridSearch.ForS;
        float* scales = stackalloc float[8]; // [block] its fitted scale
        var buffers = new BlockBuffers();
        var b = &buffers;
        fixed (float* x0 = src)
        fixed (float* qw0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int ibl = 0; ibl < nb; ibl++)
            {
                byte* y = y0 + ibl * BlockBytes;
                new Span<byte>(y, BlockBytes).Clear();
                byte* qs = y + Entries, signs = y + SignBytes;
                float maxScale = 0;
                float* xbl = x0 + QK * ibl;
                float sigma2 = Sigma2(xbl);
                for (int ib = 0; ib < QK / 32; ib++)
                {
                    float* xb = xbl + 32 * ib;
                    TakeOutSigns(b, xb, qw0 != null ? qw0 + QK * ibl + 32 * ib : null, sigma2);
                    if (LargestValue(b) == 0)
                    {
                        scales[ib] = 0;
                        continue;
                    }
                    float scale = SearchBlock(search, b, 32, 9, false, true);
                    if (scale < 0)
                    {
                        scale = -scale;
                        for (int k = 0; k < 4; k++) b->Signs[k] = (byte)~b->Signs[k];
                    }
                    for (int k = 0; k < 8; k++)
                    {
                        int entry = EntryOf(search, b->Levels + 4 * k);
                        qs[k] = (byte)entry;
                        y[HighBits + (ib * 8 + k) / 8] |= (byte)((entry >> 8) << ((ib * 8 + k) % 8));
                    }
                    qs += 8;
                    for (int k = 0; k < 4; k++) signs[k] = b->Signs[k];
                    signs += 4;
                    scales[ib] = scale;
                    maxScale = Math.Max(maxScale, scale);
                }
                if (maxScale == 0) continue;
                float d = maxScale / 31;
                *(ushort*)y = Fp16.FromFloat(d * 1.033f); // ggml's fudge factor
                float invD = 1 / d;
                for (int ib = 0; ib < QK / 32; ib += 2)
                {
                    int l1 = Math.Clamp(KQuantMath.NearestInt(0.5f * (invD * scales[ib] - 1)), 0, 15);
                    int l2 = Math.Clamp(KQuantMath.NearestInt(0.5f * (invD * scales[ib + 1] - 1)), 0, 15);
                    y[ScaleBytes + ib / 2] = (byte)(l1 | (l2 << 4));
                }
            }
        }
    }

    /// <summary>
    /// The scale search both IQ3 quantizers run on a block of <paramref name="n"/> magnitudes (<paramref name="b"/>'s
    /// values and weights): 2·steps + 1 trial scales around max/15, each snapping every group of 4 to the codebook or
    /// its best neighbour, the best weighted fit kept in its levels; groups left off the codebook (all groups when <paramref name="redoAll"/>)
    /// are then snapped again at the chosen scale and the scale refitted.
    /// </summary>
    private static float SearchBlock(IQ3GridSearch search, BlockBuffers* b, int n, int steps, bool startOnGrid, bool redoAll)
    {
        float* xval = b->Values, weight = b->Weight, rootWeight = b->RootWeight;
        sbyte* levels = b->Levels, trial = b->Trial, scratch = b->Scratch;
        bool* onGrid = b->OnGrid, trialOnGrid = b->TrialOnGrid;
        float max = xval[0];
        for (int i = 1; i < n; i++) max = Math.Max(max, xval[i]);
        float best = 0;
        float scale = max / (2 * MaxLevel - 1);
        for (int k = 0; k < n / 4; k++) onGrid[k] = startOnGrid;
        for (int step = -steps; step <= steps; step++)
        {
            float id = (2 * MaxLevel - 1 + step * 0.2f) / max;
            float thisScale = 1 / id;
            for (int k = 0; k < n / 4; k++)
            {
                int point = PointOf(xval + 4 * k, id, trial + 4 * k);
                trialOnGrid[k] = true;
                if (search.Map[point] < 0)
                {
                    trialOnGrid[k] = false;
                    search.BestNeighbour(-search.Map[point] - 1, xval + 4 * k, rootWeight + 4 * k, thisScale, trial + 4 * k);
                }
            }
            var (sumqx, sumq2) = Fit(xval, weight, trial, n);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
            {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                for (int i = 0; i < n; i++) levels[i] = trial[i];
                for (int k = 0; k < n / 4; k++) onGrid[k] = trialOnGrid[k];
            }
        }
        int offGrid = 0;
        for (int k = 0; k < n / 4; k++) if (!onGrid[k]) offGrid++;
        if (offGrid > 0 && scale > 0)
        {
            float id = 1 / scale;
            for (int k = 0; k < n / 4; k++)
            {
                if (onGrid[k] && !redoAll) continue;
                int point = PointOf(xval + 4 * k, id, scratch);
                int entry = search.Map[point];
                if (entry < 0) entry = search.BestNeighbour(-entry - 1, xval + 4 * k, rootWeight + 4 * k, scale, levels + 4 * k);
                for (int i = 0; i < 4; i++) levels[4 * k + i] = (sbyte)search.Level(entry, i);
            }
            var (sumqx, sumq2) = Fit(xval, weight, levels, n);
            if (sumq2 > 0) scale = sumqx / sumq2;
        }
        return scale;
    }

    /// <summary>The working buffers of one block of 32, which both quantizers keep on their stack.</summary>
    private struct BlockBuffers
    {
        /// <summary>Each value's error weight and its square root.</summary>
        public fixed float Weight[32], RootWeight[32];

        /// <summary>The block's magnitudes, its signs taken out.</summary>
        public fixed float Values[32];

        /// <summary>The chosen levels 0..7 of <see cref="SearchBlock"/>, and a trial scale's.</summary>
        public fixed sbyte Levels[32], Trial[32];

        /// <summary>Per group of 4: whether the chosen levels, and a trial's, are on the codebook.</summary>
        public fixed bool OnGrid[8], TrialOnGrid[8];

        /// <summary>Per group of 8: its sign bits.</summary>
        public fixed byte Signs[4];

        /// <summary>One group's levels while a point is looked up.</summary>
        public fixed sbyte Scratch[4];
    }

    /// <summary>
    /// A block's error weights (<see cref="Weights"/>), its magnitudes and, per group of 8, its sign bits (bit i for
    /// a negative value i) into <paramref name="b"/>; its levels cleared.
    /// </summary>
    private static void TakeOutSigns(BlockBuffers* b, float* xb, float* importance, float sigma2)
    {
        Weights(xb, importance, sigma2, b->Weight, b->RootWeight, 32);
        for (int k = 0; k < 4; k++)
        {
            int s = 0;
            for (int i = 0; i < 8; i++)
            {
                if (xb[8 * k + i] >= 0) b->Values[8 * k + i] = xb[8 * k + i];
                else
                {
                    b->Values[8 * k + i] = -xb[8 * k + i];
                    s |= 1 << i;
                }
            }
            b->Signs[k] = (byte)s;
        }
        new Span<sbyte>(b->Levels, 32).Clear();
    }

    /// <summary>
    /// IQ3_XXS's 7 sign bits per group of 8: where a group has an odd count of negatives, the value of least
    /// weighted square (the first of equals) changes sign, so that the 8th sign is their parity.
    /// </summary>
    private static void MakeSignCountsEven(BlockBuffers* b, float* xb)
    {
        for (int k = 0; k < 4; k++)
        {
            if (BitOperations.PopCount(b->Signs[k]) % 2 != 0)
            {
                int imin = 0;
                float min = b->Weight[8 * k] * xb[8 * k] * xb[8 * k];
                for (int i = 1; i < 8; i++)
                {
                    float ax = b->Weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                    if (ax < min) { min = ax; imin = i; }
                }
                b->Values[8 * k + imin] = -b->Values[8 * k + imin];
                b->Signs[k] ^= (byte)(1 << imin);
            }
            b->Signs[k] &= 127;
        }
    }

    /// <summary>The largest of a block's values.</summary>
    private static float LargestValue(BlockBuffers* b)
    {
        float max = b->Values[0];
        for (int i = 1; i < 32; i++) max = Math.Max(max, b->Values[i]);
        return max;
    }

    /// <summary>The codebook entry of a group of 4 levels that is on the codebook (after <see cref="SearchBlock"/>).</summary>
    private static int EntryOf(IQ3GridSearch search, sbyte* levels)
    {
        int point = 0;
        for (int i = 0; i < 4; i++) point |= levels[i] << (3 * i);
        int entry = search.Map[point];
        if (entry < 0) throw new InvalidOperationException($"IQ3 quantizer: point {point} is not on the codebook");
        return entry;
    }

    /// <summary>Error weights for a block: from the importance (times sqrt(σ² + x²)) or x², and their square roots.</summary>
    internal static void Weights(float* xb, float* importance, float sigma2, float* weight, float* rootWeight, int n)
    {
        if (importance != null)
            for (int i = 0; i < n; i++) weight[i] = importance[i] * MathF.Sqrt(sigma2 + xb[i] * xb[i]);
        else
            for (int i = 0; i < n; i++) weight[i] = xb[i] * xb[i];
        for (int i = 0; i < n; i++) rootWeight[i] = MathF.Sqrt(weight[i]);
    }

    /// <summary>Twice the mean square of a super-block of 256.</summary>
    internal static float Sigma2(float* xbl)
    {
        float sumx2 = 0;
        for (int i = 0; i < GgmlTypeInfo.QK_K; i++) sumx2 += xbl[i] * xbl[i];
        return 2 * sumx2 / GgmlTypeInfo.QK_K;
    }

    /// <summary>Four values at inverse scale id to levels 0..7 (written to <paramref name="levels"/>) and their point number.</summary>
    private static int PointOf(float* values, float id, sbyte* levels)
    {
        int point = 0;
        for (int i = 0; i < 4; i++)
        {
            int l = Math.Clamp(KQuantMath.NearestInt(0.5f * (id * values[i] - 1)), 0, MaxLevel - 1);
            levels[i] = (sbyte)l;
            point |= l << (3 * i);
        }
        return point;
    }

    /// <summary>Σ w·x·q and Σ w·q² over a block of n with q = 2l + 1.</summary>
    internal static (float SumQx, float SumQ2) Fit(float* xval, float* weight, sbyte* levels, int n)
    {
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < n; i++)
        {
            float w = weight[i];
            float q = 2 * levels[i] + 1;
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        return (sumqx, sumq2);
    }
}

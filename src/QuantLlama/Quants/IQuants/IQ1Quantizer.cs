using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// ggml's IQ1_S and IQ1_M quantizers (quantize_row_iq1_s_impl, quantize_row_iq1_m_impl), operation for operation.
/// Each block's values take one of three levels (-1, 0, 1) shifted by ±<see cref="OneBitQuants.Delta"/>: the values
/// are sorted, every pair of boundaries that splits them into the three levels is scored by its weighted least-squares
/// fit (for both delta signs), the best kept; each group of 8 levels is then snapped to the codebook (or its nearest
/// neighbour at the fitted scale) and the scale refitted where a group moved.
/// </summary>
internal static unsafe class IQ1Quantizer
{
    private const int QK = GgmlTypeInfo.QK_K;
    private const float Delta = OneBitQuants.Delta;

    /// <summary>The three levels with the delta added (x_p) and subtracted (x_m).</summary>
    private static readonly float[] PlusDelta = [-1 + Delta, Delta, 1 + Delta], MinusDelta = [-1 - Delta, -Delta, 1 - Delta];

    /// <summary>
    /// ggml's quantize_iq1_s: blocks of 32 with one delta sign and a 3-bit scale each, the scales as multiples of the
    /// largest / 15 and a 1.125 fudge factor. ggml asserts on a missing importance; so does this (an exception).
    /// </summary>
    /// <param name="importance">The row's column importance [src.Length] from an importance matrix.</param>
    public static void QuantizeS(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        const int BlockSize = 32, BlockBytes = IQ1_S.BlockBytes, Indices = 2, High = Indices + QK / 8;
        int nb = Blocks.Check(src.Length, QK, dst.Length, BlockBytes);
        if (importance.IsEmpty) throw new ArgumentException("IQ1_S is quantized with an importance matrix only", nameof(importance));
        Blocks.CheckImportance(importance.Length, src.Length);
        var search = IQ2GridSearch.ForIQ1;
        float* scales = stackalloc float[QK / BlockSize];
        int* shifts = stackalloc int[QK / BlockSize];
        float* weight = stackalloc float[BlockSize];
        float* sumx = stackalloc float[BlockSize + 1];
        float* sumw = stackalloc float[BlockSize + 1];
        float* sorted = stackalloc float[BlockSize];
        int* order = stackalloc int[BlockSize];
        sbyte* levels = stackalloc sbyte[BlockSize];
        int* index = stackalloc int[BlockSize / 8];
        fixed (float* xp = PlusDelta, xm = MinusDelta)
        fixed (float* x0 = src)
        fixed (float* qw0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int ibl = 0; ibl < nb; ibl++)
            {
                byte* y = y0 + ibl * BlockBytes;
                new Span<byte>(y, BlockBytes).Clear();
                ushort* qh = (ushort*)(y + High);
                float maxScale = 0;
                float* xbl = x0 + QK * ibl;
                float sigma2 = IQ3Quantizer.Sigma2(xbl);
                for (int ib = 0; ib < QK / BlockSize; ib++)
                {
                    float* xb = xbl + BlockSize * ib;
                    float* qw = qw0 + QK * ibl + BlockSize * ib;
                    for (int i = 0; i < BlockSize; i++) weight[i] = qw[i] * MathF.Sqrt(sigma2 + xb[i] * xb[i]);
                    scales[ib] = 0;
                    shifts[ib] = 1;
                    if (MaxAbs(xb, BlockSize) < 1e-12f) continue; // GROUP_MAX_EPS_IQ1_S

                    SortStable(xb, sorted, order, BlockSize);
                    sumx[0] = sumw[0] = 0;
                    for (int j = 0; j < BlockSize; j++)
                    {
                        int i = order[j];
                        sumx[j + 1] = sumx[j] + weight[i] * xb[i];
                        sumw[j + 1] = sumw[j] + weight[i];
                    }
                    float best = -float.MaxValue, scale = 0;
                    int best1 = -1, best2 = -1, bestShift = 0;
                    for (int i1 = 0; i1 <= BlockSize; i1++)
                    {
                        for (int i2 = i1; i2 <= BlockSize; i2++)
                        {
                            for (int shift = 1; shift >= -1; shift -= 2)
                            {
                                float* xx = shift == 1 ? xp : xm;
                                float sumqx = (sumx[i1] - sumx[0]) * xx[0] + (sumx[i2] - sumx[i1]) * xx[1] + (sumx[BlockSize] - sumx[i2]) * xx[2];
                                float sumq2 = (sumw[i1] - sumw[0]) * xx[0] * xx[0] + (sumw[i2] - sumw[i1]) * xx[1] * xx[1] + (sumw[BlockSize] - sumw[i2]) * xx[2] * xx[2];
                                if (Improves(sumqx, sumq2, ref best, ref scale)) (best1, best2, bestShift) = (i1, i2, shift);
                            }
                        }
                    }
                    if (best1 < 0) continue;
                    if (SetLevels(order, levels, best1, best2, BlockSize, ref scale)) bestShift = -bestShift;
                    float* shifted = bestShift == 1 ? xp : xm;
                    bool allOnGrid = true;
                    for (int k = 0; k < BlockSize / 8; k++)
                    {
                        index[k] = Snap(search, xb + 8 * k, weight + 8 * k, scale, shifted, levels + 8 * k, ref allOnGrid);
                    }
                    if (!allOnGrid)
                    {
                        float sumqx = 0, sumq2 = 0;
                        for (int k = 0; k < BlockSize / 8; k++) Fit(search, index[k], xb + 8 * k, weight + 8 * k, shifted, 1, ref sumqx, ref sumq2);
                        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
                    }
                    int h = 0;
                    for (int k = 0; k < BlockSize / 8; k++)
                    {
                        y[Indices + (BlockSize / 8) * ib + k] = (byte)index[k];
                        h |= (index[k] >> 8) << (3 * k);
                    }
                    qh[ib] = (ushort)h;
                    scales[ib] = scale;
                    shifts[ib] = bestShift;
                    maxScale = Math.Max(maxScale, scale);
                }
                if (maxScale == 0) continue;
                float d = maxScale / 15;
                *(ushort*)y = Fp16.FromFloat(d * 1.125f); // ggml's fudge factor
                float id = 1 / d;
                for (int ib = 0; ib < QK / BlockSize; ib++)
                {
                    int l = Math.Clamp(KQuantMath.NearestInt(0.5f * (id * scales[ib] - 1)), 0, 7);
                    if (shifts[ib] == -1) l |= 8;
                    qh[ib] |= (ushort)(l << 12);
                }
            }
        }
    }

    /// <summary>
    /// ggml's quantize_iq1_m: blocks of 16, each half (8 values) with its own delta sign, 3-bit scales, and the
    /// super-block scale refitted over the final levels (1.1125 fudge factor). Without an importance matrix the
    /// weights are x², as ggml's.
    /// </summary>
    /// <param name="importance">Empty, or the row's column importance [src.Length] from an importance matrix.</param>
    public static void QuantizeM(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        const int BlockSize = 16, BlockBytes = IQ1_M.BlockBytes, High = QK / 8, Scales = High + QK / 16;
        int nb = Blocks.Check(src.Length, QK, dst.Length, BlockBytes);
        Blocks.CheckImportance(importance.Length, src.Length);
        var search = IQ2GridSearch.ForIQ1;
        float* scales = stackalloc float[QK / BlockSize];
        int* shifts = stackalloc int[QK / BlockSize];
        float* weight = stackalloc float[BlockSize];
        float* sorted = stackalloc float[BlockSize];
        int* order = stackalloc int[BlockSize];
        sbyte* levels = stackalloc sbyte[BlockSize];
        int* index = stackalloc int[BlockSize / 8];
        float* sumqx = stackalloc float[4];
        float* sumq2 = stackalloc float[4];
        fixed (float* xp = PlusDelta, xm = MinusDelta)
        fixed (float* x0 = src)
        fixed (float* qw0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int ibl = 0; ibl < nb; ibl++)
            {
                byte* y = y0 + ibl * BlockBytes;
                new Span<byte>(y, BlockBytes).Clear();
                byte* qh = y + High;
                ushort* sc = (ushort*)(y + Scales);
                float maxScale = 0;
                float* xbl = x0 + QK * ibl;
                float sigma2 = IQ3Quantizer.Sigma2(xbl);
                for (int ib = 0; ib < QK / BlockSize; ib++)
                {
                    float* xb = xbl + BlockSize * ib;
                    MWeights(xb, qw0 != null ? qw0 + QK * ibl + BlockSize * ib : null, sigma2, weight);
                    scales[ib] = 0;
                    shifts[ib] = 0;
                    if (MaxAbs(xb, BlockSize) < 1e-7f) continue; // GROUP_MAX_EPS_IQ1_M

                    SortStable(xb, sorted, order, BlockSize);
                    float best = -float.MaxValue, scale = 0;
                    int best1 = -1, best2 = -1, bestK = -1;
                    // k: the two halves' delta signs, 0: +,+  1: +,-  2: -,+  3: -,-
                    for (int i1 = 0; i1 <= BlockSize; i1++)
                    {
                        for (int i2 = i1; i2 <= BlockSize; i2++)
                        {
                            for (int k = 0; k < 4; k++) sumqx[k] = sumq2[k] = 0;
                            for (int j = 0; j < BlockSize; j++)
                            {
                                int i = order[j];
                                int level = j < i1 ? 0 : j < i2 ? 1 : 2;
                                float wp = weight[i] * xp[level], wm = weight[i] * xm[level];
                                float qxp = wp * xb[i], qxm = wm * xb[i], q2p = wp * xp[level], q2m = wm * xm[level];
                                bool first = i < BlockSize / 2;
                                sumqx[0] += qxp; sumq2[0] += q2p;
                                sumqx[3] += qxm; sumq2[3] += q2m;
                                sumqx[1] += first ? qxp : qxm; sumq2[1] += first ? q2p : q2m;
                                sumqx[2] += first ? qxm : qxp; sumq2[2] += first ? q2m : q2p;
                            }
                            for (int k = 0; k < 4; k++)
                                if (Improves(sumqx[k], sumq2[k], ref best, ref scale)) (best1, best2, bestK) = (i1, i2, k);
                        }
                    }
                    if (best1 < 0) continue;
                    if (SetLevels(order, levels, best1, best2, BlockSize, ref scale)) bestK = 3 - bestK; // both signs swap
                    bool allOnGrid = true;
                    for (int k = 0; k < BlockSize / 8; k++)
                        index[k] = Snap(search, xb + 8 * k, weight + 8 * k, scale, HalfLevels(bestK, k, xp, xm), levels + 8 * k, ref allOnGrid);
                    if (!allOnGrid)
                    {
                        float sx = 0, s2 = 0;
                        for (int k = 0; k < BlockSize / 8; k++) Fit(search, index[k], xb + 8 * k, weight + 8 * k, HalfLevels(bestK, k, xp, xm), 1, ref sx, ref s2);
                        if (sx > 0 && s2 > 0) scale = sx / s2;
                    }
                    y[2 * ib] = (byte)index[0];
                    y[2 * ib + 1] = (byte)index[1];
                    qh[ib] = (byte)((index[0] >> 8) | ((index[1] >> 8) << 4));
                    scales[ib] = scale;
                    shifts[ib] = bestK;
                    maxScale = Math.Max(maxScale, scale);
                }
                if (maxScale == 0) continue;

                float d = maxScale / 15;
                float id = 1 / d;
                float sumqxF = 0, sumq2F = 0;
                for (int ib = 0; ib < QK / BlockSize; ib++)
                {
                    int l = Math.Clamp(KQuantMath.NearestInt(0.5f * (id * scales[ib] - 1)), 0, 7);
                    sc[ib / 4] |= (ushort)(l << (3 * (ib % 4)));
                    // The halves' delta signs: bit 3 of each nibble (2: the first half's, 1: the second's).
                    qh[ib] |= (byte)(((shifts[ib] & 2) != 0 ? 0x08 : 0) | ((shifts[ib] & 1) != 0 ? 0x80 : 0));
                    float* xb = xbl + BlockSize * ib;
                    MWeights(xb, qw0 != null ? qw0 + QK * ibl + BlockSize * ib : null, sigma2, weight);
                    for (int k = 0; k < BlockSize / 8; k++)
                    {
                        int entry = y[2 * ib + k] | (qh[ib] >> (4 * k) & 7) << 8;
                        Fit(search, entry, xb + 8 * k, weight + 8 * k, HalfLevels(shifts[ib], k, xp, xm), 2 * l + 1, ref sumqxF, ref sumq2F);
                    }
                }
                if (sumq2F > 0) d = sumqxF / sumq2F;
                ushort bits = Fp16.FromFloat(d * 1.1125f); // ggml's fudge factor
                sc[0] |= (ushort)((bits & 0x000f) << 12);
                sc[1] |= (ushort)((bits & 0x00f0) << 8);
                sc[2] |= (ushort)((bits & 0x0f00) << 4);
                sc[3] |= (ushort)(bits & 0xf000);
            }
        }
    }

    /// <summary>IQ1_M's level values for half k of a block with delta signs <paramref name="shifts"/> (0..3).</summary>
    private static float* HalfLevels(int shifts, int k, float* xp, float* xm)
        => k == 0 ? (shifts < 2 ? xp : xm) : (shifts % 2 == 0 ? xp : xm);

    /// <summary>IQ1_M's error weights: from the importance (times sqrt(σ² + x²)) or x².</summary>
    private static void MWeights(float* xb, float* importance, float sigma2, float* weight)
    {
        for (int i = 0; i < 16; i++) weight[i] = importance != null ? importance[i] * MathF.Sqrt(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
    }

    private static float MaxAbs(float* xb, int n)
    {
        float max = MathF.Abs(xb[0]);
        for (int i = 1; i < n; i++) max = Math.Max(max, MathF.Abs(xb[i]));
        return max;
    }

    /// <summary>
    /// The block's positions in ascending order of value, equal values in their original order: what glibc's qsort
    /// (a merge sort) gives ggml's iq1_sort_helper.
    /// </summary>
    private static void SortStable(float* xb, float* sorted, int* order, int n)
    {
        for (int j = 0; j < n; j++)
        {
            float v = xb[j];
            int at = j;
            while (at > 0 && sorted[at - 1] > v)
            {
                sorted[at] = sorted[at - 1];
                order[at] = order[at - 1];
                at--;
            }
            sorted[at] = v;
            order[at] = j;
        }
    }

    /// <summary>A split's least-squares fit, kept (scale and score) when it beats the best so far.</summary>
    private static bool Improves(float sumqx, float sumq2, ref float best, ref float scale)
    {
        if (!(sumq2 > 0 && sumqx * sumqx > best * sumq2)) return false;
        scale = sumqx / sumq2;
        best = scale * sumqx;
        return true;
    }

    /// <summary>
    /// Levels from the chosen split: the i1 smallest values 0, the next up to i2 1, the rest 2. A negative scale is
    /// made positive by mirroring the levels (true: the delta signs then swap too).
    /// </summary>
    private static bool SetLevels(int* order, sbyte* levels, int i1, int i2, int n, ref float scale)
    {
        for (int j = 0; j < n; j++) levels[order[j]] = (sbyte)(j < i1 ? 0 : j < i2 ? 1 : 2);
        if (scale >= 0) return false;
        for (int j = 0; j < n; j++) levels[j] = (sbyte)(2 - levels[j]);
        scale = -scale;
        return true;
    }

    /// <summary>The codebook entry of a group of 8 levels, or (off the codebook) its best neighbour at <paramref name="scale"/>.</summary>
    private static int Snap(IQ2GridSearch search, float* xb, float* weight, float scale, float* levelValues, sbyte* levels, ref bool allOnGrid)
    {
        int u = 0;
        for (int j = 0; j < 8; j++) u |= levels[j] << (2 * j);
        int entry = search.Map[u];
        if (entry >= 0) return entry;
        allOnGrid = false;
        return BestNeighbour(search, -entry - 1, xb, weight, scale, levelValues);
    }

    /// <summary>
    /// iq1_find_best_neighbour2: among the neighbours listed at <paramref name="offset"/>, the entry whose levels at
    /// <paramref name="scale"/> fit the 8 values best by weighted squared error.
    /// </summary>
    private static int BestNeighbour(IQ2GridSearch search, int offset, float* xval, float* weight, float scale, float* levelValues)
    {
        int count = search.Neighbours[offset];
        float best = float.MaxValue;
        int bestEntry = -1;
        for (int j = 1; j <= count; j++)
        {
            int entry = search.Neighbours[offset + j];
            ulong grid = search.Grid[entry];
            float d2 = 0;
            for (int i = 0; i < 8; i++)
            {
                float q = levelValues[((int)(grid >> (8 * i)) & 0xFF) / 2];
                float diff = scale * q - xval[i];
                d2 += weight[i] * diff * diff;
            }
            if (d2 < best)
            {
                best = d2;
                bestEntry = entry;
            }
        }
        // ggml then searches the whole codebook (reading past the group) and asserts; no finite fit gets here.
        if (bestEntry < 0) throw new InvalidOperationException("IQ1 quantizer: no neighbour fits the group (non-finite values or importance?)");
        return bestEntry;
    }

    /// <summary>Adds Σ w·q·x and Σ w·q² for an entry's 8 values at level values × <paramref name="multiplier"/>.</summary>
    private static void Fit(IQ2GridSearch search, int entry, float* xb, float* weight, float* levelValues, int multiplier, ref float sumqx, ref float sumq2)
    {
        ulong grid = search.Grid[entry];
        for (int j = 0; j < 8; j++)
        {
            float w = weight[j];
            float q = levelValues[((int)(grid >> (8 * j)) & 0xFF) / 2] * multiplier;
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
    }
}

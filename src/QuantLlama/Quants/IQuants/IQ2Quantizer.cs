using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// ggml's IQ2 quantizers (quantize_row_iq2_xxs_impl, quantize_row_iq2_xs_impl, quantize_row_iq2_s_impl), operation
/// for operation. Per block (32 values for IQ2_XXS, 16 for IQ2_XS and IQ2_S) the signs are taken out (IQ2_XXS and
/// IQ2_XS store 7 sign bits per 8, so an odd count of negatives flips the least important value), trial scales are
/// tried, each snapping groups of 8 levels 0..2 to the codebook (or its best neighbour), and the best weighted fit
/// is kept; the blocks' scales are stored as 4-bit multiples of the largest. IQ2_XXS and IQ2_XS need an importance
/// matrix (ggml asserts one); IQ2_S weighs by x² and the block's spread without.
/// </summary>
internal static unsafe class IQ2Quantizer
{
    private const int MaxQ = 3;
    private const float IQ2SGroupMaxEps = 1e-8f;

    /// <param name="importance">The row's column importance [src.Length] from an importance matrix.</param>
    public static void QuantizeXxs(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        const int QK = GgmlTypeInfo.QK_K, BlockBytes = IQ2_XXS.BlockBytes;
        int nb = Blocks.Check(src.Length, QK, dst.Length, BlockBytes);
        RequireImportance(GgmlType.IQ2_XXS, importance.Length, src.Length);
        var search = IQ2GridSearch.ForXxs;
        float* scales = stackalloc float[QK / 32];
        float* weight = stackalloc float[32];
        float* rootWeight = stackalloc float[32];
        float* xval = stackalloc float[32];
        sbyte* levels = stackalloc sbyte[32];
        sbyte* trial = stackalloc sbyte[32];
        byte* blockSigns = stackalloc byte[4];
        uint* q2 = stackalloc uint[2 * (QK / 32)]; // per block: four entry bytes | four 7-bit sign groups and the scale
        Span<byte> qpLevels = stackalloc byte[32];
        fixed (float* x0 = src)
        fixed (float* qw0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int ibl = 0; ibl < nb; ibl++)
            {
                byte* y = y0 + ibl * BlockBytes;
                *(ushort*)y = 0;
                new Span<uint>(q2, 2 * (QK / 32)).Clear();
                float maxScale = 0;
                float* xbl = x0 + QK * ibl;
                float sigma2 = SumOfSquares(xbl) / QK;
                for (int ib = 0; ib < QK / 32; ib++)
                {
                    float* xb = xbl + 32 * ib;
                    IQ3Quantizer.Weights(xb, qw0 + QK * ibl + 32 * ib, sigma2, weight, rootWeight, 32);
                    for (int k = 0; k < 4; k++) blockSigns[k] = EvenSigns(xb + 8 * k, weight + 8 * k, xval + 8 * k);
                    float max = Max(xval, 32);
                    new Span<sbyte>(levels, 32).Clear();
                    if (max < KQuantMath.GroupMaxEps)
                    {
                        scales[ib] = 0;
                        continue;
                    }
                    float scale = ImportanceSearch.MakeQpQuants(32, MaxQ + 1, new ReadOnlySpan<float>(xval, 32), qpLevels, new ReadOnlySpan<float>(weight, 32));
                    float effMax = scale * MaxQ;
                    if (effMax <= 0)
                    {
                        scales[ib] = 0;
                        continue;
                    }
                    float best = 0;
                    for (int step = -6; step <= 6; step++)
                    {
                        float id = (2 * MaxQ - 1 + step * 0.1f) / effMax;
                        float thisScale = 1 / id;
                        for (int k = 0; k < 4; k++) Snap(search, xval + 8 * k, rootWeight + 8 * k, id, thisScale, trial + 8 * k);
                        var (sumqx, sumq2) = IQ3Quantizer.Fit(xval, weight, trial, 32);
                        if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                        {
                            scale = sumqx / sumq2;
                            best = scale * sumqx;
                            new Span<sbyte>(trial, 32).CopyTo(new Span<sbyte>(levels, 32));
                        }
                    }
                    if (scale > 0)
                    {
                        float id = 1 / scale;
                        for (int k = 0; k < 4; k++) Snap(search, xval + 8 * k, rootWeight + 8 * k, id, scale, levels + 8 * k);
                        var (sumqx, sumq2) = IQ3Quantizer.Fit(xval, weight, levels, 32);
                        if (sumq2 > 0) scale = sumqx / sumq2;
                    }
                    if (scale < 0)
                    {
                        scale = -scale;
                        for (int k = 0; k < 4; k++) blockSigns[k] = (byte)(~blockSigns[k] & 127);
                    }
                    for (int k = 0; k < 4; k++)
                    {
                        q2[2 * ib] |= (uint)EntryOf(search, levels + 8 * k) << (8 * k);
                        q2[2 * ib + 1] |= (uint)blockSigns[k] << (7 * k);
                    }
                    scales[ib] = scale;
                    maxScale = Math.Max(maxScale, scale);
                }

                if (maxScale == 0)
                {
                    new Span<byte>(y + 2, BlockBytes - 2).Clear();
                    continue;
                }
                float d = maxScale / 31;
                *(ushort*)y = Fp16.FromFloat(d);
                float invD = 1 / d;
                for (int ib = 0; ib < QK / 32; ib++) q2[2 * ib + 1] |= (uint)ScaleNibble(invD, scales[ib]) << 28;
                new Span<byte>(q2, BlockBytes - 2).CopyTo(new Span<byte>(y + 2, BlockBytes - 2));
            }
        }
    }

    /// <param name="importance">The row's column importance [src.Length] from an importance matrix.</param>
    public static void QuantizeXs(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        const int QK = GgmlTypeInfo.QK_K, BlockBytes = IQ2_XS.BlockBytes, Scales = 2 + QK / 4;
        int nb = Blocks.Check(src.Length, QK, dst.Length, BlockBytes);
        RequireImportance(GgmlType.IQ2_XS, importance.Length, src.Length);
        var search = IQ2GridSearch.ForXs;
        float* scales = stackalloc float[QK / 16];
        float* weight = stackalloc float[16];
        float* rootWeight = stackalloc float[16];
        float* xval = stackalloc float[16];
        sbyte* levels = stackalloc sbyte[16];
        sbyte* trial = stackalloc sbyte[16];
        byte* blockSigns = stackalloc byte[2];
        ushort* q2 = stackalloc ushort[2 * (QK / 16)]; // per group of 8: 9-bit entry | 7 sign bits
        fixed (float* x0 = src)
        fixed (float* qw0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int ibl = 0; ibl < nb; ibl++)
            {
                byte* y = y0 + ibl * BlockBytes;
                *(ushort*)y = 0;
                new Span<ushort>(q2, 2 * (QK / 16)).Clear();
                new Span<byte>(y + Scales, QK / 32).Clear();
                float maxScale = 0;
                float* xbl = x0 + QK * ibl;
                float sigma2 = SumOfSquares(xbl) / QK;
                for (int ib = 0; ib < QK / 16; ib++)
                {
                    float* xb = xbl + 16 * ib;
                    IQ3Quantizer.Weights(xb, qw0 + QK * ibl + 16 * ib, sigma2, weight, rootWeight, 16);
                    for (int k = 0; k < 2; k++) blockSigns[k] = EvenSigns(xb + 8 * k, weight + 8 * k, xval + 8 * k);
                    float max = Max(xval, 16);
                    new Span<sbyte>(levels, 16).Clear();
                    if (max < KQuantMath.GroupMaxEps)
                    {
                        scales[ib] = 0;
                        continue;
                    }
                    float scale = SearchPair(search, xval, weight, rootWeight, levels, trial);
                    if (scale < 0)
                    {
                        scale = -scale;
                        for (int k = 0; k < 2; k++) blockSigns[k] = (byte)(~blockSigns[k] & 127);
                    }
                    for (int k = 0; k < 2; k++) q2[2 * ib + k] = (ushort)(EntryOf(search, levels + 8 * k) | (blockSigns[k] << 9));
                    scales[ib] = scale;
                    maxScale = Math.Max(maxScale, scale);
                }

                if (maxScale == 0)
                {
                    new Span<byte>(y + 2, QK / 4).Clear();
                    continue;
                }
                float d = maxScale / 31;
                *(ushort*)y = Fp16.FromFloat(d);
                PackScales(y + Scales, 1 / d, scales);
                new Span<byte>(q2, QK / 4).CopyTo(new Span<byte>(y + 2, QK / 4));
            }
        }
    }

    /// <summary>
    /// ggml's quantize_iq2_s: as IQ2_XS but with a sign bit per value (no parity fix), 10-bit codebook entries, a
    /// fallback weighting without an importance matrix, and a 0.9875 fudge factor on the scale.
    /// </summary>
    /// <param name="importance">Empty, or the row's column importance [src.Length] from an importance matrix.</param>
    public static void QuantizeS(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        const int QK = GgmlTypeInfo.QK_K, BlockBytes = IQ2_S.BlockBytes, Signs = 2 + QK / 8, HighBits = 2 + QK / 4, Scales = HighBits + QK / 32;
        int nb = Blocks.Check(src.Length, QK, dst.Length, BlockBytes);
        Blocks.CheckImportance(importance.Length, src.Length);
        var search = IQ2GridSearch.ForS;
        float* scales = stackalloc float[QK / 16];
        float* weight = stackalloc float[16];
        float* rootWeight = stackalloc float[16];
        float* xval = stackalloc float[16];
        sbyte* levels = stackalloc sbyte[16];
        sbyte* trial = stackalloc sbyte[16];
        byte* blockSigns = stackalloc byte[2];
        fixed (float* x0 = src)
        fixed (float* qw0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int ibl = 0; ibl < nb; ibl++)
            {
                byte* y = y0 + ibl * BlockBytes;
                new Span<byte>(y, BlockBytes).Clear();
                float maxScale = 0;
                float* xbl = x0 + QK * ibl;
                float sigma2 = 2 * SumOfSquares(xbl) / QK;
                for (int ib = 0; ib < QK / 16; ib++)
                {
                    float* xb = xbl + 16 * ib;
                    if (qw0 != null) IQ3Quantizer.Weights(xb, qw0 + QK * ibl + 16 * ib, sigma2, weight, rootWeight, 16);
                    else
                    {
                        for (int i = 0; i < 16; i++) weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
                        for (int i = 0; i < 16; i++) rootWeight[i] = MathF.Sqrt(weight[i]);
                    }
                    for (int k = 0; k < 2; k++)
                    {
                        int s = 0;
                        for (int i = 0; i < 8; i++)
                        {
                            float v = xb[8 * k + i];
                            if (v >= 0) xval[8 * k + i] = v;
                            else
                            {
                                xval[8 * k + i] = -v;
                                s |= 1 << i;
                            }
                        }
                        blockSigns[k] = (byte)s;
                    }
                    float max = Max(xval, 16);
                    new Span<sbyte>(levels, 16).Clear();
                    if (max < IQ2SGroupMaxEps)
                    {
                        scales[ib] = 0;
                        continue;
                    }
                    float scale = SearchPair(search, xval, weight, rootWeight, levels, trial);
                    if (scale < 0)
                    {
                        scale = -scale;
                        for (int k = 0; k < 2; k++) blockSigns[k] = (byte)~blockSigns[k];
                    }
                    for (int k = 0; k < 2; k++)
                    {
                        int entry = EntryOf(search, levels + 8 * k);
                        int i8 = 2 * ib + k;
                        y[2 + i8] = (byte)entry;
                        y[HighBits + i8 / 4] |= (byte)((entry >> 8) << (2 * (i8 % 4)));
                        y[Signs + i8] = blockSigns[k];
                    }
                    scales[ib] = scale;
                    maxScale = Math.Max(maxScale, scale);
                }
                if (maxScale == 0) continue;
                float d = maxScale / 31;
                *(ushort*)y = Fp16.FromFloat(d * 0.9875f); // ggml's fudge factor
                PackScales(y + Scales, 1 / d, scales);
            }
        }
    }

    /// <summary>ggml asserts an importance matrix for IQ2_XXS and IQ2_XS (ggml_quantize_requires_imatrix).</summary>
    private static void RequireImportance(GgmlType type, int importance, int values)
    {
        if (importance == 0) throw new ArgumentException($"quantizing to {type} needs an importance matrix", nameof(importance));
        Blocks.CheckImportance(importance, values);
    }

    /// <summary>
    /// Eight values to magnitudes in <paramref name="xval"/> and their sign bits, with an even count of negatives:
    /// where it is odd, the value of least weighted square keeps its sign flipped in its magnitude. Returns 7 bits.
    /// </summary>
    private static byte EvenSigns(float* xb, float* weight, float* xval)
    {
        int flips = 0, s = 0;
        for (int i = 0; i < 8; i++)
        {
            if (xb[i] >= 0) xval[i] = xb[i];
            else
            {
                xval[i] = -xb[i];
                flips++;
                s |= 1 << i;
            }
        }
        if (flips % 2 != 0)
        {
            int imin = 0;
            float min = weight[0] * xb[0] * xb[0];
            for (int i = 1; i < 8; i++)
            {
                float ax = weight[i] * xb[i] * xb[i];
                if (ax < min) { min = ax; imin = i; }
            }
            xval[imin] = -xval[imin];
            s ^= 1 << imin;
        }
        return (byte)(s & 127);
    }

    /// <summary>
    /// The scale search of IQ2_XS and IQ2_S on a block of 16 magnitudes: 19 trial scales around max/5, each snapping
    /// both groups of 8 to the codebook or their best neighbour, the best weighted fit kept in
    /// <paramref name="levels"/>; groups left off the codebook are snapped again at the chosen scale and the scale refitted.
    /// </summary>
    private static float SearchPair(IQ2GridSearch search, float* xval, float* weight, float* rootWeight, sbyte* levels, sbyte* trial)
    {
        float max = Max(xval, 16);
        float best = 0;
        float scale = max / (2 * MaxQ - 1);
        bool onGrid0 = true, onGrid1 = true;
        for (int step = -9; step <= 9; step++)
        {
            float id = (2 * MaxQ - 1 + step * 0.1f) / max;
            float thisScale = 1 / id;
            bool trial0 = Snap(search, xval, rootWeight, id, thisScale, trial);
            bool trial1 = Snap(search, xval + 8, rootWeight + 8, id, thisScale, trial + 8);
            var (sumqx, sumq2) = IQ3Quantizer.Fit(xval, weight, trial, 16);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
            {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                new Span<sbyte>(trial, 16).CopyTo(new Span<sbyte>(levels, 16));
                (onGrid0, onGrid1) = (trial0, trial1);
            }
        }
        if ((!onGrid0 || !onGrid1) && scale > 0)
        {
            float id = 1 / scale;
            if (!onGrid0) Snap(search, xval, rootWeight, id, scale, levels);
            if (!onGrid1) Snap(search, xval + 8, rootWeight + 8, id, scale, levels + 8);
            var (sumqx, sumq2) = IQ3Quantizer.Fit(xval, weight, levels, 16);
            if (sumq2 > 0) scale = sumqx / sumq2;
        }
        return scale;
    }

    /// <summary>
    /// Eight magnitudes at inverse scale id to levels 0..2 in <paramref name="levels"/>; off the codebook, the best
    /// neighbour at <paramref name="scale"/> replaces them. True when the rounded point was on the codebook.
    /// </summary>
    private static bool Snap(IQ2GridSearch search, float* xval, float* rootWeight, float id, float scale, sbyte* levels)
    {
        int point = 0;
        for (int i = 0; i < 8; i++)
        {
            int l = Math.Clamp(KQuantMath.NearestInt(0.5f * (id * xval[i] - 1)), 0, MaxQ - 1);
            levels[i] = (sbyte)l;
            point |= l << (2 * i);
        }
        int entry = search.Map[point];
        if (entry >= 0) return true;
        search.BestNeighbour(-entry - 1, xval, rootWeight, scale, levels);
        return false;
    }

    /// <summary>The codebook entry of a group of 8 levels that is on the codebook.</summary>
    private static int EntryOf(IQ2GridSearch search, sbyte* levels)
    {
        int point = 0;
        for (int i = 0; i < 8; i++) point |= levels[i] << (2 * i);
        int entry = search.Map[point];
        if (entry < 0) throw new InvalidOperationException($"IQ2 quantizer: point {point} is not on the codebook");
        return entry;
    }

    /// <summary>The 16 blocks' scales as 4-bit multiples of d (scale ≈ d·(2l + 1)/2), two to a byte.</summary>
    private static void PackScales(byte* dst, float invD, float* scales)
    {
        for (int ib = 0; ib < GgmlTypeInfo.QK_K / 16; ib += 2)
            dst[ib / 2] = (byte)(ScaleNibble(invD, scales[ib]) | (ScaleNibble(invD, scales[ib + 1]) << 4));
    }

    private static int ScaleNibble(float invD, float scale) => Math.Clamp(KQuantMath.NearestInt(0.5f * (invD * scale - 1)), 0, 15);

    private static float SumOfSquares(float* xbl)
    {
        float sumx2 = 0;
        for (int i = 0; i < GgmlTypeInfo.QK_K; i++) sumx2 += xbl[i] * xbl[i];
        return sumx2;
    }

    private static float Max(float* xval, int n)
    {
        float max = xval[0];
        for (int i = 1; i < n; i++) max = Math.Max(max, xval[i]);
        return max;
    }
}

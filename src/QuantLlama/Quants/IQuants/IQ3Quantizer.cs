using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// ggml's IQ3_XXS quantizer (quantize_row_iq3_xxs_impl), operation for operation: per block of 32 the signs are taken
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
        const int QK = KQuantMath.QK_K, TypeSize = IQ3_XXS.TypeSize;
        int nb = Blocks.Check(src.Length, QK, dst.Length, TypeSize);
        if (!importance.IsEmpty && importance.Length != src.Length) throw new ArgumentException("one importance per value is needed", nameof(importance));
        var search = IQ3GridSearch.ForXxs;
        float* scales = stackalloc float[8];
        float* weight = stackalloc float[32];
        float* rootWeight = stackalloc float[32];
        float* xval = stackalloc float[32];
        sbyte* levels = stackalloc sbyte[32];
        sbyte* trial = stackalloc sbyte[32];
        bool* onGrid = stackalloc bool[8];
        bool* trialOnGrid = stackalloc bool[8];
        byte* blockSigns = stackalloc byte[4];
        sbyte* scratch = stackalloc sbyte[4];
        byte* q3 = stackalloc byte[TypeSize - 2]; // [64 entry numbers | 8 x uint32 signs and scale]
        uint* scalesAndSigns = (uint*)(q3 + 64);
        fixed (float* x0 = src)
        fixed (float* qw0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int ibl = 0; ibl < nb; ibl++)
            {
                byte* y = y0 + ibl * TypeSize;
                *(ushort*)y = 0;
                new Span<byte>(q3, TypeSize - 2).Clear();
                float maxScale = 0;
                float* xbl = x0 + QK * ibl;
                float sumx2 = 0;
                for (int i = 0; i < QK; i++) sumx2 += xbl[i] * xbl[i];
                float sigma2 = 2 * sumx2 / QK;

                for (int ib = 0; ib < QK / 32; ib++)
                {
                    float* xb = xbl + 32 * ib;
                    if (qw0 != null)
                    {
                        float* qw = qw0 + QK * ibl + 32 * ib;
                        for (int i = 0; i < 32; i++) weight[i] = qw[i] * MathF.Sqrt(sigma2 + xb[i] * xb[i]);
                    }
                    else
                        for (int i = 0; i < 32; i++) weight[i] = xb[i] * xb[i];
                    for (int i = 0; i < 32; i++) rootWeight[i] = MathF.Sqrt(weight[i]);
                    for (int k = 0; k < 4; k++)
                    {
                        int flips = 0;
                        int s = 0;
                        for (int i = 0; i < 8; i++)
                        {
                            if (xb[8 * k + i] >= 0) xval[8 * k + i] = xb[8 * k + i];
                            else
                            {
                                xval[8 * k + i] = -xb[8 * k + i];
                                flips++;
                                s |= 1 << i;
                            }
                        }
                        if (flips % 2 != 0)
                        {
                            int imin = 0;
                            float min = weight[8 * k] * xb[8 * k] * xb[8 * k];
                            for (int i = 1; i < 8; i++)
                            {
                                float ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                                if (ax < min) { min = ax; imin = i; }
                            }
                            xval[8 * k + imin] = -xval[8 * k + imin];
                            s ^= 1 << imin;
                        }
                        blockSigns[k] = (byte)(s & 127);
                    }
                    float max = xval[0];
                    for (int i = 1; i < 32; i++) max = Math.Max(max, xval[i]);
                    new Span<sbyte>(levels, 32).Clear();
                    if (max < GroupMaxEps)
                    {
                        scales[ib] = 0;
                        continue;
                    }
                    float best = 0;
                    float scale = max / (2 * MaxLevel - 1);
                    for (int k = 0; k < 8; k++) onGrid[k] = true;
                    for (int step = -15; step <= 15; step++)
                    {
                        float id = (2 * MaxLevel - 1 + step * 0.2f) / max;
                        float thisScale = 1 / id;
                        for (int k = 0; k < 8; k++)
                        {
                            int point = PointOf(xval + 4 * k, id, trial + 4 * k);
                            trialOnGrid[k] = true;
                            if (search.Map[point] < 0)
                            {
                                trialOnGrid[k] = false;
                                search.BestNeighbour(-search.Map[point] - 1, xval + 4 * k, rootWeight + 4 * k, thisScale, trial + 4 * k);
                            }
                        }
                        var (sumqx, sumq2) = Fit(xval, weight, trial);
                        if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                        {
                            scale = sumqx / sumq2;
                            best = scale * sumqx;
                            for (int i = 0; i < 32; i++) levels[i] = trial[i];
                            for (int k = 0; k < 8; k++) onGrid[k] = trialOnGrid[k];
                        }
                    }
                    int offGrid = 0;
                    for (int k = 0; k < 8; k++) if (!onGrid[k]) offGrid++;
                    if (offGrid > 0 && scale > 0)
                    {
                        float id = 1 / scale;
                        for (int k = 0; k < 8; k++)
                        {
                            if (onGrid[k]) continue;
                            int point = PointOf(xval + 4 * k, id, scratch);
                            int entry = search.Map[point];
                            if (entry < 0) entry = search.BestNeighbour(-entry - 1, xval + 4 * k, rootWeight + 4 * k, scale, levels + 4 * k);
                            for (int i = 0; i < 4; i++) levels[4 * k + i] = (sbyte)search.Level(entry, i);
                        }
                        var (sumqx, sumq2) = Fit(xval, weight, levels);
                        if (sumq2 > 0) scale = sumqx / sumq2;
                    }
                    if (scale < 0)
                    {
                        scale = -scale;
                        for (int k = 0; k < 4; k++) blockSigns[k] = (byte)(~blockSigns[k] & 127);
                    }
                    for (int k = 0; k < 8; k++)
                    {
                        int point = 0;
                        for (int i = 0; i < 4; i++) point |= levels[4 * k + i] << (3 * i);
                        int entry = search.Map[point];
                        if (entry < 0) throw new InvalidOperationException($"IQ3_XXS quantizer: point {point} is not on the codebook");
                        q3[8 * ib + k] = (byte)entry;
                    }
                    scalesAndSigns[ib] = (uint)(blockSigns[0] | (blockSigns[1] << 7) | (blockSigns[2] << 14) | (blockSigns[3] << 21));
                    scales[ib] = scale;
                    maxScale = Math.Max(maxScale, scale);
                }

                if (maxScale == 0)
                {
                    new Span<byte>(y + 2, TypeSize - 2).Clear();
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
                new Span<byte>(q3, TypeSize - 2).CopyTo(new Span<byte>(y + 2, TypeSize - 2));
            }
        }
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

    /// <summary>Σ w·x·q and Σ w·q² over a block of 32 with q = 2l + 1.</summary>
    private static (float SumQx, float SumQ2) Fit(float* xval, float* weight, sbyte* levels)
    {
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < 32; i++)
        {
            float w = weight[i];
            float q = 2 * levels[i] + 1;
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        return (sumqx, sumq2);
    }
}

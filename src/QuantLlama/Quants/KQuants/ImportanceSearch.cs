using QuantLlama.Tensors;

namespace QuantLlama.Quants.KQuants;

/// <summary>
/// The k-quants' scale searches with an importance matrix (ggml's quantize_row_q4_K_impl and q5_K_impl), ported
/// operation for operation like <see cref="KQuantMath"/>: each value's error is weighted by its column's importance
/// times sqrt(σ² + x²), and the 6-bit scales and minimums are fitted by a weighted search of their own
/// (make_qp_quants) rather than scaled to the largest.
/// </summary>
internal static class ImportanceSearch
{
    /// <summary>
    /// The 6-bit scales <paramref name="ls"/> and minimums <paramref name="lm"/> [8] of one 256-value super-block,
    /// their fp16 super-scales, and the first-guess levels [256] (used where a scale comes out 0).
    /// </summary>
    public static void ScalesAndMins(ReadOnlySpan<float> x, ReadOnlySpan<float> importance, int nmax,
        Span<byte> ls, Span<byte> lm, Span<byte> levels, out ushort d, out ushort dmin)
    {
        Span<float> weights = stackalloc float[32];
        Span<float> sumWeights = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        Span<float> mins = stackalloc float[8];
        Span<byte> scratch = stackalloc byte[32];
        float sumX2 = 0;
        for (int l = 0; l < GgmlTypeInfo.QK_K; l++) sumX2 += x[l] * x[l];
        float sigma2 = 2 * sumX2 / GgmlTypeInfo.QK_K;
        for (int j = 0; j < 8; j++)
        {
            var xs = x.Slice(32 * j, 32);
            float sumW = 0;
            for (int l = 0; l < 32; l++)
            {
                weights[l] = importance[32 * j + l] * MathF.Sqrt(sigma2 + xs[l] * xs[l]);
                sumW += weights[l];
            }
            sumWeights[j] = sumW;
            // make_qkx3_quants is make_qkx2_quants but for its all-equal test, which cannot differ once min <= 0 <= max.
            scales[j] = KQuantMath.MakeQkx2Quants(32, nmax, xs, weights, levels.Slice(32 * j, 32), out mins[j], scratch,
                -0.9f, 0.05f, 36, false);
        }
        d = KQuantMath.ToHalfBits(MakeQpQuants(8, 63, scales, ls, sumWeights));
        dmin = KQuantMath.ToHalfBits(MakeQpQuants(8, 63, mins, lm, sumWeights));
    }

    /// <summary>
    /// make_qp_quants: non-negative values to levels 0..nmax: the best of 9 scales around nmax/max by weighted
    /// squared error, then up to five passes moving single levels while the weighted fit improves. Returns the scale.
    /// </summary>
    public static float MakeQpQuants(int n, int nmax, ReadOnlySpan<float> x, Span<byte> levels, ReadOnlySpan<float> weights)
    {
        float max = 0;
        for (int i = 0; i < n; i++) max = Math.Max(max, x[i]);
        if (max < KQuantMath.GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        float iscale = nmax / max;
        for (int i = 0; i < n; i++) levels[i] = (byte)KQuantMath.NearestInt(iscale * x[i]);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            float diff = x[i] - scale * levels[i];
            bestError += weights[i] * diff * diff;
        }
        for (int step = -4; step <= 4; step++)
        {
            if (step == 0) continue;
            float iscaleStep = (0.1f * step + nmax) / max;
            float scaleStep = 1 / iscaleStep;
            float error = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Min(nmax, KQuantMath.NearestInt(iscaleStep * x[i]));
                float diff = x[i] - scaleStep * l;
                error += weights[i] * diff * diff;
            }
            if (error < bestError)
            {
                bestError = error;
                iscale = iscaleStep;
            }
        }
        float sumLx = 0, sumL2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Min(nmax, KQuantMath.NearestInt(iscale * x[i]));
            levels[i] = (byte)l;
            sumLx += weights[i] * x[i] * l;
            sumL2 += weights[i] * l * l;
        }
        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = weights[i];
                float slx = sumLx - w * x[i] * levels[i];
                float sl2 = sumL2 - w * levels[i] * levels[i];
                if (slx > 0 && sl2 > 0)
                {
                    int newL = Math.Min(nmax, KQuantMath.NearestInt(x[i] * sl2 / slx));
                    if (newL != levels[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (slx * slx * sumL2 > sumLx * sumLx * sl2)
                        {
                            levels[i] = (byte)newL;
                            sumLx = slx;
                            sumL2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        return sumL2 > 0.0f ? sumLx / sumL2 : 0.0f;
    }
}

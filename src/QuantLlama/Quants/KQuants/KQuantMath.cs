using System.Runtime.Intrinsics;
using System.Runtime.CompilerServices;

namespace QuantLlama.Quants.KQuants;

/// <summary>
/// The scale-search helpers shared by ggml's k-quant reference quantizers, ported operation for operation: the same
/// float operations in the same order (plain IEEE single precision, no fused multiply-add: ggml-base is built
/// without it), so the chosen quants and scales match llama.cpp to the bit.
/// </summary>
internal static class KQuantMath
{
    /// <summary>ggml's GROUP_MAX_EPS: below this a group counts as all zero.</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's nearest_int: round half to even through the float mantissa (adding 1.5·2^23). Kept as the bit trick,
    /// not Math.Round, so out-of-range and NaN inputs give the same (garbage) integer llama.cpp gets.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float value)
    {
        float shifted = value + 12582912f;
        int bits = BitConverter.SingleToInt32Bits(shifted);
        return (bits & 0x007fffff) - 0x00400000;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort ToHalfBits(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>
    /// Exact fp16 → f32 without a call (the framework's conversion is not inlined, and the kernels need one per
    /// block): shifting exponent and mantissa into f32 position gives the value times 2^-112, for normal and
    /// subnormal halves alike, and the multiply by 2^112 is exact. Infinities and NaNs are rebuilt separately.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FromHalfBits(ushort bits)
    {
        uint sign = (uint)(bits & 0x8000) << 16;
        uint magnitude = (uint)(bits & 0x7fff);
        if (magnitude >= 0x7c00)
            return BitConverter.UInt32BitsToSingle(sign | 0x7f800000 | ((magnitude & 0x3ff) << 13));
        float value = BitConverter.UInt32BitsToSingle(magnitude << 13) * 5.192296858534828e33f; // 2^112
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(value) | sign);
    }

    /// <summary>Round-trips a value through fp16, as storing and reloading a block's scale does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ThroughHalf(float value) => (float)(Half)value;

    /// <summary>
    /// make_qx_quants with rmse_type 1: symmetric quants in [0, 2·nmax) and the scale minimising the weighted error
    /// over 19 candidate scales; the weights are x², or an importance matrix's when <paramref name="weights"/> is given.
    /// </summary>
    public static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> levels, ReadOnlySpan<float> weights = default)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            levels[i] = (sbyte)(l + nmax);
            float w = weights.IsEmpty ? x[i] * x[i] : weights[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; i++)
            {
                int l = NearestInt(iscale * x[i]);
                l = Math.Max(-nmax, Math.Min(nmax - 1, l));
                float w = weights.IsEmpty ? x[i] * x[i] : weights[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; i++)
                {
                    int l = NearestInt(iscale * x[i]);
                    levels[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    /// <summary>
    /// make_q3_quants with do_rmse: symmetric quants, then up to five passes of coordinate descent moving single
    /// quants while the weighted (x²) fit improves. Levels come back offset by nmax.
    /// </summary>
    public static float MakeQ3Quants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> levels)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            levels[i] = (sbyte)l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int attempt = 0; attempt < 5; attempt++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * levels[i];
                if (slx > 0)
                {
                    float sl2 = suml2 - w * levels[i] * levels[i];
                    int newL = NearestInt(x[i] * sl2 / slx);
                    newL = Math.Max(-nmax, Math.Min(nmax - 1, newL));
                    if (newL != levels[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (sbyte)newL;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        for (int i = 0; i < n; i++) levels[i] += (sbyte)nmax;
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }

    /// <summary>
    /// make_qkx2_quants: asymmetric quants in [0, nmax] with a non-positive offset, searching nstep+1 scales around
    /// nmax/(max-min) and keeping the least weighted error (absolute or squared). Returns the scale; the offset
    /// comes back negated in <paramref name="theMin"/>.
    /// </summary>
    public static float MakeQkx2Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights,
        Span<byte> levels, out float theMin, Span<byte> scratch, float rmin, float rdelta, int nstep, bool useMad)
    {
        float min = x[0];
        float max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            levels[..n].Clear();
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * (x[i] - min));
            levels[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * levels[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l = NearestInt(iscale * (x[i] - min));
                l = Math.Max(0, Math.Min(nmax, l));
                scratch[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float error = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * scratch[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    error += weights[i] * diff;
                }
                if (error < bestError)
                {
                    scratch[..n].CopyTo(levels);
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>
    /// Unpacks the j-th 6-bit scale and min of Q4_K/Q5_K's 12-byte table: the first four live in the low six bits
    /// of bytes 0–7, the last four in nibbles of bytes 8–11 with their top two bits in the spare bits of bytes 0–7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void GetScaleMinK4(int j, ReadOnlySpan<byte> q, out byte scale, out byte min)
    {
        if (j < 4)
        {
            scale = (byte)(q[j] & 63);
            min = (byte)(q[j + 4] & 63);
        }
        else
        {
            scale = (byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            min = (byte)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
    }

    /// <summary>
    /// Packs the eight 6-bit scales and mins of Q4_K/Q5_K (as the reference quantizer does) into the 12-byte table.
    /// </summary>
    public static void PackScaleMinK4(ReadOnlySpan<byte> scales, ReadOnlySpan<byte> mins, Span<byte> table)
    {
        for (int j = 0; j < 8; j++)
        {
            byte ls = scales[j], lm = mins[j];
            if (j < 4)
            {
                table[j] = ls;
                table[j + 4] = lm;
            }
            else
            {
                table[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                table[j - 4] |= (byte)((ls >> 4) << 6);
                table[j] |= (byte)((lm >> 4) << 6);
            }
        }
    }

    /// <summary>
    /// Expands the 12-byte Q4_K/Q5_K table into 8 scales (bytes 0–7) and 8 mins (bytes 8–15) with four 32-bit
    /// operations (ggml's kmask trick), for the SIMD kernels.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void UnpackScaleMinK4(byte* table, uint* utmp) => UnpackScaleMinK4(table).Store(utmp);

    /// <summary>
    /// Σ bsum_g · min of g's sub-block over a Q4_K/Q5_K block's 16 activation groups (two per 32-value sub-block):
    /// the integer part of the mins' term in the scalar and ARM dots.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe int SumMinsK4(byte* mins, short* bsums)
    {
        int sum = 0;
        for (int g = 0; g < 16; g++) sum += bsums[g] * mins[g / 2];
        return sum;
    }

    /// <summary>
    /// One Q4_K/Q5_K block's term as the scalar reference rounds it: (a·d)·Σscale·q·q8 − (a·dmin)·Σmin·bsum, with a
    /// the activation block's scale and d, dmin the block's fp16 super-scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ScaleMinTerm(float activationScale, ushort d, ushort dmin, int sumi, int sumMins)
        => activationScale * FromHalfBits(d) * sumi - activationScale * FromHalfBits(dmin) * sumMins;

    /// <summary>As above, into a register (no store/reload between the scalar unpacking and the SIMD use).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector128<uint> UnpackScaleMinK4(byte* table)
    {
        const uint kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
        uint u0 = Unsafe.ReadUnaligned<uint>(table);
        uint u1 = Unsafe.ReadUnaligned<uint>(table + 4);
        uint u2 = Unsafe.ReadUnaligned<uint>(table + 8);
        return Vector128.Create(
            u0 & kmask1,
            (u2 & kmask2) | (((u0 >> 6) & kmask3) << 4),
            u1 & kmask1,
            ((u2 >> 4) & kmask2) | (((u1 >> 6) & kmask3) << 4));
    }

    /// <summary>Unpacks Q3_K's 12-byte table of sixteen 6-bit scales (stored +32) into sixteen signed scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void UnpackQ3Scales(byte* table, sbyte* scales)
    {
        UnpackQ3ScalesBiased(table, (uint*)scales);
        for (int i = 0; i < 16; i++) scales[i] -= 32;
    }

    /// <summary>As <see cref="UnpackQ3Scales"/> but leaves the +32 bias in (for kernels that remove it in SIMD).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void UnpackQ3ScalesBiased(byte* table, uint* aux) => UnpackQ3ScalesBiased(table).Store(aux);

    /// <summary>As above, into a register (no store/reload before the SIMD use).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector128<uint> UnpackQ3ScalesBiased(byte* table)
    {
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        uint a0 = Unsafe.ReadUnaligned<uint>(table);
        uint a1 = Unsafe.ReadUnaligned<uint>(table + 4);
        uint tmp = Unsafe.ReadUnaligned<uint>(table + 8);
        return Vector128.Create(
            (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4),
            (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4),
            ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4),
            ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4));
    }

    /// <summary>
    /// The scale-and-minimum half of quantize_row_q4_K_ref and quantize_row_q5_K_ref (or, with an importance
    /// matrix's weights for the block's 256 values, of their _impl, see <see cref="ImportanceSearch"/>): 6-bit scales
    /// and mins packed into the block's 12-byte table, fp16 super-scales written at the block's start, then every
    /// value requantized against the scales as stored.
    /// The block must begin with ushort d, ushort dmin, byte scales[12], as block_q4_K and block_q5_K do.
    /// </summary>
    internal static unsafe void QuantizeScaleMinSuperBlock(ReadOnlySpan<float> x, int nmax, float rmin, int nstep,
        byte* block, Span<byte> levels, ReadOnlySpan<float> importance = default)
    {
        Span<byte> ls = stackalloc byte[8];
        Span<byte> lm = stackalloc byte[8];
        ushort dBits, dminBits;
        if (!importance.IsEmpty) ImportanceSearch.ScalesAndMins(x, importance, nmax, ls, lm, levels, out dBits, out dminBits);
        else ScalesAndMinsToLargest(x, nmax, rmin, nstep, ls, lm, levels, out dBits, out dminBits);
        var table = new Span<byte>(block + 4, 12);
        PackScaleMinK4(ls, lm, table);
        *(ushort*)block = dBits;
        *(ushort*)(block + 2) = dminBits;

        // Requantize against the scales as stored (fp16 and 6-bit), which is what dequantization will use.
        float dAll = FromHalfBits(*(ushort*)block), mAll = FromHalfBits(*(ushort*)(block + 2));
        for (int j = 0; j < 8; j++)
        {
            GetScaleMinK4(j, table, out byte sc, out byte m);
            float d = dAll * sc;
            if (d == 0) continue;
            float dm = mAll * m;
            for (int k = 0; k < 32; k++)
            {
                int l = NearestInt((x[32 * j + k] + dm) / d);
                levels[32 * j + k] = (byte)Math.Max(0, Math.Min(nmax, l));
            }
        }
    }

    /// <summary>The reference quantizers' scales: make_qkx2_quants per 32 values (weights mean |x| + |x|), then the
    /// 6-bit scales and minimums as fractions of the largest.</summary>
    private static void ScalesAndMinsToLargest(ReadOnlySpan<float> x, int nmax, float rmin, int nstep,
        Span<byte> ls, Span<byte> lm, Span<byte> levels, out ushort d, out ushort dmin)
    {
        Span<byte> scratch = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            var xs = x.Slice(32 * j, 32);
            float sumX2 = 0;
            for (int l = 0; l < 32; l++) sumX2 += xs[l] * xs[l];
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = avX + MathF.Abs(xs[l]);
            scales[j] = MakeQkx2Quants(32, nmax, xs, weights, levels.Slice(32 * j, 32), out mins[j], scratch,
                rmin, 0.1f, nstep, false);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        float invScale = maxScale > 0 ? 63f / maxScale : 0f;
        float invMin = maxMin > 0 ? 63f / maxMin : 0f;
        for (int j = 0; j < 8; j++)
        {
            ls[j] = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j]));
            lm[j] = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
        }
        d = ToHalfBits(maxScale / 63f);
        dmin = ToHalfBits(maxMin / 63f);
    }
}

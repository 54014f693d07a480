using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QuantLlama.Compute;

/// <summary>
/// Dot products and scaled sums between f32 activations and f16 values (the key/value cache), with the f16 to f32
/// conversion done eight lanes at a time by bit manipulation (exact for every finite value, subnormals included).
/// </summary>
internal static unsafe class HalfVector
{
    private static readonly Vector256<float> Magic = Vector256.Create(BitConverter.Int32BitsToSingle(0x77800000)); // 2^112

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Load8(Half* p)
    {
        var h = Vector128.Load((ushort*)p);
        var (lo, hi) = Vector128.Widen(h);
        var u = Vector256.Create(lo, hi);
        var sign = (u & Vector256.Create(0x8000u)) << 16;
        var magnitude = (u & Vector256.Create(0x7fffu)) << 13;
        // Re-biasing the exponent by a multiplication also normalises subnormals exactly.
        var scaled = magnitude.AsSingle() * Magic;
        var infOrNan = Vector256.Equals(u & Vector256.Create(0x7c00u), Vector256.Create(0x7c00u));
        var special = (magnitude | Vector256.Create(0x7f800000u)).AsSingle();
        return Vector256.ConditionalSelect(infOrNan.AsSingle(), special, scaled) | sign.AsSingle();
    }

    public static float Dot(float* a, Half* b, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; i <= n - 8; i += 8)
                acc += Vector256.Load(a + i) * Load8(b + i);
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++) sum += a[i] * (float)b[i];
        return sum;
    }

    /// <summary>y += w * x.</summary>
    public static void ScaleAdd(float w, Half* x, float* y, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var wv = Vector256.Create(w);
            for (; i <= n - 8; i += 8)
                Vector256.Store(Vector256.Load(y + i) + wv * Load8(x + i), y + i);
        }
        for (; i < n; i++) y[i] += w * (float)x[i];
    }

    public static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; i <= n - 8; i += 8)
                acc += Vector256.Load(a + i) * Vector256.Load(b + i);
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    public static void ScaleAdd(float w, float* x, float* y, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var wv = Vector256.Create(w);
            for (; i <= n - 8; i += 8)
                Vector256.Store(Vector256.Load(y + i) + wv * Vector256.Load(x + i), y + i);
        }
        for (; i < n; i++) y[i] += w * x[i];
    }

    /// <summary>
    /// scores[t] = Dot(q, k_t) · scale for <paramref name="positions"/> keys <paramref name="stride"/> floats apart,
    /// with a 64-value query held in registers across the keys; the same operations in the same order as
    /// <see cref="Dot(float*, float*, int)"/>, so the same bits. Returns the largest score.
    /// </summary>
    public static float Scores64(float* q, float* k, long stride, int positions, float scale, float* scores)
    {
        Vector256<float> q0 = Vector256.Load(q), q1 = Vector256.Load(q + 8), q2 = Vector256.Load(q + 16), q3 = Vector256.Load(q + 24);
        Vector256<float> q4 = Vector256.Load(q + 32), q5 = Vector256.Load(q + 40), q6 = Vector256.Load(q + 48), q7 = Vector256.Load(q + 56);
        float max = float.NegativeInfinity;
        for (int t = 0; t < positions; t++, k += stride)
        {
            var acc = Vector256<float>.Zero;
            acc += q0 * Vector256.Load(k); acc += q1 * Vector256.Load(k + 8);
            acc += q2 * Vector256.Load(k + 16); acc += q3 * Vector256.Load(k + 24);
            acc += q4 * Vector256.Load(k + 32); acc += q5 * Vector256.Load(k + 40);
            acc += q6 * Vector256.Load(k + 48); acc += q7 * Vector256.Load(k + 56);
            float s = Vector256.Sum(acc) * scale;
            scores[t] = s;
            if (s > max) max = s;
        }
        return max;
    }

    /// <summary>
    /// o = Σ_t (weights[t]·inv) · v_t over values <paramref name="stride"/> floats apart, 64 outputs at a time held in
    /// registers across the values; per output the same additions in the same order as repeated
    /// <see cref="ScaleAdd(float, float*, float*, int)"/> from zero, so the same bits.
    /// </summary>
    public static void WeightedSum64(float* weights, float inv, float* v, long stride, int positions, float* o)
    {
        Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default, o4 = default, o5 = default, o6 = default, o7 = default;
        for (int t = 0; t < positions; t++, v += stride)
        {
            var w = Vector256.Create(weights[t] * inv);
            o0 += w * Vector256.Load(v); o1 += w * Vector256.Load(v + 8);
            o2 += w * Vector256.Load(v + 16); o3 += w * Vector256.Load(v + 24);
            o4 += w * Vector256.Load(v + 32); o5 += w * Vector256.Load(v + 40);
            o6 += w * Vector256.Load(v + 48); o7 += w * Vector256.Load(v + 56);
        }
        o0.Store(o); o1.Store(o + 8); o2.Store(o + 16); o3.Store(o + 24);
        o4.Store(o + 32); o5.Store(o + 40); o6.Store(o + 48); o7.Store(o + 56);
    }

    public static void ToHalf(float* src, Half* dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = (Half)src[i];
    }

    public static void ToSingle(Half* src, float* dst, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8) Vector256.Store(Load8(src + i), dst + i);
        for (; i < n; i++) dst[i] = (float)src[i];
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QuantLlama.Models;

/// <summary>
/// Dot products and scaled sums between f32 activations and f16 values (the key/value cache), with the f16 to f32
/// conversion done eight lanes at a time by bit manipulation (exact for every finite value, subnormals included).
/// </summary>
internal static unsafe class HalfVector
{
    private static readonly Vector256<float> Magic = Vector256.Create(BitConverter.Int32BitsToSingle(0x77800000)); // 2^112

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load8(Half* p)
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

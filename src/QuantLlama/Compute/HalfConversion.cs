using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants;

namespace QuantLlama.Compute;

/// <summary>
/// f16 (the key/value cache) to and from f32, the f16 to f32 conversion done eight (AVX-512: sixteen) lanes at a
/// time by bit manipulation (exact for every finite value, subnormals included).
/// </summary>
internal static unsafe class HalfConversion
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

    /// <summary><see cref="Load8"/>'s conversion, sixteen at a time (AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Load16(Half* p)
    {
        var u = Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p));
        var sign = (u & Vector512.Create(0x8000u)) << 16;
        var magnitude = (u & Vector512.Create(0x7fffu)) << 13;
        var scaled = magnitude.AsSingle() * Vector512.Create(BitConverter.Int32BitsToSingle(0x77800000)); // 2^112
        var infOrNan = Vector512.Equals(u & Vector512.Create(0x7c00u), Vector512.Create(0x7c00u));
        var special = (magnitude | Vector512.Create(0x7f800000u)).AsSingle();
        return Vector512.ConditionalSelect(infOrNan.AsSingle(), special, scaled) | sign.AsSingle();
    }

    /// <summary>dst = src rounded to f16 (to nearest even), sixteen at a time where none is NaN.</summary>
    public static void ToHalf(float* src, Half* dst, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16)
            {
                var lo = Vector256.Load(src + i);
                var hi = Vector256.Load(src + i + 8);
                if (Vector256.EqualsAll(lo, lo) && Vector256.EqualsAll(hi, hi))
                    Vector256.Store(Vector256.Narrow(HalfBits(lo), HalfBits(hi)), (ushort*)dst + i);
                else
                    for (int j = i; j < i + 16; j++) dst[j] = (Half)src[j]; // NaN keeps the conversion's own payload
            }
        for (; i < n; i++) dst[i] = (Half)src[i];
    }

    /// <summary>
    /// f16 bits of eight values other than NaN, rounded to nearest even (magnitudes from 65520 up to infinity) by
    /// ggml's bit manipulation: scaled so the float addition rounds at f16's spacing, then the bits taken apart.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> HalfBits(Vector256<float> f)
    {
        var w = f.AsUInt32();
        var scaled = (Vector256.Abs(f) * Vector256.Create(BitConverter.UInt32BitsToSingle(0x77800000u))) // 2^112
            * Vector256.Create(BitConverter.UInt32BitsToSingle(0x08800000u)); // 2^-110
        var doubled = w + w;
        var bias = Vector256.Max(doubled & Vector256.Create(0xFF000000u), Vector256.Create(0x71000000u));
        var bits = (((bias >> 1) + Vector256.Create(0x07800000u)).AsSingle() + scaled).AsUInt32();
        var magnitude = ((bits >> 13) & Vector256.Create(0x7C00u)) + (bits & Vector256.Create(0x0FFFu));
        return ((w & Vector256.Create(0x80000000u)) >> 16) | magnitude;
    }

    public static void ToSingle(Half* src, float* dst, int n)
    {
        int i = 0;
        if (Kernels.UseAvx512)
            for (; i <= n - 16; i += 16) Vector512.Store(Load16(src + i), dst + i);
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8) Vector256.Store(Load8(src + i), dst + i);
        for (; i < n; i++) dst[i] = (float)src[i];
    }
}

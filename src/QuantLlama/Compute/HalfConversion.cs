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

    public static void ToHalf(float* src, Half* dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = (Half)src[i];
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

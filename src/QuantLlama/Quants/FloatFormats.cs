using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants;

/// <summary>F32 rows: dot products of two f32 rows (ggml pairs F32 weights with F32 activations).</summary>
public static unsafe class F32
{
    public static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        if (y.Length < x.Length) throw new ArgumentException("row lengths do not match");
        fixed (float* a = x)
        fixed (float* b = y)
            return Dot((byte*)a, (byte*)b, x.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(byte* x, byte* y, int n)
    {
        if (Kernels.UseAvx512) return DotAvx512((float*)x, (float*)y, n);
        if (Kernels.UseAvx2) return DotAvx2((float*)x, (float*)y, n);
        if (Kernels.UseAdvSimd) return DotAdvSimd((float*)x, (float*)y, n);
        return DotScalar((float*)x, (float*)y, n);
    }

    internal static float DotScalar(float* x, float* y, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx2(float* x, float* y, int n)
    {
        var s0 = Vector256<float>.Zero; var s1 = Vector256<float>.Zero;
        var s2 = Vector256<float>.Zero; var s3 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            s0 = Fma.MultiplyAdd(Avx.LoadVector256(x + i), Avx.LoadVector256(y + i), s0);
            s1 = Fma.MultiplyAdd(Avx.LoadVector256(x + i + 8), Avx.LoadVector256(y + i + 8), s1);
            s2 = Fma.MultiplyAdd(Avx.LoadVector256(x + i + 16), Avx.LoadVector256(y + i + 16), s2);
            s3 = Fma.MultiplyAdd(Avx.LoadVector256(x + i + 24), Avx.LoadVector256(y + i + 24), s3);
        }
        for (; i + 8 <= n; i += 8) s0 = Fma.MultiplyAdd(Avx.LoadVector256(x + i), Avx.LoadVector256(y + i), s0);
        float sum = Simd.HSum(Avx.Add(Avx.Add(s0, s1), Avx.Add(s2, s3)));
        for (; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx512(float* x, float* y, int n)
    {
        if (!Avx512F.IsSupported) return DotAvx2(x, y, n);
        var s0 = Vector512<float>.Zero; var s1 = Vector512<float>.Zero;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            s0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + i), Avx512F.LoadVector512(y + i), s0);
            s1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + i + 16), Avx512F.LoadVector512(y + i + 16), s1);
        }
        float sum = Simd.HSum(Avx512F.Add(s0, s1));
        if (i < n) sum += DotAvx2(x + i, y + i, n - i);
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAdvSimd(float* x, float* y, int n)
    {
        if (!AdvSimd.Arm64.IsSupported) return DotScalar(x, y, n);
        var s0 = Vector128<float>.Zero; var s1 = Vector128<float>.Zero;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            s0 = AdvSimd.FusedMultiplyAdd(s0, AdvSimd.LoadVector128(x + i), AdvSimd.LoadVector128(y + i));
            s1 = AdvSimd.FusedMultiplyAdd(s1, AdvSimd.LoadVector128(x + i + 4), AdvSimd.LoadVector128(y + i + 4));
        }
        float sum = Simd.HSum(AdvSimd.Add(s0, s1));
        for (; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    internal static void CopyActivation(float* x, byte* y, int n) => Buffer.MemoryCopy(x, y, (long)n * 4, (long)n * 4);
}

/// <summary>How one 16-bit float format converts: one value at a time as ggml does, and eight at a time.</summary>
public unsafe interface IHalfFormat
{
    static abstract float ToFloat(ushort bits);
    static abstract ushort FromFloat(float value);
    static abstract Vector256<float> Load8(ushort* p);
}

/// <summary>IEEE half.</summary>
public readonly unsafe struct F16Format : IHalfFormat
{
    public static float ToFloat(ushort bits) => Fp16.ToFloat(bits);
    public static ushort FromFloat(float value) => Fp16.FromFloat(value);
    public static Vector256<float> Load8(ushort* p) => Simd.LoadHalf8(p);
}

/// <summary>bfloat16.</summary>
public readonly unsafe struct BF16Format : IHalfFormat
{
    public static float ToFloat(ushort bits) => Fp16.BF16ToFloat(bits);
    public static ushort FromFloat(float value) => Fp16.FloatToBF16(value);
    public static Vector256<float> Load8(ushort* p) => Simd.LoadBF16x8(p);
}

/// <summary>
/// Rows of a 16-bit float format: conversions as ggml does them and the row dot, where ggml converts the activation
/// to the weight's own format first. One implementation for F16 and BF16, specialised by the JIT per format.
/// </summary>
public abstract unsafe class HalfRows<TFormat> where TFormat : struct, IHalfFormat
{
    private protected HalfRows() { }

    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var h = MemoryMarshal.Cast<byte, ushort>(dst);
        if (h.Length < src.Length) throw new ArgumentException("destination too short");
        for (int i = 0; i < src.Length; i++) h[i] = TFormat.FromFloat(src[i]);
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var h = MemoryMarshal.Cast<byte, ushort>(src);
        if (h.Length < dst.Length) throw new ArgumentException("source too short");
        for (int i = 0; i < dst.Length; i++) dst[i] = TFormat.ToFloat(h[i]);
    }

    internal static void QuantizeActivation(float* x, byte* y, int n)
    {
        var h = (ushort*)y;
        for (int i = 0; i < n; i++) h[i] = TFormat.FromFloat(x[i]);
    }

    public static float Dot(ReadOnlySpan<byte> x, ReadOnlySpan<byte> y)
    {
        if (y.Length < x.Length || x.Length % 2 != 0) throw new ArgumentException("row lengths do not match");
        fixed (byte* a = x)
        fixed (byte* b = y)
            return Dot(a, b, x.Length / 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(byte* x, byte* y, int n) => Kernels.UseAvx2 ? DotAvx2((ushort*)x, (ushort*)y, n) : DotScalar((ushort*)x, (ushort*)y, n);

    internal static float DotScalar(ushort* x, ushort* y, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += TFormat.ToFloat(x[i]) * TFormat.ToFloat(y[i]);
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx2(ushort* x, ushort* y, int n)
    {
        var s0 = Vector256<float>.Zero; var s1 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            s0 = Fma.MultiplyAdd(TFormat.Load8(x + i), TFormat.Load8(y + i), s0);
            s1 = Fma.MultiplyAdd(TFormat.Load8(x + i + 8), TFormat.Load8(y + i + 8), s1);
        }
        float sum = Simd.HSum(Avx.Add(s0, s1));
        for (; i < n; i++) sum += TFormat.ToFloat(x[i]) * TFormat.ToFloat(y[i]);
        return sum;
    }
}

/// <summary>F16 rows (IEEE half).</summary>
public sealed class F16 : HalfRows<F16Format>
{
    private F16() { }
}

/// <summary>BF16 rows (bfloat16).</summary>
public sealed class BF16 : HalfRows<BF16Format>
{
    private BF16() { }
}

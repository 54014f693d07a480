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

    /// <summary>The activation rounded to this format but held as f32 (see <see cref="DotRounded"/>).</summary>
    internal static void RoundActivation(float* x, byte* y, int n)
    {
        var f = (float*)y;
        for (int i = 0; i < n; i++) f[i] = TFormat.ToFloat(TFormat.FromFloat(x[i]));
    }

    /// <summary>
    /// The matrix products' dot: the same products and sums as <see cref="Dot(byte*, byte*, int)"/>, with the
    /// activation already converted back to f32 by <see cref="RoundActivation"/>, so only the weights are
    /// converted per row (without F16C, converting both sides cost most of the time).
    /// </summary>
    internal static float DotRounded(byte* x, byte* y, int n)
        => Kernels.UseAvx2 ? DotRoundedAvx2((ushort*)x, (float*)y, n) : DotRoundedScalar((ushort*)x, (float*)y, n);

    internal static float DotRoundedScalar(ushort* x, float* y, int n) => DotScalar<FloatActivation>(x, y, n);

    /// <summary>DotAvx2's loop (same lanes, same order) over f32 activations.</summary>
    internal static float DotRoundedAvx2(ushort* x, float* y, int n) => DotAvx2<FloatActivation>(x, y, n);

    /// <summary>
    /// One weight row against 4 rounded activation rows (<paramref name="aStride"/> bytes apart; results
    /// <paramref name="yStride"/> floats apart): each weight is converted once for the 4 rows, and each row runs
    /// <see cref="DotRoundedAvx2"/>'s arithmetic, so the results are bit-identical to it.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void DotRounded4Avx2(byte* w, byte* a, nint aStride, int n, float* y, nint yStride)
    {
        var x = (ushort*)w;
        float* a0 = (float*)a, a1 = (float*)(a + aStride), a2 = (float*)(a + 2 * aStride), a3 = (float*)(a + 3 * aStride);
        Vector256<float> s00 = default, s01 = default, s10 = default, s11 = default;
        Vector256<float> s20 = default, s21 = default, s30 = default, s31 = default;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            Vector256<float> w0 = TFormat.Load8(x + i), w1 = TFormat.Load8(x + i + 8);
            s00 = Fma.MultiplyAdd(w0, Avx.LoadVector256(a0 + i), s00); s01 = Fma.MultiplyAdd(w1, Avx.LoadVector256(a0 + i + 8), s01);
            s10 = Fma.MultiplyAdd(w0, Avx.LoadVector256(a1 + i), s10); s11 = Fma.MultiplyAdd(w1, Avx.LoadVector256(a1 + i + 8), s11);
            s20 = Fma.MultiplyAdd(w0, Avx.LoadVector256(a2 + i), s20); s21 = Fma.MultiplyAdd(w1, Avx.LoadVector256(a2 + i + 8), s21);
            s30 = Fma.MultiplyAdd(w0, Avx.LoadVector256(a3 + i), s30); s31 = Fma.MultiplyAdd(w1, Avx.LoadVector256(a3 + i + 8), s31);
        }
        y[0] = Finish<FloatActivation>(s00, s01, x, a0, i, n);
        y[yStride] = Finish<FloatActivation>(s10, s11, x, a1, i, n);
        y[2 * yStride] = Finish<FloatActivation>(s20, s21, x, a2, i, n);
        y[3 * yStride] = Finish<FloatActivation>(s30, s31, x, a3, i, n);
    }

    /// <summary>The two accumulators summed, then the scalar tail from <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Finish<TActivation>(Vector256<float> s0, Vector256<float> s1, ushort* x, void* y, int i, int n)
        where TActivation : struct, IActivationRow
    {
        float sum = Simd.HSum(Avx.Add(s0, s1));
        for (; i < n; i++) sum += TFormat.ToFloat(x[i]) * TActivation.At(y, i);
        return sum;
    }

    /// <summary>Σ x·y over n values: the reference for both activation forms.</summary>
    private static float DotScalar<TActivation>(ushort* x, void* y, int n) where TActivation : struct, IActivationRow
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += TFormat.ToFloat(x[i]) * TActivation.At(y, i);
        return sum;
    }

    /// <summary>Two 8-lane accumulators over 16 values per step, then <see cref="Finish{TActivation}"/>.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float DotAvx2<TActivation>(ushort* x, void* y, int n) where TActivation : struct, IActivationRow
    {
        var s0 = Vector256<float>.Zero; var s1 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            s0 = Fma.MultiplyAdd(TFormat.Load8(x + i), TActivation.Load8(y, i), s0);
            s1 = Fma.MultiplyAdd(TFormat.Load8(x + i + 8), TActivation.Load8(y, i + 8), s1);
        }
        return Finish<TActivation>(s0, s1, x, y, i, n);
    }

    /// <summary>An activation row in this format's own 16-bit encoding (what ggml's dot takes).</summary>
    private readonly struct HalfActivation : IActivationRow
    {
        public static Vector256<float> Load8(void* row, int i) => TFormat.Load8((ushort*)row + i);
        public static float At(void* row, int i) => TFormat.ToFloat(((ushort*)row)[i]);
    }

    /// <summary>An activation row already rounded to this format and held as f32 (<see cref="RoundActivation"/>).</summary>
    private readonly struct FloatActivation : IActivationRow
    {
        public static Vector256<float> Load8(void* row, int i) => Avx.LoadVector256((float*)row + i);
        public static float At(void* row, int i) => ((float*)row)[i];
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

    internal static float DotScalar(ushort* x, ushort* y, int n) => DotScalar<HalfActivation>(x, y, n);

    internal static float DotAvx2(ushort* x, ushort* y, int n) => DotAvx2<HalfActivation>(x, y, n);
}

/// <summary>How the 16-bit float dots read one activation row: 8 values as floats from index i, or one.</summary>
internal unsafe interface IActivationRow
{
    static abstract Vector256<float> Load8(void* row, int i);
    static abstract float At(void* row, int i);
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

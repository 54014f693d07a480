using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>F32 rows: dot products of two f32 rows (ggml pairs F32 weights with F32 activations).</summary>
public static unsafe class F32
{
    /// <summary>F32 as <see cref="QuantFormats"/> lists it: ggml pairs F32 weights with F32 activations.</summary>
    internal static QuantFormat Description => new(GgmlType.F32, 1, sizeof(float), &Quantize, &Dequantize,
        new TypeKernel { Activation = new ActivationForm { Type = GgmlType.F32, Quantize = &CopyActivation }, Dot = &Dot, DotOverRowQuads = &DotAsTinyBlas });

    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => MemoryMarshal.AsBytes(src).CopyTo(dst);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst) => MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);

    public static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        if (y.Length < x.Length) throw new ArgumentException("row lengths do not match");
        fixed (float* a = x)
        fixed (float* b = y)
            return Dot((byte*)a, (byte*)b, x.Length);
    }

    /// <summary>One row's dot as ggml's vector dot computes it (x86: its AVX2 build's order on AVX-512 too).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(byte* x, byte* y, int n)
    {
        if (Kernels.UseAvx2) return DotAvx2((float*)x, (float*)y, n);
        if (Kernels.UseAdvSimd) return DotAdvSimd((float*)x, (float*)y, n);
        return DotScalar((float*)x, (float*)y, n);
    }

    /// <summary>
    /// The row dot over a matrix of a multiple of 4 rows, on x86 where the length is a multiple of 8: as llama.cpp's
    /// tinyBLAS sums it (one 8-lane fused accumulator, then hsum_float_8's order). ggml hands a product of two or
    /// more activation rows over such a matrix to tinyBLAS and one row to its vector dot (<see cref="Dot(byte*, byte*, int)"/>);
    /// ours uses this order for one row too, so that a row's bits never depend on the batch it is in, and a prompt's
    /// logits are llama.cpp's.
    /// </summary>
    internal static float DotAsTinyBlas(byte* x, byte* y, int n)
    {
        if (!Kernels.UseAvx2 || n % 8 != 0) return Dot(x, y, n);
        float* a = (float*)x, b = (float*)y;
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < n; i += 8)
        {
            if ((i & 31) == 0) X86Simd.PrefetchWeights((byte*)(a + i), 32 * sizeof(float));
            acc = Fma.MultiplyAdd(Avx.LoadVector256(a + i), Avx.LoadVector256(b + i), acc);
        }
        return X86Simd.HSum(acc);
    }

    internal static float DotScalar(float* x, float* y, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    /// <summary>
    /// ggml_vec_dot_f32's AVX2 order: four 8-lane fused accumulators over steps of 32, reduced as
    /// (s0 + s2) + (s1 + s3), the two halves added and summed by two horizontal adds; the rest after the last
    /// whole step added one product at a time (not fused: llama.cpp's build rounds each product).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx2(float* x, float* y, int n)
    {
        var s0 = Vector256<float>.Zero; var s1 = Vector256<float>.Zero;
        var s2 = Vector256<float>.Zero; var s3 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            X86Simd.PrefetchWeights((byte*)(x + i), 32 * sizeof(float));
            s0 = Fma.MultiplyAdd(Avx.LoadVector256(x + i), Avx.LoadVector256(y + i), s0);
            s1 = Fma.MultiplyAdd(Avx.LoadVector256(x + i + 8), Avx.LoadVector256(y + i + 8), s1);
            s2 = Fma.MultiplyAdd(Avx.LoadVector256(x + i + 16), Avx.LoadVector256(y + i + 16), s2);
            s3 = Fma.MultiplyAdd(Avx.LoadVector256(x + i + 24), Avx.LoadVector256(y + i + 24), s3);
        }
        var s = Avx.Add(Avx.Add(s0, s2), Avx.Add(s1, s3));
        var t0 = Sse.Add(s.GetLower(), s.GetUpper());
        var t1 = Sse3.HorizontalAdd(t0, t0);
        float sum = Sse3.HorizontalAdd(t1, t1).ToScalar();
        for (; i < n; i++)
        {
            float product = x[i] * y[i];
            sum += product;
        }
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
        float sum = ArmSimd.HSum(AdvSimd.Add(s0, s1));
        for (; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    internal static void CopyActivation(float* x, byte* y, int n) => Buffer.MemoryCopy(x, y, (long)n * 4, (long)n * 4);
}

/// <summary>
/// How one 16-bit float format converts: one value at a time as ggml does, eight at a time, and sixteen at a time in
/// the matrix kernels' own form.
/// </summary>
public unsafe interface IHalfFormat
{
    static abstract float ToFloat(ushort bits);
    static abstract ushort FromFloat(float value);
    static abstract Vector256<float> Load8(ushort* p);

    /// <summary>The power of two that the matrix kernels' activation carries (see <see cref="HalfRows{TFormat}.RoundActivation"/>).</summary>
    static abstract float ActivationScale { get; }

    /// <summary>
    /// 16 values at p for the matrix kernels: the even-indexed ones, then the odd ones, each exactly divided by
    /// <see cref="ActivationScale"/>. Where that form cannot carry infinity and NaN, <paramref name="magnitudes"/>
    /// keeps a lane-wise maximum for <see cref="AnyNonFinite"/>.
    /// </summary>
    static abstract void LoadScaled16(ushort* p, out Vector256<float> even, out Vector256<float> odd, ref Vector256<ushort> magnitudes);

    /// <summary>True when <see cref="LoadScaled16"/> met an infinity or a NaN it could not carry.</summary>
    static abstract bool AnyNonFinite(Vector256<ushort> magnitudes);

    /// <summary>
    /// <see cref="LoadScaled16"/> on ARM64, 8 values at p: the even-indexed ones, then the odd ones (4 each).
    /// </summary>
    static abstract void LoadScaled8(ushort* p, out Vector128<float> even, out Vector128<float> odd, ref Vector128<ushort> magnitudes);

    /// <summary>8 floats (no NaN) rounded to this format as <see cref="FromFloat"/> does, back to f32, times <see cref="ActivationScale"/>.</summary>
    static abstract Vector256<float> RoundScaled8(Vector256<float> x);
}

/// <summary>IEEE half.</summary>
public readonly unsafe struct F16Format : IHalfFormat
{
    /// <summary>2^112, the gap between the float and half exponent biases.</summary>
    internal const float TwoTo112 = 5.192296858534828E+33f;

    public static float ToFloat(ushort bits) => Fp16.ToFloat(bits);
    public static ushort FromFloat(float value) => Fp16.FromFloat(value);
    public static Vector256<float> Load8(ushort* p) => X86Simd.LoadHalf8(p);
    public static float ActivationScale => TwoTo112;

    /// <summary>
    /// Each half's bits moved into float position without re-biasing the exponent, so half h reads as h / 2^112:
    /// exact for normals and subnormals alike (a subnormal half becomes a subnormal float, which FMA multiplies
    /// exactly), in five operations for 16 values where a full conversion takes eight for 8 (there is no F16C in
    /// .NET). The 2^112 goes into the activation instead. An exponent of 31 would read as a finite number, so the
    /// magnitudes (bits shifted left by one, dropping the sign) are kept for <see cref="AnyNonFinite"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScaled16(ushort* p, out Vector256<float> even, out Vector256<float> odd, ref Vector256<ushort> magnitudes)
    {
        var pairs = Avx.LoadVector256((int*)p);
        var signExponentMantissa = Vector256.Create(unchecked((int)0x8FFFE000)); // drops the sign's copies and the other half
        even = (Avx2.ShiftRightArithmetic(Avx2.ShiftLeftLogical(pairs, 16), 3) & signExponentMantissa).AsSingle();
        odd = (Avx2.ShiftRightArithmetic(pairs, 3) & signExponentMantissa).AsSingle();
        magnitudes = Avx2.Max(magnitudes, Avx2.Add(pairs.AsUInt16(), pairs.AsUInt16()));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNonFinite(Vector256<ushort> magnitudes) => Vector256.GreaterThanOrEqualAny(magnitudes, Vector256.Create((ushort)0xF800));

    /// <summary><see cref="LoadScaled16"/>'s bit move with AdvSimd; an exponent of 31 leaves a magnitude of 0xF800 or more.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScaled8(ushort* p, out Vector128<float> even, out Vector128<float> odd, ref Vector128<ushort> magnitudes)
    {
        var pairs = AdvSimd.LoadVector128((int*)p);
        var signExponentMantissa = Vector128.Create(unchecked((int)0x8FFFE000));
        even = AdvSimd.And((pairs << 16) >> 3, signExponentMantissa).AsSingle();
        odd = AdvSimd.And(pairs >> 3, signExponentMantissa).AsSingle();
        magnitudes = AdvSimd.Max(magnitudes, AdvSimd.Add(pairs.AsUInt16(), pairs.AsUInt16()));
    }

    /// <summary>
    /// <see cref="Fp16.FromFloat"/>'s steps lane by lane (the same bits for every non-NaN input), then the half back
    /// to float by the bit move and two exact multiplies by 2^112 (an infinity overflows to infinity again).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> RoundScaled8(Vector256<float> x)
    {
        var scaleToInf = Vector256.Create(0x77800000u).AsSingle();
        var scaleToZero = Vector256.Create(0x08800000u).AsSingle();
        var based = Avx.Multiply(Avx.Multiply(Avx.AndNot(Vector256.Create(-0f), x), scaleToInf), scaleToZero);
        var w = x.AsUInt32();
        var shl1W = Avx2.Add(w, w);
        var bias = Avx2.Max(shl1W & Vector256.Create(0xFF000000u), Vector256.Create(0x71000000u));
        based = Avx.Add(Avx2.Add(Avx2.ShiftRightLogical(bias, 1), Vector256.Create(0x07800000u)).AsSingle(), based);
        var bits = based.AsUInt32();
        var magnitude = Avx2.Add(Avx2.ShiftRightLogical(bits, 13) & Vector256.Create(0x7C00u), bits & Vector256.Create(0xFFFu));
        var half = Avx2.ShiftRightLogical(w & Vector256.Create(0x80000000u), 16) | magnitude;
        var moved = Avx2.ShiftRightArithmetic(Avx2.ShiftLeftLogical(half.AsInt32(), 16), 3) & Vector256.Create(unchecked((int)0x8FFFE000));
        var twoTo112 = Vector256.Create(TwoTo112);
        return Avx.Multiply(Avx.Multiply(moved.AsSingle(), twoTo112), twoTo112);
    }
}

/// <summary>bfloat16.</summary>
public readonly unsafe struct BF16Format : IHalfFormat
{
    public static float ToFloat(ushort bits) => Fp16.BF16ToFloat(bits);
    public static ushort FromFloat(float value) => Fp16.FloatToBF16(value);
    public static Vector256<float> Load8(ushort* p) => X86Simd.LoadBF16x8(p);
    public static float ActivationScale => 1f;

    /// <summary>A bfloat16 is the top half of its float: one shift or one mask per 8 values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScaled16(ushort* p, out Vector256<float> even, out Vector256<float> odd, ref Vector256<ushort> magnitudes)
    {
        var pairs = Avx.LoadVector256((int*)p);
        even = Avx2.ShiftLeftLogical(pairs, 16).AsSingle();
        odd = (pairs & Vector256.Create(unchecked((int)0xFFFF0000))).AsSingle();
    }

    public static bool AnyNonFinite(Vector256<ushort> magnitudes) => false;

    /// <summary><see cref="LoadScaled16"/>'s shift and mask with AdvSimd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadScaled8(ushort* p, out Vector128<float> even, out Vector128<float> odd, ref Vector128<ushort> magnitudes)
    {
        var pairs = AdvSimd.LoadVector128((int*)p);
        even = (pairs << 16).AsSingle();
        odd = AdvSimd.And(pairs, Vector128.Create(unchecked((int)0xFFFF0000))).AsSingle();
    }

    /// <summary><see cref="Fp16.FloatToBF16"/>'s rounding (to nearest even) lane by lane, for non-NaN inputs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> RoundScaled8(Vector256<float> x)
    {
        var u = x.AsUInt32();
        var rounded = Avx2.Add(u, Avx2.Add(Vector256.Create(0x7FFFu), Avx2.ShiftRightLogical(u, 16) & Vector256.Create(1u)));
        return (rounded & Vector256.Create(0xFFFF0000u)).AsSingle();
    }
}

/// <summary>
/// Rows of a 16-bit float format: conversions as ggml does them and the row dot, where ggml converts the activation
/// to the weight's own format first. One implementation for F16 and BF16, specialised by the JIT per format.
/// </summary>
public abstract unsafe class HalfRows<TFormat> where TFormat : struct, IHalfFormat
{
    private protected HalfRows() { }

    /// <summary>
    /// The format as <see cref="QuantFormats"/> lists it. ggml converts the activation to the weight's format; ours
    /// holds those rounded values as f32 (<see cref="RoundActivation"/>).
    /// </summary>
    private protected static QuantFormat Describe(GgmlType type) => new(type, 1, sizeof(ushort), &Quantize, &Dequantize,
        new TypeKernel
        {
            Activation = new ActivationForm { Type = type, Quantize = &RoundActivation, AsFloats = true },
            Dot = &DotRounded, Dot4Avx2 = &DotRounded4Avx2,
        });

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

    /// <summary>
    /// The matrix kernels' activation (<see cref="DotRounded"/>): the numbers ggml's dot sees, each value rounded to
    /// this format, but held as f32 so that only the weights are converted per row, times the format's
    /// <see cref="IHalfFormat.ActivationScale"/> (a power of two, and a half times 2^112 stays below float's
    /// maximum, so nothing is rounded), and in every full group of 16 the even-indexed values first, then the odd
    /// ones: the order in which <see cref="IHalfFormat.LoadScaled16"/> reads the weights. The tail stays in order.
    /// </summary>
    internal static void RoundActivation(float* x, byte* y, int n)
    {
        var f = (float*)y;
        int i = 0;
        if (Kernels.UseAvx2)
        {
            for (; i + 16 <= n; i += 16)
            {
                Vector256<float> v0 = Avx.LoadVector256(x + i), v1 = Avx.LoadVector256(x + i + 8);
                if (Vector256.EqualsAll(Avx.CompareOrdered(v0, v1).AsInt32(), Vector256<int>.AllBitsSet))
                {
                    Vector256<float> r0 = TFormat.RoundScaled8(v0), r1 = TFormat.RoundScaled8(v1);
                    // Even values then odd ones, in order (shuffles work within 128-bit halves; the 64-bit permute restores order).
                    Avx.Store(f + i, Avx2.Permute4x64(Avx.Shuffle(r0, r1, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle());
                    Avx.Store(f + i + 8, Avx2.Permute4x64(Avx.Shuffle(r0, r1, 0b11_01_11_01).AsDouble(), 0b11_01_10_00).AsSingle());
                }
                else
                {
                    // A NaN keeps the reference's exact bits.
                    for (int k = i; k < i + 16; k++) f[ActivationSlot(k, n)] = RoundScalar(x[k]);
                }
            }
        }
        for (; i < n; i++) f[ActivationSlot(i, n)] = RoundScalar(x[i]);
    }

    private static float RoundScalar(float x) => TFormat.ToFloat(TFormat.FromFloat(x)) * TFormat.ActivationScale;

    /// <summary>Where value <paramref name="i"/> of an n-value row sits in <see cref="RoundActivation"/>'s layout.</summary>
    internal static int ActivationSlot(int i, int n) => i >= (n & ~15) ? i : (i & ~15) + (i & 1) * 8 + ((i & 15) >> 1);

    /// <summary>The matrix products' dot, over an activation from <see cref="RoundActivation"/>.</summary>
    internal static float DotRounded(byte* x, byte* y, int n)
        => Kernels.UseAvx2 ? DotRoundedAvx2((ushort*)x, (float*)y, n)
            : Kernels.UseAdvSimd ? DotRoundedAdvSimd((ushort*)x, (float*)y, n)
            : DotRoundedScalar((ushort*)x, (float*)y, n);

    /// <summary>The reference: Σ x·y in order over the activation's true values.</summary>
    internal static float DotRoundedScalar(ushort* x, float* y, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += TFormat.ToFloat(x[i]) * (y[ActivationSlot(i, n)] / TFormat.ActivationScale);
        return sum;
    }

    /// <summary>
    /// Two 8-lane accumulators (even and odd values) over 16 values per step, then the tail. The products equal
    /// the unscaled ones exactly, so the result does not depend on the scale. Rows holding an infinity or a NaN,
    /// which the scaled form cannot carry, go to the reference instead.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotRoundedAvx2(ushort* x, float* y, int n)
    {
        Vector256<float> s0 = default, s1 = default;
        Vector256<ushort> magnitudes = default;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            if ((i & 16) == 0) X86Simd.PrefetchWeights((byte*)(x + i), 64); // one request per 64 bytes: every other step
            TFormat.LoadScaled16(x + i, out var even, out var odd, ref magnitudes);
            s0 = Fma.MultiplyAdd(even, Avx.LoadVector256(y + i), s0);
            s1 = Fma.MultiplyAdd(odd, Avx.LoadVector256(y + i + 8), s1);
        }
        if (TFormat.AnyNonFinite(magnitudes)) return DotRoundedScalar(x, y, n);
        return Finish(s0, s1, x, y, i, n);
    }

    /// <summary>
    /// <see cref="DotRoundedAvx2"/> on ARM64: per 16 values, two 8-value loads whose even values meet the activation's
    /// first 8 and whose odd values meet its last 8, in four accumulators.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotRoundedAdvSimd(ushort* x, float* y, int n)
    {
        if (!AdvSimd.Arm64.IsSupported) return DotRoundedScalar(x, y, n);
        Vector128<float> s0 = default, s1 = default, s2 = default, s3 = default;
        Vector128<ushort> magnitudes = default;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            TFormat.LoadScaled8(x + i, out var even0, out var odd0, ref magnitudes);
            TFormat.LoadScaled8(x + i + 8, out var even1, out var odd1, ref magnitudes);
            s0 = AdvSimd.FusedMultiplyAdd(s0, even0, AdvSimd.LoadVector128(y + i));
            s1 = AdvSimd.FusedMultiplyAdd(s1, even1, AdvSimd.LoadVector128(y + i + 4));
            s2 = AdvSimd.FusedMultiplyAdd(s2, odd0, AdvSimd.LoadVector128(y + i + 8));
            s3 = AdvSimd.FusedMultiplyAdd(s3, odd1, AdvSimd.LoadVector128(y + i + 12));
        }
        // F16's test, as in AnyNonFinite; BF16 leaves the magnitudes at zero, its form carrying infinity and NaN.
        if (Vector128.GreaterThanOrEqualAny(magnitudes, Vector128.Create((ushort)0xF800))) return DotRoundedScalar(x, y, n);
        float sum = Vector128.Sum(AdvSimd.Add(AdvSimd.Add(s0, s1), AdvSimd.Add(s2, s3)));
        for (; i < n; i++) sum += TFormat.ToFloat(x[i]) * (y[i] / TFormat.ActivationScale);
        return sum;
    }

    /// <summary>
    /// One weight row against 4 activation rows (<paramref name="aStride"/> bytes apart; results
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
        Vector256<ushort> magnitudes = default;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            TFormat.LoadScaled16(x + i, out var w0, out var w1, ref magnitudes);
            s00 = Fma.MultiplyAdd(w0, Avx.LoadVector256(a0 + i), s00); s01 = Fma.MultiplyAdd(w1, Avx.LoadVector256(a0 + i + 8), s01);
            s10 = Fma.MultiplyAdd(w0, Avx.LoadVector256(a1 + i), s10); s11 = Fma.MultiplyAdd(w1, Avx.LoadVector256(a1 + i + 8), s11);
            s20 = Fma.MultiplyAdd(w0, Avx.LoadVector256(a2 + i), s20); s21 = Fma.MultiplyAdd(w1, Avx.LoadVector256(a2 + i + 8), s21);
            s30 = Fma.MultiplyAdd(w0, Avx.LoadVector256(a3 + i), s30); s31 = Fma.MultiplyAdd(w1, Avx.LoadVector256(a3 + i + 8), s31);
        }
        if (TFormat.AnyNonFinite(magnitudes))
        {
            y[0] = DotRoundedScalar(x, a0, n); y[yStride] = DotRoundedScalar(x, a1, n);
            y[2 * yStride] = DotRoundedScalar(x, a2, n); y[3 * yStride] = DotRoundedScalar(x, a3, n);
            return;
        }
        y[0] = Finish(s00, s01, x, a0, i, n);
        y[yStride] = Finish(s10, s11, x, a1, i, n);
        y[2 * yStride] = Finish(s20, s21, x, a2, i, n);
        y[3 * yStride] = Finish(s30, s31, x, a3, i, n);
    }

    /// <summary>The two accumulators summed, then the tail (in order) from <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Finish(Vector256<float> s0, Vector256<float> s1, ushort* x, float* y, int i, int n)
    {
        float sum = X86Simd.HSum(Avx.Add(s0, s1));
        for (; i < n; i++) sum += TFormat.ToFloat(x[i]) * (y[i] / TFormat.ActivationScale);
        return sum;
    }

    public static float Dot(ReadOnlySpan<byte> x, ReadOnlySpan<byte> y)
    {
        if (y.Length < x.Length || x.Length % 2 != 0) throw new ArgumentException("row lengths do not match");
        fixed (byte* a = x)
        fixed (byte* b = y)
            return Dot(a, b, x.Length / 2);
    }

    /// <summary>ggml's dot: both rows in this format, both converted.</summary>
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
        float sum = X86Simd.HSum(Avx.Add(s0, s1));
        for (; i < n; i++) sum += TFormat.ToFloat(x[i]) * TFormat.ToFloat(y[i]);
        return sum;
    }
}

/// <summary>F16 rows (IEEE half).</summary>
public sealed class F16 : HalfRows<F16Format>
{
    private F16() { }

    internal static QuantFormat Description => Describe(GgmlType.F16);
}

/// <summary>BF16 rows (bfloat16).</summary>
public sealed class BF16 : HalfRows<BF16Format>
{
    private BF16() { }

    internal static QuantFormat Description => Describe(GgmlType.BF16);
}

using System.Runtime.Intrinsics.X86;
using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Bench;

/// <summary>
/// `simdcheck`: the kernel-path tests as a console check, for machines where the test suite cannot run
/// (e.g. an AVX-512 host without the SDK): every supported path against scalar, the best path against
/// llama.cpp's vec_dot, and MatMat against MatVec bit for bit. Exit code 1 on any failure.
/// </summary>
internal static unsafe class SimdCheck
{
    private static int _failures, _checks;

    public static int Run()
    {
        Console.WriteLine($"paths: {string.Join(", ", Kernels.Supported)}; best {Kernels.Best}; Avx512F {Avx512F.IsSupported}, Avx512BW {Avx512BW.IsSupported}, AvxVnni {AvxVnni.IsSupported}");
        GgmlType[] types = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
            GgmlType.Q8_0, GgmlType.Q8_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];
        foreach (var type in types)
        {
            var kernel = QuantKernels.Get(type);
            int bs = GgmlTypeInfo.BlockSize(type);
            int[] lengths = bs == 1 ? [1, 7, 15, 16, 31, 33, 100, 1001, 4096] : bs == 32 ? [32, 64, 96, 160, 288, 1056, 4096] : [256, 512, 768, 4096];
            foreach (int n in lengths)
            {
                for (int seed = 0; seed < 3; seed++)
                {
                    var w = new byte[GgmlTypeInfo.RowBytes(type, n)];
                    Quantizer.QuantizeRow(type, Data.Random(n, 10 + seed), w);
                    var x = Data.Random(n, 20 + seed);
                    float scalar = Dot(KernelPath.Scalar, kernel, w, x, out var scalarAct);
                    foreach (var path in Kernels.Supported)
                    {
                        float r = Dot(path, kernel, w, x, out var act);
                        Check(act.AsSpan().SequenceEqual(scalarAct), $"{type} n={n} {path}: activation bytes differ from scalar");
                        double tol = Tolerance(type, kernel.ActivationType, w, act, n);
                        Check(Math.Abs(r - scalar) <= tol, $"{type} n={n} {path}: {r:R} vs scalar {scalar:R} (tol {tol:R})");
                        if (type != GgmlType.Q8_1 && path == Kernels.Best)
                        {
                            var ggmlAct = type == GgmlType.F32 ? act : GgmlNative.FromFloatCpu(GgmlNative.VecDotType(type), x);
                            Check(ggmlAct.AsSpan().SequenceEqual(act), $"{type} n={n}: activation differs from ggml from_float");
                            float g = GgmlNative.VecDot(type, n, w, ggmlAct);
                            Check(Math.Abs(r - g) <= tol, $"{type} n={n} {path}: {r:R} vs ggml {g:R} (tol {tol:R})");
                        }
                    }
                }
            }
            // MatMat == MatVec bit for bit on every path, threaded.
            const int rows = 70, n2 = 9;
            int cols = bs == 256 ? 512 : 320;
            var wm = new byte[GgmlTypeInfo.RowBytes(type, cols) * rows];
            Quantizer.QuantizeRow(type, Data.Random(rows * cols, 3), wm);
            var xm = Data.Random(n2 * cols, 4);
            foreach (var path in Kernels.Supported)
            {
                Kernels.SetPathForChecks(path);
                var y = new float[n2 * rows];
                fixed (byte* wp = wm)
                {
                    MatMul.MatMat(type, wp, rows, cols, xm, n2, y);
                    for (int i = 0; i < n2; i++)
                    {
                        var yi = new float[rows];
                        MatMul.MatVec(type, wp, rows, cols, xm.AsSpan(i * cols, cols), yi);
                        Check(yi.AsSpan().SequenceEqual(y.AsSpan(i * rows, rows)), $"{type} {path}: MatMat row {i} differs from MatVec");
                    }
                }
            }
            Kernels.SetPathForChecks(Kernels.Best);
            Console.WriteLine($"{type,-5} checked");
        }
        Console.WriteLine(_failures == 0 ? $"PASS: {_checks} checks" : $"FAIL: {_failures} of {_checks} checks");
        return _failures == 0 ? 0 : 1;
    }

    private static void Check(bool ok, string what)
    {
        _checks++;
        if (ok) return;
        if (++_failures <= 40) Console.WriteLine("FAIL " + what);
    }

    private static float Dot(KernelPath path, TypeKernel kernel, byte[] w, float[] x, out byte[] act)
    {
        Kernels.SetPathForChecks(path);
        try
        {
            act = new byte[GgmlTypeInfo.RowBytes(kernel.ActivationType, x.Length)];
            fixed (float* xp = x)
            fixed (byte* ap = act)
            fixed (byte* wp = w)
            {
                kernel.QuantizeActivation(xp, ap, x.Length);
                return kernel.Dot(wp, ap, x.Length);
            }
        }
        finally
        {
            Kernels.SetPathForChecks(Kernels.Best);
        }
    }

    private static double Tolerance(GgmlType type, GgmlType partner, byte[] w, byte[] a, int n)
    {
        var wf = new float[n];
        var af = new float[n];
        Dequantizer.DequantizeRow(type, w, wf);
        Dequantizer.DequantizeRow(partner, a, af);
        double s = 0;
        for (int i = 0; i < n; i++) s += Math.Abs((double)wf[i] * af[i]);
        if (type is GgmlType.Q4_1 or GgmlType.Q5_1)
            for (int b = 0; b < n / 32; b++)
                s += Math.Abs(Fp16.ToFloat(BitConverter.ToUInt16(w, b * GgmlTypeInfo.TypeSize(type) + 2)) * Fp16.ToFloat(BitConverter.ToUInt16(a, b * 36 + 2)));
        if (GgmlTypeInfo.BlockSize(type) == 256) s *= 4; // k-quant sub-block scales add rounding steps
        int additions = GgmlTypeInfo.BlockSize(type) == 1 ? n / 8 : n / 32;
        return (additions + 16) * Math.Pow(2, -23) * s + 1e-30;
    }
}

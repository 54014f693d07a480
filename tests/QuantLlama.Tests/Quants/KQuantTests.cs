using System.Runtime.CompilerServices;
using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>The k-quants on their own: layouts, SIMD kernels against the scalar reference, round-trip accuracy.</summary>
/// <remarks>
/// In the non-parallel collection: its SIMD-against-scalar tests switch the process-wide <see cref="Kernels.Path"/>,
/// which would otherwise leak into model tests running beside them (a greedy run half on the scalar F32 dot no
/// longer equals its twin to the bit).
/// </remarks>
[Collection("KernelSettings")]
public class KQuantTests
{
    public static TheoryData<GgmlType> WeightTypes => KQuantDifferentialTests.WeightTypes;

    public static TheoryData<GgmlType, KernelPath> WeightTypesAndSimdKernels()
    {
        var data = new TheoryData<GgmlType, KernelPath>();
        foreach (GgmlType type in new[] { GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K })
            foreach (var kernel in new[] { KernelPath.Avx2, KernelPath.Avx512, KernelPath.AdvSimd })
                data.Add(type, kernel);
        return data;
    }

    [Fact]
    public void BlockLayoutsHaveGgmlSizes()
    {
        Assert.Equal(GgmlTypeInfo.TypeSize(GgmlType.Q2_K), Unsafe.SizeOf<BlockQ2K>());
        Assert.Equal(GgmlTypeInfo.TypeSize(GgmlType.Q3_K), Unsafe.SizeOf<BlockQ3K>());
        Assert.Equal(GgmlTypeInfo.TypeSize(GgmlType.Q4_K), Unsafe.SizeOf<BlockQ4K>());
        Assert.Equal(GgmlTypeInfo.TypeSize(GgmlType.Q5_K), Unsafe.SizeOf<BlockQ5K>());
        Assert.Equal(GgmlTypeInfo.TypeSize(GgmlType.Q6_K), Unsafe.SizeOf<BlockQ6K>());
        Assert.Equal(GgmlTypeInfo.TypeSize(GgmlType.Q8_K), Unsafe.SizeOf<BlockQ8K>());
        Assert.Equal(Q2_K.BlockBytes, GgmlTypeInfo.TypeSize(GgmlType.Q2_K));
        Assert.Equal(Q3_K.BlockBytes, GgmlTypeInfo.TypeSize(GgmlType.Q3_K));
        Assert.Equal(Q4_K.BlockBytes, GgmlTypeInfo.TypeSize(GgmlType.Q4_K));
        Assert.Equal(Q5_K.BlockBytes, GgmlTypeInfo.TypeSize(GgmlType.Q5_K));
        Assert.Equal(Q6_K.BlockBytes, GgmlTypeInfo.TypeSize(GgmlType.Q6_K));
        Assert.Equal(Q8_K.BlockBytes, GgmlTypeInfo.TypeSize(GgmlType.Q8_K));
    }

    /// <summary>
    /// Every SIMD kernel against the scalar reference, on weights of random bytes (every quant, scale and min
    /// pattern, with finite fp16 super-scales) and realistic Q8_K activations, for odd and larger block counts.
    /// Integer parts are exact in both; only the float accumulation order differs, hence 1e-5 of Σ|w·a| (and none
    /// at all on AdvSimd).
    /// </summary>
    [Theory]
    [MemberData(nameof(WeightTypesAndSimdKernels))]
    public void SimdDotMatchesScalar(GgmlType type, KernelPath kernel)
    {
        Assert.SkipUnless(Kernels.IsSupported(kernel), $"this CPU cannot run the {kernel} kernels");
        var rng = new Random(7 * (int)type + (int)kernel);
        foreach (int blocks in new[] { 1, 2, 3, 7, 13, 33 })
        {
            int n = blocks * 256;
            byte[] weights = RandomWeightBlocks(rng, type, blocks);
            var q8 = new byte[blocks * Q8_K.BlockBytes];
            Q8_K.Quantize(KQuantTestRows.Gaussian(rng, n, 2f), q8);
            float scalar = KQuantTestRows.WithKernel(KernelPath.Scalar, () => KQuantFormats.Dot(type, weights, q8));
            float simd = KQuantTestRows.WithKernel(kernel, () => KQuantFormats.Dot(type, weights, q8));
            double magnitude = KQuantTestRows.MagnitudeSum(type, weights, q8, n);
            Assert.True(magnitude > 0);
            Assert.True(Math.Abs(simd - scalar) <= 1e-5 * magnitude,
                $"{type} {kernel} dot over {blocks} blocks: {simd:R} vs scalar {scalar:R} (magnitude {magnitude:G4})");
            // The AdvSimd dots keep the reference's per-block float steps and order: its result to the bit.
            if (kernel == KernelPath.AdvSimd) Assert.Equal(scalar, simd);
        }
    }

    /// <summary>The scalar dot equals the dot of the dequantized rows (up to float summation).</summary>
    [Theory]
    [MemberData(nameof(WeightTypes))]
    public void ScalarDotEqualsDotOfDequantizedRows(GgmlType type)
    {
        var rng = new Random(99 + (int)type);
        int n = 5 * 256;
        byte[] weights = RandomWeightBlocks(rng, type, 5);
        var q8 = new byte[5 * Q8_K.BlockBytes];
        Q8_K.Quantize(KQuantTestRows.Gaussian(rng, n, 1f), q8);
        var w = new float[n];
        var a = new float[n];
        KQuantFormats.Dequantize(type, weights, w);
        Q8_K.Dequantize(q8, a);
        double expected = 0;
        for (int i = 0; i < n; i++) expected += (double)w[i] * a[i];
        float actual = KQuantTestRows.WithKernel(KernelPath.Scalar, () => KQuantFormats.Dot(type, weights, q8));
        double magnitude = KQuantTestRows.MagnitudeSum(type, weights, q8, n);
        Assert.True(Math.Abs(actual - expected) <= 1e-5 * magnitude, $"{type}: {actual} vs {expected}");
    }

    /// <summary>
    /// Round-trip error of Gaussian data relative to its RMS. Bounds sit just above what ggml's quantizers achieve
    /// (measured on this data: Q2_K 0.296, Q3_K 0.150, Q4_K 0.071, Q5_K 0.036, Q6_K 0.018, Q8_K 0.0070).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q2_K, 0.32)]
    [InlineData(GgmlType.Q3_K, 0.165)]
    [InlineData(GgmlType.Q4_K, 0.078)]
    [InlineData(GgmlType.Q5_K, 0.040)]
    [InlineData(GgmlType.Q6_K, 0.020)]
    [InlineData(GgmlType.Q8_K, 0.0078)]
    public void RoundTripErrorIsWithinBounds(GgmlType type, double maxRelativeRmse)
    {
        var rng = new Random(5);
        float[] x = KQuantTestRows.Gaussian(rng, 64 * 256, 0.5f);
        var q = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
        Quantizer.QuantizeRow(type, x, q);
        var y = new float[x.Length];
        Dequantizer.DequantizeRow(type, q, y);
        double err = 0, sig = 0;
        for (int i = 0; i < x.Length; i++)
        {
            err += (x[i] - y[i]) * (double)(x[i] - y[i]);
            sig += x[i] * (double)x[i];
        }
        double relative = Math.Sqrt(err / sig);
        Assert.True(relative < maxRelativeRmse, $"{type}: relative RMSE {relative:F4} ≥ {maxRelativeRmse}");
        Assert.True(relative > maxRelativeRmse / 4, $"{type}: relative RMSE {relative:F4} is implausibly small");
    }

    [Theory]
    [MemberData(nameof(KQuantDifferentialTests.AllTypes), MemberType = typeof(KQuantDifferentialTests))]
    public void QuantizerAndDequantizerDispatchToTheKQuants(GgmlType type)
    {
        float[] x = KQuantTestRows.Gaussian(new Random(3), 512, 1f);
        var direct = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
        var dispatched = new byte[direct.Length];
        KQuantFormats.Quantize(type, x, direct);
        Quantizer.QuantizeRow(type, x, dispatched);
        Assert.Equal(direct, dispatched);
        var a = new float[x.Length];
        var b = new float[x.Length];
        KQuantFormats.Dequantize(type, direct, a);
        Dequantizer.DequantizeRow(type, direct, b);
        Assert.Equal(a, b);
    }

    [Fact]
    public void LengthsThatAreNotWholeBlocksAreRejected()
    {
        Assert.Throws<ArgumentException>(() => Q4_K.Quantize(new float[300], new byte[2 * Q4_K.BlockBytes]));
        Assert.Throws<ArgumentException>(() => Q6_K.Quantize(new float[512], new byte[Q6_K.BlockBytes]));
        Assert.Throws<ArgumentException>(() => Q5_K.Dequantize(new byte[Q5_K.BlockBytes], new float[512]));
        Assert.Throws<ArgumentException>(() => Q4_K.Dot(new byte[2 * Q4_K.BlockBytes], new byte[Q8_K.BlockBytes]));
        Assert.Throws<ArgumentException>(() => Q3_K.Dot(new byte[Q3_K.BlockBytes + 1], new byte[2 * Q8_K.BlockBytes]));
    }

    /// <summary>Random block bytes with each fp16 super-scale replaced by a finite value in ±[2^-14, 1).</summary>
    internal static byte[] RandomWeightBlocks(Random rng, GgmlType type, int blocks)
    {
        int size = GgmlTypeInfo.TypeSize(type);
        var bytes = new byte[blocks * size];
        rng.NextBytes(bytes);
        int[] halfOffsets = type switch
        {
            GgmlType.Q2_K => new[] { 80, 82 },
            GgmlType.Q3_K => new[] { 108 },
            GgmlType.Q4_K or GgmlType.Q5_K => new[] { 0, 2 },
            GgmlType.Q6_K => new[] { 208 },
            _ => throw new NotSupportedException(type.ToString()),
        };
        for (int b = 0; b < blocks; b++)
        {
            foreach (int o in halfOffsets)
            {
                var h = (Half)((rng.NextDouble() * 0.999 + 0.001) * (rng.Next(2) == 0 ? 1 : -1) * 0.01);
                BitConverter.TryWriteBytes(bytes.AsSpan(b * size + o), h);
            }
        }
        return bytes;
    }
}

/// <summary>Matrix products over k-quant weights: the MatMul dispatch against the row dot and llama.cpp.</summary>
[Collection("KernelSettings")]
public class KQuantMatMulTests
{
    public static TheoryData<GgmlType, KernelPath> WeightTypesOnEveryPath()
    {
        var data = new TheoryData<GgmlType, KernelPath>();
        foreach (GgmlType type in new[] { GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K })
            foreach (var path in Enum.GetValues<KernelPath>())
                data.Add(type, path);
        return data;
    }

    /// <summary>
    /// MatVec and MatMat (single- and multi-threaded sizes) give, for every output, exactly the public row dot with
    /// the activation quantized to Q8_K, on each kernel path, and agree with llama.cpp's vec_dot within the
    /// float-rounding tolerance.
    /// </summary>
    [Theory]
    [MemberData(nameof(WeightTypesOnEveryPath))]
    public void MatVecAndMatMatAreRowDotsWithQ8KActivations(GgmlType type, KernelPath path)
    {
        Assert.SkipUnless(Kernels.IsSupported(path), $"this CPU cannot run the {path} kernels");
        KQuantTestRows.WithKernel(path, () => { CheckProductsAgainstRowDots(type); return 0; });
    }

    private static unsafe void CheckProductsAgainstRowDots(GgmlType type)
    {
        foreach (var (rows, cols, n) in new[] { (37, 512, 1), (29, 768, 3), (256, 512, 4) })
        {
            var rng = new Random(rows + cols + (int)type);
            float[] wf = KQuantTestRows.Gaussian(rng, rows * cols, 0.05f);
            long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
            var w = new byte[rowBytes * rows];
            Quantizer.QuantizeRow(type, wf, w);
            float[] x = KQuantTestRows.Gaussian(rng, n * cols, 1f);
            var y = new float[n * rows];
            var yv = new float[rows];
            fixed (byte* wp = w) MatMul.MatMat(type, wp, rows, cols, x, n, y);
            for (int i = 0; i < n; i++)
            {
                var q8 = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_K, cols)];
                Q8_K.Quantize(x.AsSpan(i * cols, cols), q8);
                fixed (byte* wp = w) MatMul.MatVec(type, wp, rows, cols, x.AsSpan(i * cols, cols), yv);
                for (int r = 0; r < rows; r++)
                {
                    var wr = w.AsSpan((int)(r * rowBytes), (int)rowBytes);
                    float dot = KQuantFormats.Dot(type, wr.ToArray(), q8);
                    Assert.Equal(dot, y[i * rows + r]);
                    Assert.Equal(dot, yv[r]);
                    if (r % 50 == 0)
                    {
                        float expected = Oracle.GgmlNative.VecDot(type, cols, wr, q8);
                        double magnitude = KQuantTestRows.MagnitudeSum(type, wr.ToArray(), q8, cols);
                        Assert.True(Math.Abs(dot - expected) <= 1e-5 * magnitude + 1e-30, $"{type} row {r}: {dot:R} vs llama.cpp {expected:R}");
                    }
                }
            }
        }
    }
}

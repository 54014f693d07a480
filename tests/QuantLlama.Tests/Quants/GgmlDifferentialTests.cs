using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Our quantizers, dequantizers and dots against llama.cpp's ggml (LLamaSharp.Backend.Cpu 0.30.0: the AVX2 build on
/// x64, the ARM64 build on ARM64).
/// Quantized bytes and dequantized floats must be identical. Dots are compared on the same activation bytes
/// (ggml-cpu's own from_float output, which our activation quantizer must also reproduce byte for byte), so
/// both sides sum the same exact integer block products and differ only in the order of float additions:
/// the tolerance is the classic bound for that, (additions + 16) * 2^-23 * sum|terms|.
/// </summary>
public class GgmlDifferentialTests
{
    public static readonly TheoryData<GgmlType> QuantTypes = new()
    {
        GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0,
    };

    public static readonly TheoryData<GgmlType> WeightTypes = new()
    {
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0,
    };

    private static readonly int[] Lengths = [32, 96, 288, 2048];

    /// <summary>
    /// With a subnormal scale, 1/d is infinite and ggml's C quantizers convert an infinity or a NaN to an integer,
    /// which C leaves undefined: off x64, llama.cpp's bytes for those rows are its CPU's (see
    /// <see cref="GgmlNative.QuantizesLikeX64"/>), and are not compared.
    /// </summary>
    private static bool GgmlBytesDependOnTheCpu(string rowName) => rowName == "subnormal-scale" && !GgmlNative.QuantizesLikeX64;

    [Theory]
    [MemberData(nameof(QuantTypes))]
    public void QuantizedBytesAreIdenticalToGgmlQuantizeChunk(GgmlType type)
    {
        foreach (int n in Lengths)
        {
            foreach (var (name, row) in TestRows.All(n))
            {
                if (GgmlBytesDependOnTheCpu(name)) continue;
                var expected = GgmlNative.QuantizeChunk(type, row, n);
                var actual = new byte[expected.Length];
                Quantizer.QuantizeRow(type, row, actual);
                AssertBytes(expected, actual, $"{type} n={n} {name}");
            }
        }
        // Several rows in one call, as the model quantizer does it.
        var many = TestRows.Random(96 * 5, 77);
        var chunk = GgmlNative.QuantizeChunk(type, many, 96);
        var ours = new byte[chunk.Length];
        Quantizer.QuantizeRow(type, many, ours);
        AssertBytes(chunk, ours, $"{type} 5 rows");
    }

    [Fact]
    public void Q8_1ReferenceQuantizerIsIdenticalToGgml()
    {
        foreach (int n in Lengths)
        {
            foreach (var (name, row) in TestRows.All(n))
            {
                if (GgmlBytesDependOnTheCpu(name)) continue;
                var expected = GgmlNative.QuantizeRowRef(GgmlType.Q8_1, row);
                var actual = new byte[expected.Length];
                Quantizer.QuantizeRow(GgmlType.Q8_1, row, actual);
                AssertBytes(expected, actual, $"Q8_1 n={n} {name}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(QuantTypes))]
    public void DequantizedFloatsAreIdenticalToGgml(GgmlType type)
    {
        foreach (int n in Lengths)
        {
            foreach (var (name, row) in TestRows.All(n, seed: 11))
            {
                var bytes = GgmlNative.QuantizeChunk(type, row, n);
                var expected = GgmlNative.Dequantize(type, bytes, n);
                var actual = new float[n];
                Dequantizer.DequantizeRow(type, bytes, actual);
                AssertFloatsIdentical(expected, actual, $"{type} n={n} {name}");
            }
        }
        // Arbitrary bytes too: every nibble, bit and scale pattern, not only what the quantizer emits.
        var rng = new Random(5);
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, 256);
        for (int k = 0; k < 20; k++)
        {
            var bytes = new byte[rowBytes];
            rng.NextBytes(bytes);
            if (type is not (GgmlType.F16 or GgmlType.BF16)) ScrubScales(type, bytes);
            var expected = GgmlNative.Dequantize(type, bytes, 256);
            var actual = new float[256];
            Dequantizer.DequantizeRow(type, bytes, actual);
            AssertFloatsIdentical(expected, actual, $"{type} random bytes #{k}");
        }
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q8_1)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void ActivationQuantizerIsIdenticalToGgmlCpuFromFloat(GgmlType type)
    {
        foreach (int n in Lengths)
        {
            foreach (var (name, row) in TestRows.All(n, seed: 21))
            {
                if (GgmlBytesDependOnTheCpu(name)) continue;
                var expected = GgmlNative.FromFloatCpu(type, row);
                var actual = QuantizeActivation(type, row);
                AssertBytes(expected, actual, $"{type} activation n={n} {name}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(WeightTypes))]
    public void DotProductsMatchGgmlVecDot(GgmlType type)
    {
        var partner = GgmlNative.VecDotType(type);
        Assert.Equal(QuantKernelsPartner(type), partner);
        int[] lengths = type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 ? [32, 37, 96, 1000, 4096] : [32, 96, 288, 4096];
        int checkedDots = 0;
        foreach (int n in lengths)
        {
            var activations = TestRows.All(n, seed: 31).ToList();
            foreach (var (wName, wRow) in TestRows.All(n, seed: 41))
            {
                if (wName.Contains("beyond fp16") && type != GgmlType.F32) continue; // inf scales: inf-inf is NaN either way
                byte[] w = type == GgmlType.F32 ? ToBytes(wRow) : GgmlNative.QuantizeChunk(type, wRow, n);
                foreach (var (aName, aRow) in activations.Take(4))
                {
                    byte[] a = type == GgmlType.F32 ? ToBytes(aRow) : GgmlNative.FromFloatCpu(partner, aRow);
                    float expected = GgmlNative.VecDot(type, n, w, a);
                    double bound = DotTolerance(type, partner, w, a, n);
                    foreach (var path in Kernels.Supported)
                    {
                        float actual = DotOnPath(type, path, w, a, n);
                        Assert.True(Math.Abs(actual - expected) <= bound,
                            $"{type} n={n} w={wName} a={aName} {path}: ours {actual:R}, ggml {expected:R}, tolerance {bound:R}");
                        checkedDots++;
                    }
                }
            }
        }
        Assert.True(checkedDots > 100);
    }

    internal static GgmlType QuantKernelsPartner(GgmlType type) => QuantKernels.Get(type).ActivationType;

    /// <summary>(additions + 16) * 2^-23 * sum over blocks (or elements) of |term|.</summary>
    internal static double DotTolerance(GgmlType type, GgmlType partner, byte[] w, byte[] a, int n)
    {
        var wf = new float[n];
        var af = new float[n];
        Dequantizer.DequantizeRow(type, w, wf);
        Dequantizer.DequantizeRow(partner, a, af);
        double absSum = 0;
        for (int i = 0; i < n; i++) absSum += Math.Abs((double)wf[i] * af[i]);
        // Q4_1/Q5_1 also add m*s per block: bound it by |m| * |s| summed.
        if (type is GgmlType.Q4_1 or GgmlType.Q5_1)
        {
            int ts = GgmlTypeInfo.TypeSize(type);
            for (int b = 0; b < n / 32; b++)
                absSum += Math.Abs(Fp16.ToFloat(BitConverter.ToUInt16(w, b * ts + 2)) * Fp16.ToFloat(BitConverter.ToUInt16(a, b * 36 + 2)));
        }
        // TQ1_0/TQ2_0's SIMD dots sum digit × quant (digits 0-2) and take the activation's block sums off in other
        // lanes: the lanes reach |d| · Σ |activation| even where the weights are 0.
        if (type is GgmlType.TQ1_0 or GgmlType.TQ2_0)
        {
            int ts = GgmlTypeInfo.TypeSize(type);
            for (int i = 0; i < n; i++)
                absSum += 2 * Math.Abs(Fp16.ToFloat(BitConverter.ToUInt16(w, i / 256 * ts + ts - 2)) * af[i]);
        }
        int additions = GgmlTypeInfo.BlockSize(type) == 1 ? n / 8 : n / 32;
        return (additions + 16) * Math.Pow(2, -23) * absSum + 1e-38;
    }

    internal static unsafe float DotOnPath(GgmlType type, KernelPath path, byte[] w, byte[] a, int n)
    {
        fixed (byte* wp = w)
        fixed (byte* ap = a)
        {
            return (type, path) switch
            {
                (GgmlType.F32, KernelPath.Scalar) => F32.DotScalar((float*)wp, (float*)ap, n),
                (GgmlType.F32, KernelPath.Avx2 or KernelPath.Avx512) => F32.DotAvx2((float*)wp, (float*)ap, n),
                (GgmlType.F32, KernelPath.AdvSimd) => F32.DotAdvSimd((float*)wp, (float*)ap, n),
                (GgmlType.F16, KernelPath.Scalar or KernelPath.AdvSimd) => F16.DotScalar((ushort*)wp, (ushort*)ap, n),
                (GgmlType.F16, _) => F16.DotAvx2((ushort*)wp, (ushort*)ap, n),
                (GgmlType.BF16, KernelPath.Scalar or KernelPath.AdvSimd) => BF16.DotScalar((ushort*)wp, (ushort*)ap, n),
                (GgmlType.BF16, _) => BF16.DotAvx2((ushort*)wp, (ushort*)ap, n),
                (GgmlType.Q4_0, KernelPath.Scalar) => Q4_0.DotScalar(wp, ap, n),
                (GgmlType.Q4_0, KernelPath.Avx2 or KernelPath.Avx512) => Q4_0.DotAvx2(wp, ap, n),
                (GgmlType.Q4_0, KernelPath.AdvSimd) => Q4_0.DotAdvSimd(wp, ap, n),
                (GgmlType.Q8_0, KernelPath.Scalar) => Q8_0.DotScalar(wp, ap, n),
                (GgmlType.Q8_0, KernelPath.Avx2 or KernelPath.Avx512) => Q8_0.DotAvx2(wp, ap, n),
                (GgmlType.Q8_0, KernelPath.AdvSimd) => Q8_0.DotAdvSimd(wp, ap, n),
                (GgmlType.Q4_1, KernelPath.Scalar) => Q4_1.DotScalar(wp, ap, n),
                (GgmlType.Q4_1, KernelPath.AdvSimd) => Q4_1.DotAdvSimd(wp, ap, n),
                (GgmlType.Q4_1, _) => Q4_1.DotAvx2(wp, ap, n),
                (GgmlType.Q5_0, KernelPath.Scalar) => Q5_0.DotScalar(wp, ap, n),
                (GgmlType.Q5_0, KernelPath.AdvSimd) => Q5_0.DotAdvSimd(wp, ap, n),
                (GgmlType.Q5_0, _) => Q5_0.DotAvx2(wp, ap, n),
                (GgmlType.Q5_1, KernelPath.Scalar) => Q5_1.DotScalar(wp, ap, n),
                (GgmlType.Q5_1, KernelPath.AdvSimd) => Q5_1.DotAdvSimd(wp, ap, n),
                (GgmlType.Q5_1, _) => Q5_1.DotAvx2(wp, ap, n),
                _ => throw new NotSupportedException($"{type} on {path}"),
            };
        }
    }

    internal static byte[] QuantizeActivation(GgmlType type, float[] row)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, row.Length)];
        switch (type)
        {
            case GgmlType.Q8_0: Q8_0.QuantizeActivation(row, bytes); break;
            case GgmlType.Q8_1: Q8_1.QuantizeActivation(row, bytes); break;
            default: Quantizer.QuantizeRow(type, row, bytes); break;
        }
        return bytes;
    }

    private static byte[] ToBytes(float[] v)
    {
        var b = new byte[v.Length * 4];
        Buffer.BlockCopy(v, 0, b, 0, b.Length);
        return b;
    }

    /// <summary>Keeps fp16 scales finite (random bytes would make inf/NaN scales, where NaN payloads are moot).</summary>
    private static void ScrubScales(GgmlType type, byte[] bytes)
    {
        int ts = GgmlTypeInfo.TypeSize(type);
        int scales = type is GgmlType.Q4_1 or GgmlType.Q5_1 ? 2 : 1;
        for (int b = 0; b < bytes.Length / ts; b++)
            for (int s = 0; s < scales; s++)
                bytes[b * ts + 2 * s + 1] &= 0xBF; // top exponent bit clear: |scale| < 2, sign kept
    }

    internal static void AssertBytes(byte[] expected, byte[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (expected[i] != actual[i])
                Assert.Fail($"{what}: byte {i} is {actual[i]:X2}, ggml wrote {expected[i]:X2}");
    }

    internal static void AssertFloatsIdentical(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i])
                && !(float.IsNaN(expected[i]) && float.IsNaN(actual[i])))
                Assert.Fail($"{what}: value {i} is {actual[i]:R}, ggml gives {expected[i]:R}");
    }
}

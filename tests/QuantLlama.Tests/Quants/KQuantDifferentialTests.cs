using QuantLlama.Quants;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// The k-quants against llama.cpp's own ggml (LLamaSharp.Backend.Cpu 0.30.0): quantized bytes and dequantized
/// floats must be identical; dot products agree within a stated float-rounding tolerance.
/// </summary>
[Collection("KernelSettings")]
public class KQuantDifferentialTests
{
    public static TheoryData<GgmlType> WeightTypes => new() { GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K };

    public static TheoryData<GgmlType> AllTypes => new()
        { GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_K };

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void QuantizedBytesAndDequantizedFloatsMatchLlamaCpp(GgmlType type)
    {
        int rowIndex = 0;
        foreach (var (name, row) in KQuantTestRows.All())
        {
            byte[] expected = type == GgmlType.Q8_K ? GgmlNative.QuantizeRowQ8KRef(row) : GgmlNative.QuantizeChunk(type, row, row.Length);
            var actual = new byte[expected.Length];
            KQuantFormats.Quantize(type, row, actual);
            if (type == GgmlType.Q8_K) KQuantTestRows.ZeroUnwrittenQ8KSums(expected, actual);
            if (QuantizerBytesComparable(type))
                AssertBytesEqual(expected, actual, $"{type} quantize of row '{name}' (#{rowIndex})");

            float[] expectedValues = GgmlNative.Dequantize(type, expected, row.Length);
            var actualValues = new float[row.Length];
            KQuantFormats.Dequantize(type, expected, actualValues);
            for (int i = 0; i < row.Length; i++)
            {
                if (BitConverter.SingleToInt32Bits(expectedValues[i]) != BitConverter.SingleToInt32Bits(actualValues[i]))
                    Assert.Fail($"{type} dequantize of row '{name}': value {i} is {actualValues[i]:R}, llama.cpp gives {expectedValues[i]:R}");
            }
            rowIndex++;
        }
    }

    /// <summary>
    /// Many random blocks (scales from 1e-4 to 1e4, some with outliers, some half zero) so that rare rounding ties
    /// and scale-search branches are exercised: quantized bytes must still be identical.
    /// </summary>
    [Theory]
    [MemberData(nameof(AllTypes))]
    public void ManyRandomBlocksQuantizeToLlamaCppBytes(GgmlType type)
    {
        Assert.SkipUnless(QuantizerBytesComparable(type), "llama.cpp's k-quant quantizers fuse multiply-adds off x64");
        var rng = new Random(2024 + (int)type);
        for (int row = 0; row < 24; row++)
        {
            float[] x = KQuantTestRows.WithTiesAndOutliers(rng, 8 * 256, row);
            byte[] expected = type == GgmlType.Q8_K ? GgmlNative.QuantizeRowQ8KRef(x) : GgmlNative.QuantizeChunk(type, x, x.Length);
            var actual = new byte[expected.Length];
            KQuantFormats.Quantize(type, x, actual);
            if (type == GgmlType.Q8_K) KQuantTestRows.ZeroUnwrittenQ8KSums(expected, actual);
            AssertBytesEqual(expected, actual, $"{type} quantize of random row {row}");
        }
    }

    /// <summary>Q8_K has no scale search, so its bytes are the same from every llama.cpp build.</summary>
    private static bool QuantizerBytesComparable(GgmlType type) => type == GgmlType.Q8_K || GgmlNative.QuantizesLikeX64;

    [Fact]
    public void CpuBackendQ8KQuantizerIsTheReferenceOne()
    {
        foreach (var (name, row) in KQuantTestRows.All())
        {
            byte[] reference = GgmlNative.QuantizeRowQ8KRef(row);
            byte[] cpu = GgmlNative.FromFloatCpu(GgmlType.Q8_K, row);
            KQuantTestRows.ZeroUnwrittenQ8KSums(reference, cpu);
            AssertBytesEqual(reference, cpu, $"Q8_K of row '{name}'");
        }
    }

    /// <summary>
    /// Dot products agree within 1e-5 of Σ|w_i·a_i| (the dequantized magnitudes). Every integer part of both
    /// kernels is exact; they differ only in how the per-block float terms d·Σ(scale·q·q8) and dmin·Σ(min·bsum)
    /// are rounded and summed (llama.cpp's AVX2 kernel accumulates eight FMA lanes and adds the min terms
    /// separately), so the difference is a few float ulps of the magnitude sum per block.
    /// </summary>
    [Theory]
    [MemberData(nameof(WeightTypes))]
    public void DotProductsMatchLlamaCppVecDot(GgmlType type)
    {
        var rng = new Random(1234 + (int)type);
        foreach (var (name, row) in KQuantTestRows.All())
        {
            byte[] weights = GgmlNative.QuantizeChunk(type, row, row.Length);
            float[] activation = KQuantTestRows.Gaussian(rng, row.Length, 1f);
            byte[] q8 = GgmlNative.FromFloatCpu(GgmlType.Q8_K, activation);
            float expected = GgmlNative.VecDot(type, row.Length, weights, q8);
            double magnitude = KQuantTestRows.MagnitudeSum(type, weights, q8, row.Length);
            foreach (var kernel in Kernels.Supported)
            {
                float actual = KQuantTestRows.WithKernel(kernel, () => KQuantFormats.Dot(type, weights, q8));
                Assert.True(Math.Abs(actual - expected) <= 1e-5 * magnitude + 1e-30,
                    $"{type} dot ({kernel}) of row '{name}': {actual:R} vs llama.cpp {expected:R} (magnitude {magnitude:G4})");
            }
        }
    }

    internal static void AssertBytesEqual(byte[] expected, byte[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] != actual[i])
                Assert.Fail($"{what}: byte {i} is 0x{actual[i]:x2}, llama.cpp gives 0x{expected[i]:x2}");
        }
    }
}

using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// The IQ1_S and IQ1_M quantizers against ggml_quantize_chunk (llama.cpp inside LLamaSharp.Backend.Cpu 0.30.0):
/// the same bytes for the shared adversarial rows, rows with ties and outliers, and several importance vectors
/// (spread over orders of magnitude, uniform, with zero columns). IQ1_M also without importance (weights x²);
/// IQ1_S has no quantizer without one, where ggml asserts.
/// </summary>
public class IQ1QuantizerTests
{
    public static TheoryData<GgmlType> Types => new() { GgmlType.IQ1_S, GgmlType.IQ1_M };

    /// <summary>Named importance vectors of n columns.</summary>
    private static IEnumerable<(string Name, float[] Values)> Importances(int n, int seed)
    {
        var rng = new Random(seed);
        yield return ("spread", Enumerable.Range(0, n).Select(_ => MathF.Exp(3 * (float)(rng.NextDouble() * 2 - 1))).ToArray());
        yield return ("uniform", Enumerable.Repeat(1f, n).ToArray());
        // Every 5th column unimportant, and one whole block of 32 (a block whose weights are all zero is left empty).
        yield return ("zero columns", Enumerable.Range(0, n).Select(j => j % 5 == 0 || j / 32 == 1 ? 0f : 0.5f + j % 7).ToArray());
        yield return ("steps", Enumerable.Range(0, n).Select(j => 0.25f + j * 37 % 11 / 4f).ToArray());
    }

    private static IEnumerable<(string Name, float[] Row)> Rows(GgmlType type)
    {
        foreach (int n in new[] { 256, 512, 4096 })
            foreach (var (name, row) in TestRows.All(n, seed: n + (int)type))
                yield return ($"{name} n={n}", row);
        foreach (var (name, row) in KQuantTestRows.All())
            yield return (name, row);
        var rng = new Random(71 + (int)type);
        for (int r = 0; r < 12; r++)
            yield return ($"ties and outliers {r}", KQuantTestRows.WithTiesAndOutliers(rng, 4 * 256, r));
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void WeightedRowsAreIdenticalToGgmlQuantizeChunk(GgmlType type)
    {
        Assert.SkipUnless(GgmlNative.QuantizesLikeX64, "llama.cpp's ARM64 build fuses multiply-adds in the scale search");
        int compared = 0;
        foreach (var (name, row) in Rows(type))
        {
            foreach (var (weighting, importance) in Importances(row.Length, row.Length + name.Length))
            {
                var expected = GgmlNative.QuantizeChunk(type, row, row.Length, importance);
                var actual = new byte[expected.Length];
                Quantizer.QuantizeRowWeighted(type, row, actual, importance);
                GgmlDifferentialTests.AssertBytes(expected, actual, $"{type} {name}, {weighting} importance");
                compared++;
            }
        }
        Assert.True(compared > 100);
        ImportanceMatrixTests.AssertRowsSharingColumnsAreGgmls(type, TestRows.Random(512 * 6, 91), Importances(512, 5).First().Values);
    }

    [Fact]
    public void IQ1_MWithoutImportanceIsGgmlsToo()
    {
        Assert.SkipUnless(GgmlNative.QuantizesLikeX64, "llama.cpp's ARM64 build fuses multiply-adds in the scale search");
        foreach (var (name, row) in Rows(GgmlType.IQ1_M))
        {
            var expected = GgmlNative.QuantizeChunk(GgmlType.IQ1_M, row, row.Length);
            var actual = new byte[expected.Length];
            Quantizer.QuantizeRow(GgmlType.IQ1_M, row, actual);
            GgmlDifferentialTests.AssertBytes(expected, actual, $"IQ1_M {name}");
        }
        var importance = Importances(256, 3).First().Values;
        var random = TestRows.Random(256, 4);
        Assert.NotEqual(GgmlNative.QuantizeChunk(GgmlType.IQ1_M, random, 256), GgmlNative.QuantizeChunk(GgmlType.IQ1_M, random, 256, importance));
    }

    [Fact]
    public void IQ1_SNeedsAnImportanceMatrix()
    {
        Assert.False(Quantizer.IsSupported(GgmlType.IQ1_S));
        Assert.True(Quantizer.IsSupportedWithImportance(GgmlType.IQ1_S));
        var e = Assert.Throws<ArgumentException>(() => Quantizer.QuantizeRow(GgmlType.IQ1_S, new float[256], new byte[GgmlTypeInfo.RowBytes(GgmlType.IQ1_S, 256)]));
        Assert.Equal("quantizing to IQ1_S needs an importance matrix (ggml quantizes it only with one)", e.Message);
    }

    /// <summary>The quantized rows read back close to the originals: a sanity check beside the byte comparison.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void QuantizedRowsReadBackNearTheOriginal(GgmlType type)
    {
        var row = KQuantTestRows.Gaussian(new Random(8), 4096, 1f);
        var importance = Enumerable.Repeat(1f, row.Length).ToArray();
        var blocks = new byte[GgmlTypeInfo.RowBytes(type, row.Length)];
        Quantizer.QuantizeRowWeighted(type, row, blocks, importance);
        var back = new float[row.Length];
        Dequantizer.DequantizeRow(type, blocks, back);
        double error = 0, energy = 0;
        for (int i = 0; i < row.Length; i++)
        {
            error += (back[i] - row[i]) * (double)(back[i] - row[i]);
            energy += row[i] * (double)row[i];
        }
        // Three levels per value: about a third of the energy is lost to rounding on Gaussian values.
        Assert.InRange(error / energy, 0.05, 0.5);
    }
}

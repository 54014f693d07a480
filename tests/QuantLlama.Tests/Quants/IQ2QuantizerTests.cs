using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// The IQ2 quantizers against ggml_quantize_chunk (LLamaSharp.Backend.Cpu 0.30.0) with column importances: the shared
/// adversarial rows (zeros, outliers, tiny and huge scales), the k-quant test rows and random rows with ties and
/// outliers, under several importance vectors, byte for byte; several rows in one call. (IQ2_S without an importance matrix: IQuantDifferentialTests.)
/// </summary>
public class IQ2QuantizerTests
{
    public static TheoryData<GgmlType> Types => new() { GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S };

    /// <summary>Named importance vectors for a row of n: the differential tests' pattern, random over six orders of
    /// magnitude, flat, and one with every third column weightless.</summary>
    private static IEnumerable<(string Name, float[] Importance)> Importances(int n, int seed)
    {
        yield return ("pattern", IQuantDifferentialTests.Importance(n));
        var rng = new Random(seed);
        yield return ("random", Enumerable.Range(0, n).Select(_ => MathF.Exp(7 * (float)(rng.NextDouble() * 2 - 1))).ToArray());
        yield return ("flat", Enumerable.Repeat(1f, n).ToArray());
        yield return ("gaps", Enumerable.Range(0, n).Select(j => j % 3 == 0 ? 0f : 0.5f + j % 5).ToArray());
    }

    private static IEnumerable<(string Name, float[] Row)> Rows(GgmlType type)
    {
        foreach (int n in new[] { 256, 512, 4096 })
            foreach (var (name, row) in TestRows.All(n, 3 + n))
                yield return ($"{name} n={n}", row);
        foreach (var (name, row) in KQuantTestRows.All())
            yield return (name, row);
        var rng = new Random(77 + (int)type);
        for (int r = 0; r < 12; r++)
            yield return ($"random {r}", KQuantTestRows.WithTiesAndOutliers(rng, 2 * 256, r));
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void WeightedRowsAreIdenticalToGgmlQuantizeChunk(GgmlType type)
    {
        Assert.SkipUnless(GgmlNative.QuantizesLikeX64, "llama.cpp's ARM64 build fuses multiply-adds in the scale search");
        int compared = 0;
        foreach (var (name, row) in Rows(type))
            foreach (var (weighting, importance) in Importances(row.Length, row.Length + name.Length))
            {
                var expected = GgmlNative.QuantizeChunk(type, row, row.Length, importance);
                var actual = new byte[expected.Length];
                Quantizer.QuantizeRowWeighted(type, row, actual, importance);
                GgmlDifferentialTests.AssertBytes(expected, actual, $"{type} {name} {weighting}");
                compared++;
            }
        Assert.True(compared > 100);

        // Several rows sharing one column weighting, as a weight matrix is quantized.
        var many = TestRows.Random(512 * 6, 91);
        var chunk = ImportanceMatrixTests.AssertRowsSharingColumnsAreGgmls(type, many, IQuantDifferentialTests.Importance(512));
        Assert.NotEqual(GgmlNative.QuantizeChunk(type, many, 512, Enumerable.Repeat(1f, 512).ToArray()), chunk); // the weights matter
    }

    /// <summary>ggml asserts an importance matrix for IQ2_XXS and IQ2_XS; here the request is refused.</summary>
    [Theory]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.IQ2_XS)]
    public void XxsAndXsNeedImportance(GgmlType type)
    {
        Assert.False(Quantizer.IsSupported(type));
        Assert.True(Quantizer.IsSupportedWithImportance(type));
        var row = TestRows.Random(256, 4);
        var dst = new byte[GgmlTypeInfo.RowBytes(type, 256)];
        var e = Assert.Throws<ArgumentException>(() => Quantizer.QuantizeRowWeighted(type, row, dst, default));
        Assert.Contains("needs an importance matrix", e.Message);
    }
}

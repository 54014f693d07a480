using System.Runtime.InteropServices;
using System.Text;
using QuantLlama.Conversion;
using QuantLlama.Gguf;
using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Cli;
using QuantLlama.Tests.Models;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Importance matrices: llama.cpp's two file layouts read as llama-quantize reads them, the IQ4 quantizers with
/// column weights (IQ4_NL, IQ4_XS, Q4_K, Q5_K, Q6_K) byte for byte as ggml_quantize_chunk with quant_weights, `quantize --imatrix` tensor for tensor
/// against it, and llama-quantize's refusal of the very-low-bit mixes without a matrix.
/// </summary>
public class ImportanceMatrixTests(ITestOutputHelper output)
{
    private static readonly string Source = TestPaths.SharedFile("llamacpp", "stories260K.gguf");

    /// <summary>Positive importances spread over several orders of magnitude, as activations' mean squares are.</summary>
    private static float[] RandomImportance(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => MathF.Exp(3 * (float)(rng.NextDouble() * 2 - 1))).ToArray();
    }

    [Theory]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.IQ3_XXS)]
    [InlineData(GgmlType.IQ3_S)]
    public void WeightedRowsAreIdenticalToGgmlQuantizeChunk(GgmlType type)
    {
        Assert.SkipUnless(GgmlNative.QuantizesLikeX64, "llama.cpp's ARM64 build fuses multiply-adds in the scale search");
        foreach (int n in new[] { 256, 512, 4096 })
            foreach (var (name, row) in TestRows.All(n).Concat(KQuantTestRows.All().Where(r => r.Row.Length == n)))
            {
                var importance = RandomImportance(n, n + name.Length);
                var expected = GgmlNative.QuantizeChunk(type, row, n, importance);
                var actual = new byte[expected.Length];
                Quantizer.QuantizeRowWeighted(type, row, actual, importance);
                GgmlDifferentialTests.AssertBytes(expected, actual, $"{type} {name} n={n}");
            }
        var many = TestRows.Random(512 * 6, 91);
        var chunk = AssertRowsSharingColumnsAreGgmls(type, many, RandomImportance(512, 5));
        Assert.NotEqual(GgmlNative.QuantizeChunk(type, many, 512), chunk); // the weights change the result
    }

    /// <summary>Rows of 512 sharing one column weighting, as a weight matrix is quantized: ggml_quantize_chunk's bytes (returned).</summary>
    internal static byte[] AssertRowsSharingColumnsAreGgmls(GgmlType type, float[] rows, float[] columns)
    {
        var chunk = GgmlNative.QuantizeChunk(type, rows, columns.Length, columns);
        int rowBytes = (int)GgmlTypeInfo.RowBytes(type, columns.Length);
        var ours = new byte[chunk.Length];
        for (int r = 0; r < rows.Length / columns.Length; r++)
            Quantizer.QuantizeRowWeighted(type, rows.AsSpan(r * columns.Length, columns.Length), ours.AsSpan(r * rowBytes, rowBytes), columns);
        GgmlDifferentialTests.AssertBytes(chunk, ours, $"{type} {rows.Length / columns.Length} rows");
        return chunk;
    }

    /// <summary>llama-imatrix's legacy .dat layout.</summary>
    internal static byte[] LegacyFile(IEnumerable<(string Name, int Calls, float[] Sums)> entries, int? chunks, string? dataset)
    {
        var stream = new MemoryStream();
        var w = new BinaryWriter(stream);
        var list = entries.ToList();
        w.Write(list.Count);
        foreach (var (name, calls, sums) in list)
        {
            w.Write(Encoding.UTF8.GetByteCount(name));
            w.Write(Encoding.UTF8.GetBytes(name));
            w.Write(calls);
            w.Write(sums.Length);
            foreach (float v in sums) w.Write(v);
        }
        if (chunks is int c)
        {
            w.Write(c);
            w.Write(Encoding.UTF8.GetByteCount(dataset ?? ""));
            w.Write(Encoding.UTF8.GetBytes(dataset ?? ""));
        }
        w.Flush();
        return stream.ToArray();
    }

    [Fact]
    public void LegacyFileIsReadAsLlamaQuantizeReadsIt()
    {
        float[] a = [3f, 1f, 10f, 0.5f], b = [2f, 4f];
        var matrix = ImportanceMatrix.LoadLegacy(LegacyFile([("blk.0.attn_q.weight", 3, a), ("blk.0.ffn_up.weight", 0, b)], 42, "wiki.train.raw"), "test.dat");
        Assert.Equal(a.Select(v => v / 3), matrix.Find("blk.0.attn_q.weight")!);
        Assert.Equal(b, matrix.Find("blk.0.ffn_up.weight")!); // no calls: the sums as they are
        Assert.Null(matrix.Find("output.weight"));
        Assert.Equal(42, matrix.ChunkCount);
        Assert.Equal("wiki.train.raw", matrix.Dataset);

        var bare = ImportanceMatrix.LoadLegacy(LegacyFile([("x", 1, a)], null, null), "bare.dat");
        Assert.Equal(0, bare.ChunkCount);
        Assert.Null(bare.Dataset);
        var e = Assert.Throws<InvalidDataException>(() => ImportanceMatrix.LoadLegacy(new byte[] { 0, 0, 0, 0 }, "empty.dat"));
        Assert.Equal("empty.dat: no data in file", e.Message);
        Assert.Throws<InvalidDataException>(() => ImportanceMatrix.LoadLegacy(LegacyFile([("x", 1, a)], null, null)[..^4], "short.dat"));
    }

    [Fact]
    public void GgufFileIsReadAsLlamaQuantizeReadsIt()
    {
        string path = Path.Combine(TestPaths.NewTempDirectory(), "imatrix.gguf");
        float[] sums = [8f, 2f, 4f, 6f, 1f, 1f, 1f, 1f]; // two experts of four columns
        new GgufWriter()
            .Set("general.type", "imatrix")
            .Set("imatrix.datasets", new[] { "wiki.train.raw", "more.txt" })
            .Set("imatrix.chunk_count", 7u)
            .Set("imatrix.chunk_size", 512u)
            .AddTensor("blk.0.ffn_down_exps.weight.in_sum2", [4, 2], sums)
            .AddTensor("blk.0.ffn_down_exps.weight.counts", [1, 2], [4f, 0f])
            .AddTensor("blk.0.attn_q.weight.in_sum2", [2, 1], [3f, 9f])
            .AddTensor("blk.0.attn_q.weight.counts", [1, 1], [3f])
            .Write(path);
        var matrix = ImportanceMatrix.Load(path);
        Assert.Equal([2f, 0.5f, 1f, 1.5f, 1f, 1f, 1f, 1f], matrix.Find("blk.0.ffn_down_exps.weight")!); // no count: importance 1
        Assert.Equal([1f, 3f], matrix.Find("blk.0.attn_q.weight")!);
        Assert.Equal(2, matrix.Values.Count);
        Assert.Equal(7, matrix.ChunkCount);
        Assert.Equal("wiki.train.raw", matrix.Dataset);
    }

    private static string StoriesImatrix() => ImatrixFor(Source);

    /// <summary>A legacy matrix for every layer matrix of a model (llama-imatrix leaves out output.weight by default).</summary>
    internal static string ImatrixFor(string modelPath)
    {
        using var model = GgufFile.Open(modelPath);
        var entries = model.Tensors.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal) && t.Dimensions.Length == 2)
            .Select((t, i) => (t.Name, 8, RandomImportance((int)t.Dimensions[0], 100 + i).Select(v => 8 * v).ToArray()));
        string path = Path.Combine(TestPaths.NewTempDirectory(), "stories260K.imatrix.dat");
        File.WriteAllBytes(path, LegacyFile(entries, 16, "tinystories.txt"));
        return path;
    }

    /// <summary>
    /// `quantize --imatrix`: every tensor quantized with an entry of the matrix has ggml_quantize_chunk's bytes for the
    /// same values and column weights (llama_model_quantize's per-tensor call; LLamaSharp cannot hand it a matrix),
    /// the others are as without, and the file names the matrix as llama-quantize's do.
    /// </summary>
    [Theory]
    [InlineData("IQ4_XS", false)]
    [InlineData("IQ4_NL", false)]
    [InlineData("Q4_K_M", true)]
    public void QuantizeWithImatrixGivesGgmlBytesPerTensor(string target, bool synthetic)
    {
        Assert.SkipUnless(GgmlNative.QuantizesLikeX64, "llama.cpp's ARM64 build fuses multiply-adds in the scale search");
        string dir = TestPaths.NewTempDirectory();
        // stories260K's rows of 64 do not divide into the k-quants' 256: those mixes run on a synthetic F32 LLaMA of width 256.
        string model = synthetic ? SyntheticLlama.Write(dir, GgmlType.F32, new SyntheticLlama.Shape()) : Source;
        string imatrix = ImatrixFor(model);
        string weighted = Path.Combine(dir, "weighted.gguf"), plain = Path.Combine(dir, "plain.gguf");
        var log = new List<string>();
        ModelQuantizer.Quantize(model, weighted, target, log.Add, imatrix);
        ModelQuantizer.Quantize(model, plain, target, _ => { });
        var matrix = ImportanceMatrix.Load(imatrix);
        using var source = GgufFile.Open(model);
        using var ours = GgufFile.Open(weighted);
        using var without = GgufFile.Open(plain);
        int compared = 0;
        foreach (var t in ours.Tensors)
        {
            var importance = matrix.Find(t.Name);
            bool quantized = t.Type != source.GetTensor(t.Name).Type;
            if (importance == null || !quantized)
            {
                Assert.True(ours.GetTensorData(t).SequenceEqual(without.GetTensorData(t.Name)), $"{t.Name} should not change");
                continue;
            }
            var values = MemoryMarshal.Cast<byte, float>(source.GetTensorData(t.Name)).ToArray();
            var expected = GgmlNative.QuantizeChunk(t.Type, values, (int)t.Dimensions[0], importance);
            GgmlDifferentialTests.AssertBytes(expected, ours.GetTensorData(t).ToArray(), $"{target} {t.Name} ({t.Type})");
            if (t.Type != GgmlType.Q8_0 && t.Type != GgmlType.F16) Assert.False(ours.GetTensorData(t).SequenceEqual(without.GetTensorData(t.Name)), t.Name);
            compared++;
        }
        output.WriteLine($"{target}: {compared} tensors quantized with the matrix");
        Assert.True(compared >= (synthetic ? 14 : 20), $"only {compared} tensors used the matrix");
        Assert.Contains("did not find weights for output.weight", log);
        Assert.Equal(imatrix, ours.Metadata.GetString("quantize.imatrix.file"));
        Assert.Equal("tinystories.txt", ours.Metadata.GetString("quantize.imatrix.dataset"));
        Assert.Equal(matrix.Values.Count, ours.Metadata.GetInteger("quantize.imatrix.entries_count"));
        Assert.Equal(16, ours.Metadata.GetInteger("quantize.imatrix.chunks_count"));
    }

    [Fact]
    public void VeryLowBitMixesNeedAnImatrix()
    {
        string dir = TestPaths.NewTempDirectory(), output = Path.Combine(dir, "out.gguf");
        foreach (string type in new[] { "IQ2_XXS", "iq2_xs", "IQ2_S", "IQ1_S", "IQ1_M", "Q2_K_S" })
        {
            var r = CliRunner.Run(["quantize", Source, output, type]);
            Assert.Equal(1, r.ExitCode);
            Assert.Equal("error: Please do not use IQ1_S, IQ1_M, IQ2_S, IQ2_XXS, IQ2_XS or Q2_K_S quantization without an importance matrix",
                r.StdErr.TrimEnd('\n'));
        }
        var withMatrix = CliRunner.Run(["quantize", "--imatrix", StoriesImatrix(), Source, output, "Q2_K_S"]);
        Assert.Equal(1, withMatrix.ExitCode);
        Assert.Equal("error: quantizing to Q2_K_S is not implemented", withMatrix.StdErr.TrimEnd('\n'));
        Assert.False(File.Exists(output));
    }

    /// <summary>The legacy types' and Q2_K/Q3_K's weighted searches are not there: such a request (here Q4_K_M on rows
    /// of 64, whose fallback is Q5_0) is refused before anything is written, rather than quantized without the matrix.</summary>
    [Fact]
    public void TypesWithoutAWeightedQuantizerAreRefused()
    {
        string output = Path.Combine(TestPaths.NewTempDirectory(), "out.gguf");
        var e = Assert.Throws<NotSupportedException>(() => ModelQuantizer.Quantize(Source, output, "Q4_K_M", _ => { }, StoriesImatrix()));
        Assert.StartsWith("quantizing to Q5_0 (for ", e.Message);
        Assert.EndsWith("with an importance matrix is not implemented", e.Message);
        Assert.False(File.Exists(output));
    }
}

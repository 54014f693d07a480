using System.Runtime.InteropServices;
using LLama.Native;
using QuantLlama.Conversion;
using QuantLlama.Gguf;
using QuantLlama.Models;
using QuantLlama.Tensors;
using QuantLlama.Tests.Cli;
using QuantLlama.Tests.Models;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Files that llama.cpp's own model quantizer (llama_model_quantize in LLamaSharp's libllama) makes with an
/// importance matrix, given through the quantize parameters' imatrix pointer as llama.h's array of
/// llama_model_imatrix_data { name, data, size } ended by a null name: we load them and give llama.cpp's greedy text,
/// and our `quantize --imatrix` makes the same IQ1_S and IQ1_M files.
/// </summary>
public class ImportanceMatrixQuantizeTests(ITestOutputHelper output)
{
    private static readonly int[] OnceUponATime = [1, 403, 407, 261, 378];

    /// <summary>
    /// On a synthetic F32 model with 256-wide rows (stories260K's 64-wide rows would all fall back to IQ4_NL), the
    /// ffn and attention matrices become the type and the rest llama.cpp's mix of others (IQ2_XXS: 12 IQ2_XXS,
    /// token_embd and attn_v in Q2_K, output in Q5_K).
    /// </summary>
    [Theory]
    [InlineData(LLamaFtype.MOSTLY_IQ2_XXS, GgmlType.IQ2_XXS)]
    [InlineData(LLamaFtype.MOSTLY_IQ2_XS, GgmlType.IQ2_XS)]
    [InlineData(LLamaFtype.MOSTLY_IQ1_S, GgmlType.IQ1_S)]
    public void FileFromLlamaModelQuantizeGivesLlamaCppsGreedyText(LLamaFtype ftype, GgmlType type)
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string source = SyntheticLlama.Write(dir, GgmlType.F32, new SyntheticLlama.Shape());
            string target = Path.Combine(dir, $"synthetic-{type}.gguf");
            QuantizeWithImportance(source, target, ftype);

            using (var file = GgufFile.Open(target))
            {
                Assert.Equal(type, file.GetTensor("blk.0.ffn_gate.weight").Type);
                Assert.Equal(type, file.GetTensor("blk.1.attn_q.weight").Type);
            }

            AssertGreedyTokensAreLlamaCpps(target);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// `quantize --imatrix FILE` to the IQ2 mixes on the synthetic F32 LLaMA, with the same column importances that
    /// llama_model_quantize gets: every tensor has llama.cpp's type and bytes, and (IQ2_XXS) llama.cpp and we
    /// continue a prompt on our file with the same greedy tokens. Eight layers (with Q8_0 embeddings, requantized)
    /// show the first eighth of ffn_down kept at more bits.
    /// </summary>
    [Theory]
    [InlineData("IQ2_XXS", LLamaFtype.MOSTLY_IQ2_XXS, 2)]
    [InlineData("IQ2_XS", LLamaFtype.MOSTLY_IQ2_XS, 8)]
    [InlineData("IQ2_S", LLamaFtype.MOSTLY_IQ2_S, 8)]
    [InlineData("IQ2_M", LLamaFtype.MOSTLY_IQ2_M, 8)]
    public void QuantizeWithImatrixMatchesLlamaModelQuantize(string target, LLamaFtype ftype, int layers)
    {
        Assert.SkipUnless(GgmlNative.QuantizesLikeX64, "llama.cpp's ARM64 build fuses multiply-adds in the scale search");
        string dir = TestPaths.NewTempDirectory();
        try
        {
            var shape = layers == 2 ? new SyntheticLlama.Shape() : new SyntheticLlama.Shape { Layers = layers, EmbeddingType = GgmlType.Q8_0 };
            string source = SyntheticLlama.Write(dir, GgmlType.F32, shape);
            string reference = Path.Combine(dir, "llama.gguf"), ours = Path.Combine(dir, $"ours-{target}.gguf");
            QuantizeWithImportance(source, reference, ftype);

            string imatrix = Path.Combine(dir, "imatrix.dat");
            using (var file = GgufFile.Open(source))
                File.WriteAllBytes(imatrix, ImportanceMatrixTests.LegacyFile(file.Tensors.Where(t => t.Dimensions.Length == 2)
                    .Select(t => (t.Name, 1, IQuantDifferentialTests.Importance((int)t.Dimensions[0]))), null, null));
            var run = CliRunner.Run(["quantize", "--imatrix", imatrix, source, ours, target]);
            Assert.True(run.ExitCode == 0, run.StdErr);

            ModelQuantizerTests.AssertSameTensors(ours, reference, target);
            using (var mine = GgufFile.Open(ours))
            {
                Assert.Contains(mine.Tensors, t => t.Type == (target == "IQ2_M" ? GgmlType.IQ2_S : target == "IQ2_XXS" ? GgmlType.IQ2_XXS : GgmlType.IQ2_XS));
                if (layers == 8) Assert.NotEqual(mine.GetTensor("blk.0.ffn_down.weight").Type, mine.GetTensor("blk.1.ffn_down.weight").Type);
            }
            if (target == "IQ2_XXS") AssertGreedyTokensAreLlamaCpps(ours);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>IQ2_M is not among the mixes llama-quantize refuses up front, but its IQ2_S tensors need the matrix.</summary>
    [Fact]
    public void IQ2MWithoutAMatrixIsRefusedPerTensor()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string source = SyntheticLlama.Write(dir, GgmlType.F32, new SyntheticLlama.Shape { EmbeddingType = GgmlType.Q8_0 });
            string output = Path.Combine(dir, "out.gguf");
            var e = Assert.Throws<ArgumentException>(() => QuantLlama.Conversion.ModelQuantizer.Quantize(source, output, "IQ2_M", _ => { }));
            Assert.Equal("Missing importance matrix for tensor blk.0.attn_k.weight in a very low-bit quantization", e.Message);
            Assert.False(File.Exists(output));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>llama.cpp and we continue a prompt on the file with the same 32 greedy tokens (not one repeated token).</summary>
    private static void AssertGreedyTokensAreLlamaCpps(string path)
    {
        int[] expected;
        using (var reference = LlamaCppModel.Load(path, 256))
            expected = reference.GenerateGreedy(OnceUponATime, 32, stopAtEndOfGeneration: false);
        Assert.True(expected.Distinct().Count() > 8, "llama.cpp's continuation is not one repeated token");
        using var model = InferenceContext.Load(path, new ContextOptions { ContextSize = 256 });
        Assert.Equal(expected, LlamaModelTests.Greedy(model, OnceUponATime, 32));
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct ImatrixEntry
    {
        public IntPtr Name;
        public IntPtr Data;
        public nuint Size;
    }

    /// <summary>
    /// `quantize --imatrix FILE MODEL OUT IQ1_S` (and IQ1_M) through the CLI against llama_model_quantize given the
    /// file's importances, on synthetic F32 LLaMAs of width 256: 2 layers with one KV head for four (attn_v Q4_K) and
    /// heads of 32 (attn_output's rows of 128 fall back from IQ2_XXS to IQ4_NL), and 8 layers with GQA 2 (attn_v and
    /// the first ffn_down in Q2_K, attn_output IQ2_XXS). Every tensor has llama.cpp's type and bytes, and the file
    /// loads and gives llama.cpp's logits (within the bounds below).
    /// </summary>
    [Theory]
    [InlineData("IQ1_S", LLamaFtype.MOSTLY_IQ1_S, GgmlType.IQ1_S, 2)]
    [InlineData("IQ1_M", LLamaFtype.MOSTLY_IQ1_M, GgmlType.IQ1_M, 2)]
    [InlineData("IQ1_S", LLamaFtype.MOSTLY_IQ1_S, GgmlType.IQ1_S, 8)]
    [InlineData("IQ1_M", LLamaFtype.MOSTLY_IQ1_M, GgmlType.IQ1_M, 8)]
    public void OneBitMixesAreLlamaModelQuantizesAndLoad(string target, LLamaFtype ftype, GgmlType layerType, int layers)
    {
        Assert.SkipUnless(GgmlNative.QuantizesLikeX64, "llama.cpp's ARM64 build fuses multiply-adds in the scale search");
        string dir = TestPaths.NewTempDirectory();
        try
        {
            var shape = layers == 2 ? new SyntheticLlama.Shape { KvHeads = 1, HeadDim = 32 } : new SyntheticLlama.Shape { Layers = layers };
            string source = SyntheticLlama.Write(dir, GgmlType.F32, shape);
            string imatrix = ImportanceMatrixTests.ImatrixFor(source);
            string ours = Path.Combine(dir, $"ours-{target}.gguf"), theirs = Path.Combine(dir, $"llama-{target}.gguf");
            var run = CliRunner.Run(["quantize", "--imatrix", imatrix, source, ours, target]);
            Assert.True(run.ExitCode == 0, run.StdErr);
            QuantizeWithImportance(source, theirs, ftype, ImportanceMatrix.Load(imatrix).Values);

            ModelQuantizerTests.AssertSameTensors(ours, theirs, target);
            using (var mine = GgufFile.Open(ours))
            {
                Assert.Equal(layerType, mine.GetTensor("blk.1.ffn_down.weight").Type);
                Assert.Equal(GgmlType.Q2_K, mine.GetTensor("token_embd.weight").Type);
                Assert.Equal(GgmlType.Q5_K, mine.GetTensor("output.weight").Type);
                Assert.Equal(layers == 2 ? GgmlType.Q4_K : GgmlType.Q2_K, mine.GetTensor("blk.0.attn_v.weight").Type);
                Assert.Equal(layers == 2 ? GgmlType.IQ4_NL : GgmlType.IQ2_XXS, mine.GetTensor("blk.0.attn_output.weight").Type);
                Assert.Equal(layers == 2 ? layerType : GgmlType.Q2_K, mine.GetTensor("blk.0.ffn_down.weight").Type);
            }
            // LlamaModelTests' bound for quantized layers; over 8 layers of 1-bit random weights a last-bit difference
            // before an activation's Q8_K rounding grows further (IQ1_S: 0.021 of the largest logit).
            double bound = layers == 2 ? 2e-2 : 5e-2;
            LlamaModelTests.CompareWithLlamaCpp(output, ours, bound, bound);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>A layer matrix the importance file has no entry for is refused with llama-quantize's words, before anything is written.</summary>
    [Fact]
    public void OneBitMixRefusesAMatrixMissingFromTheImportanceFile()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string source = SyntheticLlama.Write(dir, GgmlType.F32, new SyntheticLlama.Shape { EmbeddingType = GgmlType.Q8_0 });
            string partial = Path.Combine(dir, "partial.gguf"), output = Path.Combine(dir, "out.gguf");
            var writer = new GgufWriter().Set("general.type", "imatrix").Set("imatrix.chunk_count", 1u);
            using (var file = GgufFile.Open(source))
                foreach (var t in file.Tensors.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal) && t.Dimensions.Length == 2 && t.Name != "blk.0.attn_k.weight"))
                    writer.AddTensor(t.Name + ".in_sum2", [t.Dimensions[0], 1], IQuantDifferentialTests.Importance((int)t.Dimensions[0]))
                        .AddTensor(t.Name + ".counts", [1, 1], [1f]);
            writer.Write(partial);
            var e = Assert.Throws<ArgumentException>(() => ModelQuantizer.Quantize(source, output, "IQ1_S", _ => { }, partial));
            Assert.Equal("Missing importance matrix for tensor blk.0.attn_k.weight in a very low-bit quantization", e.Message);
            Assert.False(File.Exists(output));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>llama_model_quantize with an importance entry (IQuantDifferentialTests.Importance's uneven weights) for every 2-D tensor.</summary>
    private static void QuantizeWithImportance(string source, string target, LLamaFtype ftype)
    {
        Dictionary<string, float[]> importance;
        using (var file = GgufFile.Open(source))
            importance = file.Tensors.Where(t => t.Dimensions.Length == 2).ToDictionary(t => t.Name, t => IQuantDifferentialTests.Importance((int)t.Dimensions[0]));
        QuantizeWithImportance(source, target, ftype, importance);
    }

    /// <summary>llama_model_quantize with the given importance per matrix name (one weight per column).</summary>
    private static unsafe void QuantizeWithImportance(string source, string target, LLamaFtype ftype, IReadOnlyDictionary<string, float[]> importance)
    {
        LlamaCppModel.EnsureNativeLibrary();
        var matrices = importance.ToList();
        var allocations = new List<IntPtr>();
        var entries = (ImatrixEntry*)NativeMemory.AllocZeroed((nuint)(matrices.Count + 1), (nuint)sizeof(ImatrixEntry));
        try
        {
            for (int i = 0; i < matrices.Count; i++)
            {
                var weights = matrices[i].Value;
                IntPtr data = Marshal.AllocHGlobal(weights.Length * sizeof(float));
                Marshal.Copy(weights, 0, data, weights.Length);
                IntPtr name = Marshal.StringToCoTaskMemUTF8(matrices[i].Key);
                allocations.Add(data);
                entries[i] = new ImatrixEntry { Name = name, Data = data, Size = (nuint)weights.Length };
            }
            var p = LLamaModelQuantizeParams.Default();
            p.ftype = ftype;
            p.nthread = 1;
            p.imatrix = (IntPtr)entries;
            p.allow_requantize = true;
            Assert.Equal(0u, NativeApi.llama_model_quantize(source, target, ref p));
        }
        finally
        {
            for (int i = 0; i < matrices.Count; i++) Marshal.FreeCoTaskMem(entries[i].Name);
            foreach (var a in allocations) Marshal.FreeHGlobal(a);
            NativeMemory.Free(entries);
        }
    }
}

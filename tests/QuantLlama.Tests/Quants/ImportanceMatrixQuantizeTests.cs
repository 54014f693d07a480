using System.Runtime.InteropServices;
using LLama.Native;
using QuantLlama.Gguf;
using QuantLlama.Models;
using QuantLlama.Tensors;
using QuantLlama.Tests.Models;
using QuantLlama.Tests.Cli;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Files that llama.cpp's own model quantizer (llama_model_quantize in LLamaSharp's libllama) makes with an
/// importance matrix, given through the quantize parameters' imatrix pointer as llama.h's array of
/// llama_model_imatrix_data { name, data, size } ended by a null name: we load them and give llama.cpp's greedy text.
/// </summary>
public class ImportanceMatrixQuantizeTests
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
    /// llama_model_quantize with an importance matrix entry (one uneven positive weight per column) for every
    /// 2-D tensor of the source.
    /// </summary>
    private static unsafe void QuantizeWithImportance(string source, string target, LLamaFtype ftype)
    {
        LlamaCppModel.EnsureNativeLibrary();
        List<(string Name, int Columns)> matrices;
        using (var file = GgufFile.Open(source))
            matrices = file.Tensors.Where(t => t.Dimensions.Length == 2).Select(t => (t.Name, (int)t.Dimensions[0])).ToList();

        var allocations = new List<IntPtr>();
        var entries = (ImatrixEntry*)NativeMemory.AllocZeroed((nuint)(matrices.Count + 1), (nuint)sizeof(ImatrixEntry));
        try
        {
            for (int i = 0; i < matrices.Count; i++)
            {
                var weights = IQuantDifferentialTests.Importance(matrices[i].Columns);
                IntPtr data = Marshal.AllocHGlobal(weights.Length * sizeof(float));
                Marshal.Copy(weights, 0, data, weights.Length);
                IntPtr name = Marshal.StringToCoTaskMemUTF8(matrices[i].Name);
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

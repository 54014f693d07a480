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
            using (var file = GgufFile.Open(source))
                QuantizeWithImportance(source, target, ftype, file.Tensors.Where(t => t.Dimensions.Length == 2)
                    .ToDictionary(t => t.Name, t => IQuantDifferentialTests.Importance((int)t.Dimensions[0])));

            using (var file = GgufFile.Open(target))
            {
                Assert.Equal(type, file.GetTensor("blk.0.ffn_gate.weight").Type);
                Assert.Equal(type, file.GetTensor("blk.1.attn_q.weight").Type);
            }

            int[] expected;
            using (var reference = LlamaCppModel.Load(target, 256))
                expected = reference.GenerateGreedy(OnceUponATime, 32, stopAtEndOfGeneration: false);
            Assert.True(expected.Distinct().Count() > 8, "llama.cpp's continuation is not one repeated token");
            using var model = InferenceContext.Load(target, new ContextOptions { ContextSize = 256 });
            Assert.Equal(expected, LlamaModelTests.Greedy(model, OnceUponATime, 32));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
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
    /// file's importance, on a synthetic F32 LLaMA of width 256 with one KV head for four (attn_v: Q4_K) and heads of
    /// 32 (attn_output's rows of 128 fall back from IQ2_XXS to IQ4_NL): every tensor gets llama.cpp's type and bytes,
    /// and the file loads and gives llama.cpp's logits.
    /// </summary>
    [Theory]
    [InlineData("IQ1_S", LLamaFtype.MOSTLY_IQ1_S, GgmlType.IQ1_S)]
    [InlineData("IQ1_M", LLamaFtype.MOSTLY_IQ1_M, GgmlType.IQ1_M)]
    public void OneBitMixesAreLlamaModelQuantizesAndLoad(string target, LLamaFtype ftype, GgmlType layerType)
    {
        Assert.SkipUnless(GgmlNative.QuantizesLikeX64, "llama.cpp's ARM64 build fuses multiply-adds in the scale search");
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string source = SyntheticLlama.Write(dir, GgmlType.F32, new SyntheticLlama.Shape { KvHeads = 1, HeadDim = 32 });
            string imatrix = ImportanceMatrixTests.ImatrixFor(source);
            string ours = Path.Combine(dir, $"ours-{target}.gguf"), theirs = Path.Combine(dir, $"llama-{target}.gguf");
            var run = CliRunner.Run(["quantize", "--imatrix", imatrix, source, ours, target]);
            Assert.True(run.ExitCode == 0, run.StdErr);
            QuantizeWithImportance(source, theirs, ftype, ImportanceMatrix.Load(imatrix).Values);

            using (var mine = GgufFile.Open(ours))
            using (var reference = GgufFile.Open(theirs))
            {
                ModelQuantizerTests.AssertSameTensors(mine, reference, target);
                Assert.Equal(layerType, mine.GetTensor("blk.1.ffn_down.weight").Type);
                Assert.Equal(GgmlType.Q4_K, mine.GetTensor("blk.0.attn_v.weight").Type);
                Assert.Equal(GgmlType.IQ4_NL, mine.GetTensor("blk.0.attn_output.weight").Type);
                Assert.Equal(GgmlType.Q2_K, mine.GetTensor("token_embd.weight").Type);
                Assert.Equal(GgmlType.Q5_K, mine.GetTensor("output.weight").Type);
            }
            LlamaModelTests.CompareWithLlamaCpp(output, ours, 2e-2, 2e-2);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// The very-low-bit branch's other choices, on 8 layers with GQA 2 (Q2_K attn_v, Q2_K for the first ffn_down,
    /// IQ2_XXS attn_output): our plan is the types of llama_model_quantize's file. Making such a file needs weighted
    /// Q2_K and IQ2_XXS quantizers, which are not here, so it is refused before anything is written; so is a layer
    /// matrix the importance file has no entry for, with llama-quantize's words.
    /// </summary>
    [Theory]
    [InlineData("IQ1_S", LLamaFtype.MOSTLY_IQ1_S)]
    [InlineData("IQ1_M", LLamaFtype.MOSTLY_IQ1_M)]
    public void OneBitMixesChooseLlamaCppsTypes(string target, LLamaFtype ftype)
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string source = SyntheticLlama.Write(dir, GgmlType.F32, new SyntheticLlama.Shape { Layers = 8 });
            string imatrix = ImportanceMatrixTests.ImatrixFor(source);
            string theirs = Path.Combine(dir, "llama.gguf"), ours = Path.Combine(dir, "ours.gguf");
            QuantizeWithImportance(source, theirs, ftype, ImportanceMatrix.Load(imatrix).Values);
            Assert.True(ModelQuantizer.TryParseTarget(target, out var mix));
            using (var model = GgufFile.Open(source))
            using (var reference = GgufFile.Open(theirs))
            {
                var plan = ModelQuantizer.Plan(model, mix, hasImportance: true);
                foreach (var p in plan)
                    Assert.True(reference.GetTensor(p.Source.Name).Type == p.Type, $"{target}: {p.Source.Name} planned {p.Type}, llama.cpp chose {reference.GetTensor(p.Source.Name).Type}");
                Assert.Equal(GgmlType.Q2_K, reference.GetTensor("blk.0.ffn_down.weight").Type);
                Assert.Equal(GgmlType.IQ2_XXS, reference.GetTensor("blk.3.attn_output.weight").Type);
            }
            var e = Assert.Throws<NotSupportedException>(() => ModelQuantizer.Quantize(source, ours, target, _ => { }, imatrix));
            Assert.Equal("quantizing to IQ2_XXS (for blk.0.attn_output.weight) with an importance matrix is not implemented", e.Message);
            Assert.False(File.Exists(ours));

            // An importance file without blk.0.attn_k.weight (the first matrix quantized to the mix's type).
            string partial = Path.Combine(dir, "partial.gguf");
            var values = ImportanceMatrix.Load(imatrix).Values.Where(kv => kv.Key != "blk.0.attn_k.weight").ToList();
            var writer = new GgufWriter().Set("general.type", "imatrix").Set("imatrix.chunk_count", 1u);
            foreach (var (name, v) in values)
                writer.AddTensor(name + ".in_sum2", [v.Length, 1], v).AddTensor(name + ".counts", [1, 1], [1f]);
            writer.Write(partial);
            var missing = Assert.Throws<InvalidDataException>(() => ModelQuantizer.Quantize(source, ours, target, _ => { }, partial));
            Assert.Equal("Missing importance matrix for tensor blk.0.attn_k.weight in a very low-bit quantization", missing.Message);
            Assert.False(File.Exists(ours));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
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

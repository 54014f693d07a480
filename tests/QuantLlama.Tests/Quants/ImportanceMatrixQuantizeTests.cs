using System.Runtime.InteropServices;
using LLama.Native;
using QuantLlama.Gguf;
using QuantLlama.Models;
using QuantLlama.Tensors;
using QuantLlama.Tests.Models;
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

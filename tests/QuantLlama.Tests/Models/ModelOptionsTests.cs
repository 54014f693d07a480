using QuantLlama.Models;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Models;

public class ModelOptionsTests
{
    private static readonly int[] Prompt = [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889, 13];

    /// <summary>
    /// Models loaded side by side in one process each keep their own option: the Q4_0 one loaded with
    /// <see cref="ModelOptions.RepackForPrompts"/> off holds no copy, the ones loaded before and after it with the
    /// default hold theirs, and all three give the same logits for a 13-token prompt, bit for bit.
    /// </summary>
    [Fact]
    public void RepackingIsChosenPerLoadAndNeverChangesLogits()
    {
        Assert.SkipUnless(Kernels.UseAvx512, "Q4_0 weights are repacked for prompts only on the AVX-512 path");
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = SyntheticLlama.Write(dir, GgmlType.Q4_0, new SyntheticLlama.Shape());
            using var before = LlamaModel.Load(path);
            using var mapped = LlamaModel.Load(path, options: new ModelOptions { RepackForPrompts = false });
            using var after = LlamaModel.Load(path, options: new ModelOptions());
            Assert.True(before.RepackedBytes > 0);
            Assert.Equal(0, mapped.RepackedBytes);
            Assert.Equal(before.RepackedBytes, after.RepackedBytes);
            Assert.False(mapped.Options.RepackForPrompts);

            float[] Logits(LlamaModel model)
            {
                using var context = model.CreateContext();
                return context.Forward(Prompt, 0).ToArray();
            }
            var expected = Logits(mapped);
            foreach (var model in new[] { before, after })
                Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), Logits(model).Select(BitConverter.SingleToInt32Bits));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// The warm-up runs beside the caller: a prompt sent at once waits for it and gets the bits a model loaded without
    /// it gives, and a model disposed while it may still run frees its weights only after it.
    /// </summary>
    [Fact]
    public void WarmUpNeverChangesLogits()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = SyntheticLlama.Write(dir, GgmlType.Q4_K, new SyntheticLlama.Shape());
            float[] Logits(ModelOptions options)
            {
                using var model = LlamaModel.Load(path, options: options);
                using var context = model.CreateContext();
                var logits = context.Forward(Prompt, 0).ToArray();
                return [.. logits, .. context.Forward([29889], Prompt.Length).ToArray()];
            }
            var expected = Logits(new ModelOptions { WarmUp = false });
            Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), Logits(new ModelOptions()).Select(BitConverter.SingleToInt32Bits));
            LlamaModel.Load(path).Dispose();
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// Once a matrix is repacked every product reads the copy, so its pages in the file's mapping leave resident
    /// memory: after a prompt and a generated token, the repacked model's mapping holds at least the copied matrices'
    /// bytes less than the mapping of the same file loaded without copies, and both give the same logits.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_K)]
    public unsafe void RepackedMatricesLeaveTheMappingsResidentMemory(GgmlType type)
    {
        Assert.SkipUnless(Kernels.UseAvx512 && OperatingSystem.IsLinux(), "weights are repacked on the AVX-512 path, and released from the mapping on Linux");
        Assert.SkipWhen(type == GgmlType.Q8_0 && !System.Runtime.Intrinsics.X86.AvxVnni.IsSupported, "Q8_0's repacked kernel needs AVX-VNNI");
        string dir = TestPaths.NewTempDirectory();
        try
        {
            // The smallest matrices (K and V) 256 x 1024 values, 144 KiB and more in the file: many whole pages to release.
            string path = SyntheticLlama.Write(dir, type, new SyntheticLlama.Shape { Dim = 1024, FeedForward = 2048, Heads = 8, KvHeads = 2 });
            using var mapped = LlamaModel.Load(path, options: new ModelOptions { RepackForPrompts = false, WarmUp = false });
            using var repacked = LlamaModel.Load(path, options: new ModelOptions { WarmUp = false });
            (float[] Logits, long Resident) Run(LlamaModel model)
            {
                using var context = model.CreateContext();
                float[] logits = [.. context.Forward(Prompt, 0).ToArray(), .. context.Forward([29889], Prompt.Length).ToArray()];
                var tensor = model.File.FindTensor("blk.0.ffn_down.weight")!;
                return (logits, ResidentBytesOfMapping(model.File.GetTensorPointer(tensor)));
            }
            var (expected, mappedResident) = Run(mapped);
            var (logits, repackedResident) = Run(repacked);
            Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), logits.Select(BitConverter.SingleToInt32Bits));
            long copiedFromFile = 0;
            foreach (var layer in repacked.Layers)
                foreach (var m in new[] { layer.Wq, layer.Wk, layer.Wv, layer.Wo, layer.Gate, layer.Up, layer.Down })
                    if (m.RowGroups != null) copiedFromFile += GgmlTypeInfo.RowBytes(m.Type, m.Cols) * m.Rows;
            Assert.True(copiedFromFile > 1 << 20, $"{copiedFromFile} bytes repacked");
            // The pages each matrix shares with its neighbours stay: at most one 4 KiB page at each end of each matrix.
            long edges = 2L * 4096 * 7 * repacked.Layers.Length;
            Assert.True(repackedResident <= mappedResident - copiedFromFile + edges,
                $"mapping resident: {repackedResident} bytes repacked, {mappedResident} without copies, {copiedFromFile} copied");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>The resident bytes of the mapping that holds <paramref name="p"/>, from /proc/self/smaps.</summary>
    private static unsafe long ResidentBytesOfMapping(byte* p)
    {
        ulong address = (ulong)p;
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            int space = line.IndexOf(' ');
            if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), System.Globalization.NumberStyles.HexNumber, null, out ulong start)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), System.Globalization.NumberStyles.HexNumber, null, out ulong end))
            {
                inside = address >= start && address < end;
                continue;
            }
            if (inside && line.StartsWith("Rss:", StringComparison.Ordinal))
                return long.Parse(line.AsSpan(4).Trim().ToString().Split(' ')[0]) * 1024;
        }
        throw new InvalidOperationException("no mapping holds the tensor");
    }

    [Fact]
    public void AContextLoadedAloneTakesTheModelOptions()
    {
        Assert.SkipUnless(Kernels.UseAvx512, "Q4_0 weights are repacked for prompts only on the AVX-512 path");
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = SyntheticLlama.Write(dir, GgmlType.Q4_0, new SyntheticLlama.Shape());
            using var mapped = InferenceContext.Load(path, modelOptions: new ModelOptions { RepackForPrompts = false });
            using var repacked = InferenceContext.Load(path);
            Assert.Equal(0, mapped.Model.RepackedBytes);
            Assert.True(repacked.Model.RepackedBytes > 0);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

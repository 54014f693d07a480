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

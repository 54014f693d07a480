using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Oracle;

public class LlamaCppOracleTests
{
    [Fact]
    public void LlamaCppContinuesStories260KAsDocumented()
    {
        using var model = LlamaCppModel.Load(TestPaths.SharedFile("llamacpp", "stories260K.gguf"));
        Assert.Equal(512, model.VocabSize);
        var prompt = model.Tokenize("Once upon a time");
        Assert.Equal(1, prompt[0]);
        string text = model.GenerateGreedyText("Once upon a time", 30);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.", text);
        var logits = model.LastLogits(prompt);
        Assert.Equal(512, logits.Length);
        Assert.Equal(model.GenerateGreedy(prompt, 1)[0], LlamaCppModel.ArgMax(logits));
    }

    [Fact]
    public void TheAvx2BuildOfLlamaCppIsLoaded()
    {
        LlamaCppModel.EnsureNativeLibrary();
        Assert.SkipUnless(OperatingSystem.IsLinux() && System.Runtime.Intrinsics.X86.Avx2.IsSupported, "LLamaSharp's AVX2 build is for x64 Linux with AVX2");
        var loaded = File.ReadAllLines("/proc/self/maps").Where(l => l.EndsWith("/libllama.so") || l.EndsWith("/libggml-cpu.so"))
            .Select(l => l[(l.IndexOf('/'))..]).Distinct().ToList();
        Assert.NotEmpty(loaded);
        Assert.All(loaded, path => Assert.Contains("/native/avx2/", path));
    }
}

using QuantLlama.Models;
using QuantLlama.Sampling;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Models;

/// <summary>
/// The default f16 KV cache against llama.cpp's, in both of its attention computations (flash attention on and off):
/// first-position logits and greedy continuations on llama.cpp's own stories260K files.
/// </summary>
public class AttentionParityTests(ITestOutputHelper output)
{
    private static readonly int[] OnceUponATime = [1, 403, 407, 261, 378];

    public static TheoryData<string, bool> FilesAndModes => new()
    {
        { "stories260K.gguf", false }, { "stories260K.gguf", true },
        { "stories260K-Q8_0.gguf", false }, { "stories260K-Q8_0.gguf", true },
        { "stories260K-Q4_0.gguf", false }, { "stories260K-Q4_0.gguf", true },
    };

    private static FlashAttention Mode(bool flash) => flash ? FlashAttention.On : FlashAttention.Off;

    [Theory]
    [MemberData(nameof(FilesAndModes))]
    public void FirstLogitsMatchLlamaCpp(string fileName, bool flash)
    {
        string path = TestPaths.SharedFile("llamacpp", fileName);
        float[] expected;
        using (var reference = LlamaCppModel.Load(path, 256, flashAttention: flash))
            expected = reference.LastLogits(OnceUponATime);
        using var model = LlamaModel.Load(path, new LlamaModelOptions { ContextSize = 256, FlashAttention = Mode(flash) });
        var actual = model.Forward(OnceUponATime, 0).ToArray();
        float scale = expected.Max(MathF.Abs), diff = MaxAbsDiff(expected, actual);
        output.WriteLine($"{fileName} flash {(flash ? "on" : "off")}: max diff {diff:G4} / max |logit| {scale:G4} = {diff / scale:G3}");
        Assert.True(diff <= 1e-5f * scale, $"max diff {diff} > 1e-5 × {scale}");
    }

    [Theory]
    [MemberData(nameof(FilesAndModes))]
    public void GreedyContinuationMatchesLlamaCpp(string fileName, bool flash)
        => GreedyMatches(TestPaths.SharedFile("llamacpp", fileName), flash);

    internal void GreedyMatches(string path, bool flash)
    {
        int[] expected;
        using (var reference = LlamaCppModel.Load(path, 256, flashAttention: flash))
            expected = reference.GenerateGreedy(OnceUponATime, 64, stopAtEndOfGeneration: false);
        using var model = LlamaModel.Load(path, new LlamaModelOptions { ContextSize = 256, FlashAttention = Mode(flash) });
        var actual = LlamaModelTests.Greedy(model, OnceUponATime, 64);
        int first = 0;
        while (first < expected.Length && first < actual.Count && expected[first] == actual[first]) first++;
        output.WriteLine($"{Path.GetFileName(path)} flash {(flash ? "on" : "off")}: {first} of 64 tokens agree");
        Assert.Equal(expected, actual);
    }

    private static float MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        float m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }
}

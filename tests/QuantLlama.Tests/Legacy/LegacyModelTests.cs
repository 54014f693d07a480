using System.Text;
using QuantLlama.Gguf;
using QuantLlama.Gguf.Legacy;
using QuantLlama.Models;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Legacy;

/// <summary>Legacy files run through the engine exactly as the GGUF they were written from.</summary>
public sealed class LegacyModelTests : IDisposable
{
    private const string Prompt = "Once upon a time";
    private readonly string _dir = TestPaths.NewTempDirectory();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Stories(string suffix = "") => TestPaths.SharedFile("llamacpp", $"stories260K{suffix}.gguf");

    private string WriteLegacy(string gguf, GgmlLegacyFormat format, uint version, VocabSpelling spelling)
    {
        using var source = GgufFile.Open(gguf);
        string path = Path.Combine(_dir, $"{Path.GetFileNameWithoutExtension(gguf)}-{format}{version}-{spelling}.bin");
        LegacyGgmlWriter.FromGguf(source, format, version, spelling).Write(path);
        return path;
    }

    private static (int[] Ids, float[] PromptLogits, string Text) Greedy(string path, int gqa, int steps)
    {
        using var model = LlamaModel.Load(path, new LlamaModelOptions { ContextSize = 128 }, gqa);
        var tokenizer = TokenizerFactory.FromMetadata(model.File.Metadata);
        var prompt = tokenizer.Encode(Prompt, addSpecial: true, parseSpecial: false);
        var logits = model.Forward(prompt.ToArray(), 0).ToArray();
        var promptLogits = logits;
        var ids = new List<int>();
        var bytes = new List<byte>();
        int position = prompt.Count;
        for (int i = 0; i < steps; i++)
        {
            int next = ArgMax(logits);
            ids.Add(next);
            bytes.AddRange(tokenizer.TokenToBytes(next));
            logits = model.Forward([next], position++).ToArray();
        }
        return (ids.ToArray(), promptLogits, Prompt + Encoding.UTF8.GetString(bytes.ToArray()));
    }

    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    [Theory]
    [InlineData("", GgmlLegacyFormat.Ggml, 0u, VocabSpelling.ConvertPy, 1)] // unaligned F32 tensors, no scores
    [InlineData("", GgmlLegacyFormat.Ggmf, 1u, VocabSpelling.SentencePiece, 2)]
    [InlineData("", GgmlLegacyFormat.Ggjt, 1u, VocabSpelling.ConvertPy, 1)]
    [InlineData("-Q8_0", GgmlLegacyFormat.Ggjt, 3u, VocabSpelling.ConvertPy, 2)]
    [InlineData("-Q4_0", GgmlLegacyFormat.Ggjt, 3u, VocabSpelling.SentencePiece, 1)]
    public void LegacyFile_GeneratesTheSameGreedyTextAsTheGguf(string suffix, GgmlLegacyFormat format, uint version, VocabSpelling spelling, int gqa)
    {
        string legacy = WriteLegacy(Stories(suffix), format, version, spelling);
        var expected = Greedy(Stories(suffix), 1, 40);
        var actual = Greedy(legacy, gqa, 40);
        Assert.Equal(expected.PromptLogits, actual.PromptLogits);
        Assert.Equal(expected.Ids, actual.Ids);
        Assert.Equal(expected.Text, actual.Text);
        if (suffix != "-Q4_0")
            Assert.StartsWith("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.", actual.Text);
    }

    [Fact]
    public void Cli_RunsALegacyFile()
    {
        string legacy = WriteLegacy(Stories("-Q8_0"), GgmlLegacyFormat.Ggjt, 3, VocabSpelling.ConvertPy);
        var r = CliRunner.Run(["--model", legacy, "--prompt", Prompt, "-n", "20", "--temperature", "0", "--repeat-penalty", "1"]);
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", r.StdOut);
    }
}

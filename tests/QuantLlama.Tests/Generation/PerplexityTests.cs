using System.Globalization;
using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Tests.Cli;
using QuantLlama.Tests.Oracle;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Generation;

/// <summary>
/// Perplexity against llama-perplexity's method applied to llama.cpp's own logits (through LLamaSharp), on
/// llama.cpp's stories260K files with windows of 64 tokens; and the `perplexity` command's output and errors.
/// </summary>
public class PerplexityTests(ITestOutputHelper output)
{
    internal const int Window = 64;

    /// <summary>TinyStories-like English, repeated so that the text fills several windows.</summary>
    internal static readonly string Text = string.Concat(Enumerable.Repeat(
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog, Max. "
        + "One day, Lily saw a big red ball under a tree. She ran to the ball and kicked it high into the sky. "
        + "Max barked and ran after it. They played all day until the sun went down. Then they went home, happy and tired.\n", 3));

    /// <summary>Every running estimate, the final one and its ± equal llama.cpp's to the printed digits.</summary>
    [Theory]
    [InlineData("stories260K.gguf")]
    [InlineData("stories260K-Q8_0.gguf")]
    public void MatchesLlamaPerplexityOnLlamaCppLogits(string fileName)
    {
        string path = TestPaths.SharedFile("llamacpp", fileName);
        using var model = LlamaModel.Load(path);
        var tokenizer = TokenizerFactory.FromMetadata(model.File.Metadata);
        var tokens = tokenizer.Encode(Text, addSpecial: true, parseSpecial: false);
        Assert.True(tokens.Count >= 2 * Window, $"the text has only {tokens.Count} tokens");
        int? bos = tokenizer.AddBos ? tokenizer.BosId : null;

        // The f32 cache with flash attention off on both sides: logits that differ in the last bits at most.
        using var context = model.CreateContext(new ContextOptions { ContextSize = Window, KvCacheType = KvCacheType.F32, MaxBatch = Window });
        var ours = Perplexity.Compute(context, tokens, bos);

        (double expected, double expectedError, List<double> expectedRunning) = ReferencePerplexity(path, tokens, bos);
        string Show(double v) => v.ToString("F4", CultureInfo.InvariantCulture);
        output.WriteLine($"{fileName}: {tokens.Count} tokens, {ours.RunningEstimates.Count} windows; ours {Show(ours.Value)} +/- {ours.Uncertainty:F5}, "
            + $"llama.cpp logits {Show(expected)} +/- {expectedError:F5}");
        output.WriteLine("ours      " + string.Join(",", ours.RunningEstimates.Select(Show)));
        output.WriteLine("llama.cpp " + string.Join(",", expectedRunning.Select(Show)));
        Assert.Equal(tokens.Count / Window, ours.RunningEstimates.Count);
        Assert.Equal(Show(expected), Show(ours.Value));
        Assert.Equal(expectedError.ToString("F5", CultureInfo.InvariantCulture), ours.Uncertainty.ToString("F5", CultureInfo.InvariantCulture));
        Assert.Equal(expectedRunning.Select(Show), ours.RunningEstimates.Select(Show));
    }

    /// <summary>llama-perplexity's loop, written out here on llama.cpp's logits of each window (evaluated as one batch).</summary>
    private static (double Ppl, double Error, List<double> Running) ReferencePerplexity(string path, IReadOnlyList<int> tokens, int? bos)
    {
        using var reference = LlamaCppModel.Load(path, Window, f32KvCache: true);
        Assert.Equal(tokens, reference.Tokenize(Text, addSpecial: true));
        int chunks = tokens.Count / Window, first = Window / 2, count = 0;
        double nll = 0, nll2 = 0;
        var running = new List<double>();
        foreach (var (i, logits) in ReferenceWindowLogits(reference, tokens, bos, chunks).Index())
        {
            for (int j = first; j < Window - 1; j++)
            {
                float[] row = logits[j];
                float max = row.Max();
                double v = -(row[tokens[i * Window + j + 1]] - max - Math.Log(SumExp(row, max)));
                nll += v;
                nll2 += v * v;
            }
            count += Window - first - 1;
            running.Add(Math.Exp(nll / count));
        }
        nll2 /= count;
        nll /= count;
        double ppl = Math.Exp(nll);
        nll2 -= nll * nll;
        return (ppl, Math.Sqrt(nll2 / (count - 1)) * ppl, running);
    }

    /// <summary>
    /// llama.cpp's logits [position][vocabulary] of each of the first <paramref name="windows"/> windows of
    /// <see cref="Window"/> tokens, <paramref name="bos"/> (where given) in place of the first, as llama-perplexity
    /// evaluates them.
    /// </summary>
    internal static IEnumerable<float[][]> ReferenceWindowLogits(LlamaCppModel reference, IReadOnlyList<int> tokens, int? bos, int windows)
    {
        for (int w = 0; w < windows; w++)
        {
            var window = tokens.Skip(w * Window).Take(Window).ToArray();
            if (bos is int b) window[0] = b;
            yield return reference.AllLogits(window);
        }
    }

    /// <summary>Σ exp(x − max) over a row of logits, in double as llama-perplexity sums it.</summary>
    internal static double SumExp(float[] row, float max)
    {
        double sum = 0;
        foreach (float x in row) sum += MathF.Exp(x - max);
        return sum;
    }

    [Fact]
    public void CommandPrintsChunksAndFinalEstimate()
    {
        string dir = TestPaths.NewTempDirectory(), file = Path.Combine(dir, "text.txt");
        File.WriteAllText(file, Text);
        var r = CliRunner.Run(["perplexity", "--model", TestPaths.SharedFile("llamacpp", "stories260K.gguf"), "--file", file, "--ctx", "64", "-b", "32"]);
        output.WriteLine(r.StdOut + r.StdErr);
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"^\[1\]\d+\.\d{4},\[2\]\d+\.\d{4},", r.StdOut);
        Assert.Matches(@"(?m)^Final estimate: PPL = \d+\.\d{4} \+/- \d+\.\d{5}$", r.StdOut);
    }

    [Fact]
    public void TooShortTextIsOneErrorLine()
    {
        string dir = TestPaths.NewTempDirectory(), file = Path.Combine(dir, "short.txt");
        File.WriteAllText(file, "Once upon a time, there was a little girl.");
        var r = CliRunner.Run(["perplexity", "--model", TestPaths.SharedFile("llamacpp", "stories260K.gguf"), "--file", file, "--ctx", "64"]);
        Assert.Equal(1, r.ExitCode);
        string error = r.StdErr.TrimEnd('\n');
        Assert.DoesNotContain('\n', error);
        Assert.StartsWith("error: you need at least 128 tokens to evaluate perplexity with a context of 64", error);
    }
}

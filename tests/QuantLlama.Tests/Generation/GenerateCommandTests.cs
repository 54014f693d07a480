using System.Text.RegularExpressions;
using QuantLlama.Tokenizers;
using QuantLlama.Gguf;
using QuantLlama.Tests.Models;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Generation;

/// <summary>The built `quantllama` root command, end to end, on llama.cpp's conversion of stories260K.</summary>
public class GenerateCommandTests
{
    private static string Stories => TestPaths.SharedFile("llamacpp", "stories260K.gguf");

    private static readonly Regex PromptStats = new(@"^\s*(\d+) prompt tokens processed: \d+\.\d\d token/s$", RegexOptions.Multiline);
    private static readonly Regex GeneratedStats = new(@"^\s*(\d+) tokens generated: \d+\.\d\d token/s$", RegexOptions.Multiline);

    /// <summary>A model with a tensor type we have no kernels for is refused at load, before the prompt is echoed.</summary>
    [Fact]
    public void UnsupportedTensorTypeIsReportedBeforeAnythingRuns()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            var shape = new SyntheticLlama.Shape { Layers = 1, ZeroTensor = ("blk.0.attn_v.weight", Tensors.GgmlType.MXFP4) };
            string path = SyntheticLlama.Write(dir, Tensors.GgmlType.Q8_0, shape);
            var r = CliRunner.Run(["--model", path, "--prompt", "Once upon a time", "-n", "4"]);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Contains("tensor 'blk.0.attn_v.weight' is MXFP4", r.StdErr);
            Assert.DoesNotContain("model built", r.StdErr);
            Assert.DoesNotContain("Once upon a time", r.StdOut);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void GreedyGenerationPrintsTheStoryAndCandlesLines()
    {
        var r = CliRunner.Run(["--model", Stories, "--prompt", "Once upon a time", "--temperature", "0", "-n", "20", "--repeat-penalty", "1"]);
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", r.StdOut);
        Assert.Contains("avx: ", r.StdErr);
        Assert.Contains("temp: 0.00 repeat-penalty: 1.00 repeat-last-n: 64", r.StdErr);
        Assert.Contains("loaded 48 tensors (1.17MB) in ", r.StdErr);
        Assert.Contains("n_embd: 64", r.StdErr);
        Assert.Equal("5", PromptStats.Match(r.StdErr).Groups[1].Value);
        Assert.Equal("19", GeneratedStats.Match(r.StdErr).Groups[1].Value);
        Assert.DoesNotContain("token/s", r.StdOut);
    }

    [Fact]
    public void SplitPromptAndBatchAgreeAndSeededSamplingRepeats()
    {
        string[] greedy = ["--model", Stories, "--prompt", "Once upon a time", "--temperature", "0", "-n", "12"];
        var batch = CliRunner.Run(greedy);
        var split = CliRunner.Run([.. greedy, "--split-prompt"]);
        Assert.Equal(batch.StdOut, split.StdOut);

        string[] sampled = ["--model", Stories, "-n", "24", "--top-p", "0.9", "--seed", "42", "--verbose-prompt"];
        var a = CliRunner.Run(sampled);
        var b = CliRunner.Run(sampled);
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(a.StdOut, b.StdOut);
        Assert.StartsWith("My favorite theorem is ", a.StdOut);
        Assert.Matches(@"(?m)^\s+1 -> '<s>'$", a.StdErr);
    }

    [Fact]
    public void InteractiveAnswersEachLineFreshAndEndsAtEndOfInput()
    {
        var r = CliRunner.Run(["--model", Stories, "--prompt", "interactive", "--temperature", "0", "-n", "6"], stdin: "Once upon a time\nOnce upon a time\n");
        Assert.True(r.ExitCode == 0, r.StdErr);
        var lines = r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Equal(lines[0], lines[1]); // each line answered on its own
        Assert.StartsWith("Once upon a time, there was", lines[0]);
        // The second line shares all but its last token with the cache, which keeps that prefix.
        Assert.Equal(["5", "1"], PromptStats.Matches(r.StdErr).Select(m => m.Groups[1].Value));
    }

    [Fact]
    public void ChatFeedsOnlyTheNewTurn()
    {
        var r = CliRunner.Run(["--model", Stories, "--prompt", "chat", "--temperature", "0", "-n", "6"], stdin: "Once upon a time\nThe dog\n");
        Assert.True(r.ExitCode == 0, r.StdErr);
        using var file = GgufFile.Open(Stories);
        var tok = TokenizerFactory.FromMetadata(file.Metadata);
        int secondTurn = tok.Encode("The dog", addSpecial: false, parseSpecial: true).Count;
        // The first turn with BOS; the second: the new line's tokens, plus the last answer token (never fed) and the
        // one before it where the re-tokenized conversation joins the answer differently.
        var computed = PromptStats.Matches(r.StdErr).Select(m => int.Parse(m.Groups[1].Value)).ToArray();
        Assert.Equal(5, computed[0]);
        Assert.InRange(computed[1], secondTurn, secondTurn + 2);
        Assert.Equal(2, GeneratedStats.Matches(r.StdErr).Count);
    }

    [Theory]
    [InlineData("--model", "/no/such/model.gguf")]
    [InlineData("-n", "many")]
    [InlineData("--which", "13q")]
    [InlineData("--temperature", "0", "--top-k", "0")]
    public void BadInputGivesOneErrorLineAndExitCodeOne(params string[] args)
    {
        var all = args.Contains("--model") ? args : [.. args, "--model", Stories];
        var r = CliRunner.Run(all);
        Assert.Equal(1, r.ExitCode);
        var lines = r.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Equal("", r.StdOut);
    }
}

using QuantLlama.Quants;
using System.Globalization;
using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Sampling;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Generation;

public class BenchmarkTests
{
    private static string Stories(string name) => TestPaths.SharedFile("llamacpp", name);

    [Fact]
    public void BenchCommandPrintsAPpAndTgTableWithParsableSpeeds()
    {
        var r = CliRunner.Run(["bench", "--model", Stories("stories260K-Q8_0.gguf"), "-p", "32", "-n", "8", "-t", "1", "-r", "2"]);
        Assert.True(r.ExitCode == 0, r.StdErr);
        var lines = r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length); // header, rule, pp, tg
        string[] Cells(string line) => line.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToArray();
        Assert.Equal(["model", "size", "params", "type", "threads", "test", "t/s"], Cells(lines[0]));
        Assert.Matches(@"^\|(-+:?\|)+$", lines[1].Replace(" ", ""));
        var pp = Cells(lines[2]);
        var tg = Cells(lines[3]);
        Assert.Equal("stories260K-Q8_0.gguf", pp[0]);
        Assert.Matches(@"^\d+\.\d\d (KiB|MiB|GiB)$", pp[1]);
        Assert.Matches(@"^\d+\.\d\d (K|M|B)$", pp[2]);
        Assert.Equal("Q8_0", pp[3]);
        Assert.Equal("1", pp[4]);
        Assert.Equal("pp32", pp[5]);
        Assert.Equal("tg8", tg[5]);
        foreach (var row in new[] { pp, tg })
        {
            var parts = row[6].Split('±');
            Assert.Equal(2, parts.Length);
            Assert.True(double.Parse(parts[0], CultureInfo.InvariantCulture) > 0);
            Assert.True(double.Parse(parts[1], CultureInfo.InvariantCulture) >= 0);
        }
    }

    [Fact]
    public void NoRepackReadsPromptsFromTheMappedFile()
    {
        Assert.SkipUnless(Kernels.UseAvx512, "Q4_0 weights are repacked for prompts only on the AVX-512 path");
        string[] args = ["bench", "--model", Stories("stories260K-Q4_0.gguf"), "-p", "16", "-n", "0", "-t", "1", "-r", "1"];
        var repacked = CliRunner.Run(args);
        var mapped = CliRunner.Run([.. args, "--no-repack"]);
        Assert.True(repacked.ExitCode == 0 && mapped.ExitCode == 0, repacked.StdErr + mapped.StdErr);
        Assert.Contains("repacked for prompts: ", repacked.StdErr);
        Assert.DoesNotContain("repacked for prompts", mapped.StdErr);
    }

    [Theory]
    [InlineData("-p", "0", "-n", "0")]
    [InlineData("-r", "0")]
    [InlineData("-t", "0")]
    [InlineData("-p", "-5")]
    public void BadValuesAreOneLineErrors(params string[] extra)
    {
        var r = CliRunner.Run(["bench", "--model", Stories("stories260K-Q8_0.gguf"), .. extra]);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error: ", r.StdErr);
        Assert.Single(r.StdErr.Trim().Split('\n'));
    }

    [Fact]
    public void MissingModelIsAOneLineError()
    {
        var r = CliRunner.Run(["bench", "--model", "/nonexistent/model.gguf"]);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error: ", r.StdErr);
    }

    [Fact]
    public void ResultStatisticsAreRight()
    {
        var r = new BenchmarkResult("tg4", 4, [1.0, 3.0, 2.0, 10.0]);
        Assert.Equal(4.0, r.Mean, 12);
        Assert.Equal(2.5, r.Median, 12);
        Assert.Equal(Math.Sqrt(((9.0) + 1 + 4 + 36) / 3), r.StandardDeviation, 12);
    }

    /// <summary>A token generated after warm-up allocates nothing on the managed heap (forward pass, sampling).</summary>
    [Fact]
    public void GenerationLoopAllocatesNothingPerToken()
    {
        using var model = InferenceContext.Load(Stories("stories260K-Q8_0.gguf"), new ContextOptions { ContextSize = 512 });
        var sampler = new LogitsProcessor(299792458, new SamplingStrategy(SamplingKind.TopP, 0.8, TopP: 0.9));
        var logits = new float[model.Config.VocabSize];
        int next = 1;
        void Step(int position)
        {
            model.Forward([next], position).CopyTo(logits);
            LogitsProcessor.ApplyRepeatPenalty(logits, 1.1f, [1, 2, 3]);
            next = sampler.Sample(logits);
        }
        for (int p = 0; p < 16; p++) Step(p); // warm-up: JIT, thread-static buffers
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int p = 16; p < 400; p++) Step(p);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
    }
}

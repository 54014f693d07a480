using System.Runtime.InteropServices;
using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Tests.Cli;
using QuantLlama.Tests.Oracle;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Generation;

/// <summary>
/// The KL-divergence mode: llama-perplexity's log-probability file (written, read back, and byte-compatible with
/// one written by llama.cpp's arithmetic from llama.cpp's own logits), and the comparison of stories260K's Q8_0 file
/// with its F32 file against the same figures computed from llama.cpp's logits (through LLamaSharp).
/// </summary>
public class KlDivergenceTests(ITestOutputHelper output)
{
    private const int Window = PerplexityTests.Window;
    private static string F32Path => TestPaths.SharedFile("llamacpp", "stories260K.gguf");
    private static string Q8Path => TestPaths.SharedFile("llamacpp", "stories260K-Q8_0.gguf");

    private static (LlamaModel Model, int[] Tokens, int? Bos) Load(string path)
    {
        var model = LlamaModel.Load(path);
        var tokenizer = TokenizerFactory.FromMetadata(model.File.Metadata);
        return (model, tokenizer.Encode(PerplexityTests.Text, addSpecial: true, parseSpecial: false).ToArray(), tokenizer.AddBos ? tokenizer.BosId : null);
    }

    private static InferenceContext CreateContext(LlamaModel model)
        => model.CreateContext(new ContextOptions { ContextSize = Window, KvCacheType = KvCacheType.F32, MaxBatch = Window });

    private static byte[] SaveOurBase(string path, out PerplexityResult result)
    {
        var (model, tokens, bos) = Load(path);
        using (model)
        using (var context = CreateContext(model))
        {
            var stream = new MemoryStream();
            result = KlDivergence.SaveBase(context, tokens, bos, stream);
            return stream.ToArray();
        }
    }

    private static KlDivergenceStatistics CompareOurs(string path, byte[] baseFile)
    {
        var (model, _, bos) = Load(path);
        using (model)
        using (var context = CreateContext(model))
        {
            var stream = new MemoryStream(baseFile);
            var header = LogProbabilityFile.ReadHeader(stream, "base");
            var statistics = KlDivergence.Compare(context, header, stream, bos);
            Assert.Equal(stream.Length, stream.Position);
            return statistics;
        }
    }

    [Fact]
    public void SavedFileReadsBack()
    {
        byte[] saved = SaveOurBase(F32Path, out var perplexity);
        var (model, tokens, _) = Load(F32Path);
        int vocab = model.Config.VocabSize, windows = tokens.Length / Window;
        model.Dispose();

        var stream = new MemoryStream(saved);
        var file = LogProbabilityFile.ReadHeader(stream, "saved");
        Assert.Equal((Window, vocab, windows), (file.WindowSize, file.VocabSize, file.WindowCount));
        Assert.Equal(tokens.Take(windows * Window), file.Tokens);
        Assert.Equal(20 + 4L * windows * Window + 2L * windows * file.WindowLength, saved.Length);
        Assert.Equal(LogProbabilityFile.ScoredPerWindow(Window) * windows, perplexity.ScoredTokens);

        // The stored log p of each scored token gives back the perplexity, to the rounding of the uint16 steps.
        var rows = new ushort[file.WindowLength];
        int rowLength = LogProbabilityFile.RowLength(vocab), first = Window / 2;
        double nll = 0;
        for (int w = 0; w < windows; w++)
        {
            Assert.True(file.ReadWindow(stream, rows));
            for (int j = first; j < Window - 1; j++)
            {
                var row = rows.AsSpan((j - first) * rowLength, rowLength);
                nll -= LogProbabilityFile.LogProbability(row, file.Tokens[w * Window + j + 1]);
                Assert.Equal(65535, MaxOf(row[4..(4 + vocab)]));
            }
        }
        Assert.False(file.ReadWindow(stream, rows));
        double fromFile = Math.Exp(nll / perplexity.ScoredTokens);
        output.WriteLine($"PPL {perplexity.Value:F6}, from the file's log p {fromFile:F6}");
        Assert.Equal(perplexity.Value, fromFile, 1e-4 * perplexity.Value);
    }

    private static int MaxOf(ReadOnlySpan<ushort> values)
    {
        int max = 0;
        foreach (ushort v in values) max = Math.Max(max, v);
        return max;
    }

    [Fact]
    public void ModelAgainstItselfHasNoDivergence()
    {
        byte[] saved = SaveOurBase(F32Path, out var perplexity);
        var s = CompareOurs(F32Path, saved);
        output.WriteLine($"KLD {s.MeanKld.Value:E3} ± {s.MeanKld.Uncertainty:E3}, max {s.KldPercentile(1):E3}, same top {s.SameTop.Value:P3}, "
            + $"PPL(Q) {s.Perplexity.Value:F6} PPL(base) {s.BasePerplexity.Value:F6}");
        Assert.Equal(1.0, s.SameTop.Value);
        // What is left is the uint16 rounding of the stored log-probabilities: steps of 16/65535 nats.
        Assert.True(Math.Abs(s.MeanKld.Value) < 1e-6, $"mean KLD {s.MeanKld.Value}");
        Assert.True(s.KldPercentile(1) < 1e-4 && s.KldPercentile(0) > -1e-4);
        Assert.Equal(1.0, s.PerplexityRatio.Value, 1e-4);
        Assert.Equal(perplexity.Value, s.Perplexity.Value, 1e-9 * perplexity.Value);
        Assert.True(s.RmsPDiff.Value < 1e-4);
    }

    /// <summary>
    /// The file llama-perplexity writes from llama.cpp's own F32 logits (its arithmetic written out here) against
    /// ours from our F32 logits: header and tokens byte for byte, and every stored log-probability within a few uint16
    /// steps (the F32 logits agree to their last bits, which can move a value across a rounding boundary).
    /// </summary>
    [Fact]
    public void SavedFileMatchesLlamaCppsFromItsLogits()
    {
        byte[] ours = SaveOurBase(F32Path, out _);
        byte[] reference = ReferenceBase(F32Path, out var tokens, out int vocab);
        int headerBytes = 20 + 4 * (tokens.Length / Window) * Window;
        Assert.Equal(reference.Length, ours.Length);
        Assert.Equal(reference.AsSpan(0, headerBytes).ToArray(), ours.AsSpan(0, headerBytes).ToArray());

        var a = MemoryMarshal.Cast<byte, ushort>(reference.AsSpan(headerBytes));
        var b = MemoryMarshal.Cast<byte, ushort>(ours.AsSpan(headerBytes));
        int rowLength = LogProbabilityFile.RowLength(vocab), rows = a.Length / rowLength, differing = 0;
        double largest = 0;
        for (int r = 0; r < rows; r++)
        {
            var ra = a.Slice(r * rowLength, rowLength);
            var rb = b.Slice(r * rowLength, rowLength);
            for (int i = 0; i < vocab; i++)
            {
                double d = Math.Abs(LogProbabilityFile.LogProbability(ra, i) - LogProbabilityFile.LogProbability(rb, i));
                largest = Math.Max(largest, d);
                if (ra[4 + i] != rb[4 + i]) differing++;
            }
        }
        output.WriteLine($"{rows} rows of {vocab}: {differing} stored values differ, the largest log p difference {largest:E2}");
        Assert.True(largest < 1e-3, $"log p differs by {largest}");

        // Either file can be the base: our reader takes llama.cpp's, and compares our F32 model to it as to ours.
        var s = CompareOurs(F32Path, reference);
        Assert.Equal(1.0, s.SameTop.Value);
        Assert.True(Math.Abs(s.MeanKld.Value) < 1e-6, $"mean KLD {s.MeanKld.Value}");
    }

    /// <summary>
    /// Q8_0 against F32: our figures (our base file, our Q8_0 model) and llama-perplexity's formulas on llama.cpp's
    /// logits of both files (the base row stored as llama.cpp stores it), equal to the printed digits.
    /// </summary>
    [Fact]
    public void Q8_0AgainstF32MatchesLlamaCppsFigures()
    {
        var ours = CompareOurs(Q8Path, SaveOurBase(F32Path, out _));
        byte[] referenceBase = ReferenceBase(F32Path, out var tokens, out int vocab);
        var (kld, sameTop, pplRatio) = ReferenceComparison(Q8Path, referenceBase, tokens, vocab);
        output.WriteLine($"ours:      KLD {ours.MeanKld.Value:F6} ± {ours.MeanKld.Uncertainty:F6}, same top {ours.SameTop.Value:P3}, PPL ratio {ours.PerplexityRatio.Value:F6}, "
            + $"max KLD {ours.KldPercentile(1):F6}, median {ours.MedianKld:F6}, 99.9% {ours.KldPercentile(0.999f):F6}");
        output.WriteLine($"llama.cpp: KLD {kld:F6}, same top {sameTop:P3}, PPL ratio {pplRatio:F6}");
        Assert.True(ours.Count > 100);
        Assert.True(ours.MeanKld.Value > 0);
        Assert.Equal(kld.ToString("F6"), ours.MeanKld.Value.ToString("F6"));
        Assert.Equal(sameTop.ToString("P3"), ours.SameTop.Value.ToString("P3"));
        Assert.Equal(pplRatio.ToString("F6"), ours.PerplexityRatio.Value.ToString("F6"));
    }

    /// <summary>llama-perplexity's --kl-divergence-base file from llama.cpp's logits: its header, and per scored
    /// position the log-softmax in uint16 steps of (max − min)/65535 over at most 16 nats, in its float arithmetic.</summary>
    private static byte[] ReferenceBase(string path, out int[] tokens, out int vocab)
    {
        var (model, ourTokens, bos) = Load(path);
        model.Dispose();
        tokens = ourTokens;
        using var reference = LlamaCppModel.Load(path, Window, f32KvCache: true);
        vocab = reference.VocabSize;
        int windows = tokens.Length / Window, first = Window / 2, nv = 2 * ((vocab + 1) / 2) + 4;
        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream);
        writer.Write("_logits_"u8);
        writer.Write(Window);
        writer.Write(vocab);
        writer.Write(windows);
        foreach (int t in tokens.Take(windows * Window)) writer.Write(t);
        foreach (var logits in PerplexityTests.ReferenceWindowLogits(reference, tokens, bos, windows))
        {
            for (int j = first; j < Window - 1; j++)
            {
                float[] row = logits[j];
                float max = row.Max(), min = Math.Max(row.Min(), max - 16);
                float logSumExp = (float)Math.Log(PerplexityTests.SumExp(row, max)), scale = (max - min) / 65535f;
                writer.Write(scale);
                writer.Write(min - max - logSumExp);
                for (int i = 0; i < nv - 4; i++)
                    writer.Write(i < vocab && scale != 0 && row[i] > min ? (ushort)MathF.Round(1 / scale * (row[i] - min)) : (ushort)0);
            }
        }
        writer.Flush();
        return stream.ToArray();
    }

    /// <summary>llama-perplexity's KL divergence, same-top count and perplexity ratio on llama.cpp's logits of
    /// <paramref name="path"/> against a base file.</summary>
    private static (double Kld, double SameTop, double PplRatio) ReferenceComparison(string path, byte[] baseFile, int[] tokens, int vocab)
    {
        var (model, _, bos) = Load(path);
        model.Dispose();
        using var reference = LlamaCppModel.Load(path, Window, f32KvCache: true);
        int windows = tokens.Length / Window, first = Window / 2, nv = 2 * ((vocab + 1) / 2) + 4;
        var rows = MemoryMarshal.Cast<byte, ushort>(baseFile.AsSpan(20 + 4 * windows * Window)).ToArray();
        double sumKld = 0, nll = 0, nllBase = 0;
        int count = 0, same = 0;
        foreach (var (w, logits) in PerplexityTests.ReferenceWindowLogits(reference, tokens, bos, windows).Index())
        {
            for (int j = first; j < Window - 1; j++, count++)
            {
                float[] row = logits[j];
                var baseRow = rows.AsSpan(count * nv, nv);
                float scale = MemoryMarshal.Cast<ushort, float>(baseRow)[0];
                float minLogProb = MemoryMarshal.Cast<ushort, float>(baseRow)[1];
                float max = row.Max();
                float logNormalizer = max + (float)Math.Log(PerplexityTests.SumExp(row, max));
                int token = tokens[w * Window + j + 1], top = Array.IndexOf(row, max), topBase = 0;
                nll += logNormalizer - row[token];
                nllBase -= scale * baseRow[4 + token] + minLogProb;
                double kld = 0;
                float topLogBase = float.NegativeInfinity;
                for (int i = 0; i < vocab; i++)
                {
                    float logBase = scale * baseRow[4 + i] + minLogProb;
                    if (logBase > topLogBase) (topLogBase, topBase) = (logBase, i);
                    if (logBase > -16f) kld += MathF.Exp(logBase) * (logBase - row[i] + logNormalizer);
                }
                sumKld += kld;
                if (top == topBase) same++;
            }
        }
        return (sumKld / count, (double)same / count, Math.Exp((nll - nllBase) / count));
    }

    [Fact]
    public void CommandSavesAndCompares()
    {
        string dir = TestPaths.NewTempDirectory(), text = Path.Combine(dir, "text.txt"), logits = Path.Combine(dir, "base.kld");
        File.WriteAllText(text, PerplexityTests.Text);
        var save = CliRunner.Run(["perplexity", "-m", F32Path, "-f", text, "-c", "64", "--kl-divergence-base", logits]);
        Assert.Equal(0, save.ExitCode);
        Assert.Matches(@"(?m)^Final estimate: PPL = \d+\.\d{4} \+/- \d+\.\d{5}$", save.StdOut);
        Assert.True(File.Exists(logits));

        var compare = CliRunner.Run(["perplexity", "-m", Q8Path, "--kl-divergence-base", logits, "--kl-divergence"]);
        output.WriteLine(compare.StdOut + compare.StdErr);
        Assert.Equal(0, compare.ExitCode);
        Assert.Matches(@"(?m)^   6 +\d+\.\d{4} ± +\d+\.\d{4} +-?\d+\.\d{5} ± +\d+\.\d{5} +\d+\.\d{5} ± +\d+\.\d{5}", compare.StdOut);
        Assert.Matches(@"(?m)^Mean PPL\(Q\)/PPL\(base\)         : +1\.\d{6} ± +\d+\.\d{6}$", compare.StdOut);
        Assert.Matches(@"(?m)^Mean    KLD: +0\.\d{6} ± +0\.\d{6}$", compare.StdOut);
        Assert.Matches(@"(?m)^99\.9%   KLD: +0\.\d{6}$", compare.StdOut);
        Assert.Matches(@"(?m)^Same top p: +\d+\.\d{3} ± +\d+\.\d{3} %$", compare.StdOut);

        var notLogits = CliRunner.Run(["perplexity", "-m", Q8Path, "--kl-divergence-base", text, "--kl-divergence"]);
        Assert.Equal(1, notLogits.ExitCode);
        Assert.Equal($"error: {text} does not look like a file containing log-probabilities", notLogits.StdErr.TrimEnd('\n'));
    }
}

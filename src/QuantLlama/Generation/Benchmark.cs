using System.Diagnostics;
using System.Globalization;
using System.Text;
using QuantLlama.Models;

namespace QuantLlama.Generation;

public sealed record BenchmarkOptions
{
    /// <summary>Prompt tokens processed as one batch (llama-bench's -p); 0 skips the pp test.</summary>
    public int PromptTokens { get; init; } = 512;

    /// <summary>Tokens generated one at a time (llama-bench's -n); 0 skips the tg test.</summary>
    public int GenerateTokens { get; init; } = 128;

    /// <summary>Measured repetitions of each test (llama-bench's -r); one unmeasured warm-up runs first.</summary>
    public int Repetitions { get; init; } = 5;

    /// <summary>Conversations on one model, each running the tests at the same time on its own thread.</summary>
    public int Contexts { get; init; } = 1;

    /// <summary>With several contexts, tg steps all their tokens together through a <see cref="DecodeBatcher"/>.</summary>
    public bool Batched { get; init; }

    public void Validate()
    {
        if (PromptTokens < 0) throw new ArgumentException($"prompt tokens must not be negative, not {PromptTokens}");
        if (GenerateTokens < 0) throw new ArgumentException($"generated tokens must not be negative, not {GenerateTokens}");
        if (PromptTokens == 0 && GenerateTokens == 0) throw new ArgumentException("nothing to measure: both -p and -n are 0");
        if (Repetitions < 1) throw new ArgumentException($"repetitions must be at least 1, not {Repetitions}");
        if (Contexts < 1) throw new ArgumentException($"contexts must be at least 1, not {Contexts}");
    }
}

/// <summary>One test of the table: "pp512" or "tg128", with the tokens/s of each repetition.</summary>
public sealed record BenchmarkResult(string Test, int Tokens, IReadOnlyList<double> TokensPerSecond)
{
    public double Mean => TokensPerSecond.Average();

    public double StandardDeviation
    {
        get
        {
            if (TokensPerSecond.Count < 2) return 0;
            double mean = Mean;
            return Math.Sqrt(TokensPerSecond.Sum(v => (v - mean) * (v - mean)) / (TokensPerSecond.Count - 1));
        }
    }

    public double Median
    {
        get
        {
            var sorted = TokensPerSecond.Order().ToArray();
            int m = sorted.Length / 2;
            return sorted.Length % 2 == 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
        }
    }
}

/// <summary>
/// llama-bench's two tests on our side alone: pp (the prompt as one batch from an empty cache) and tg (tokens fed one
/// at a time from an empty cache, the KV cache growing as in generation). Token ids are fixed pseudo-random ids, so
/// no tokenizer or sampling time is counted; each repetition starts over at position 0.
/// </summary>
public static class Benchmark
{
    /// <summary>
    /// Runs the tests in every context at once (one thread each; one context is llama-bench's case) and reports the
    /// tokens/s of all of them together.
    /// </summary>
    public static IReadOnlyList<BenchmarkResult> Run(IReadOnlyList<InferenceContext> contexts, BenchmarkOptions options, Action<string>? progress = null)
    {
        options.Validate();
        var first = contexts[0];
        int needed = Math.Max(options.PromptTokens, options.GenerateTokens);
        if (needed > first.ContextSize) throw new ContextFullException(first.ContextSize, needed);
        var tokens = TestTokens(first.Config.VocabSize, needed);
        var results = new List<BenchmarkResult>();
        if (options.PromptTokens > 0)
        {
            var prompt = tokens.AsSpan(0, options.PromptTokens).ToArray();
            results.Add(Measure($"pp{options.PromptTokens}", options.PromptTokens * contexts.Count, options.Repetitions, progress,
                () => InEach(contexts, c => c.Forward(prompt, 0))));
        }
        if (options.GenerateTokens > 0)
        {
            int n = options.GenerateTokens;
            using var batcher = options.Batched && contexts.Count > 1 ? new DecodeBatcher(first.Model, contexts.Count) : null;
            results.Add(Measure($"tg{n}", n * contexts.Count, options.Repetitions, progress, () => InEach(contexts, c =>
            {
                if (batcher == null)
                {
                    for (int i = 0; i < n; i++) c.Forward(tokens.AsSpan(i, 1), i);
                    return;
                }
                c.Reset();
                batcher.Join();
                try
                {
                    for (int i = 0; i < n; i++) batcher.Decode(c, tokens[i]);
                }
                finally
                {
                    batcher.Leave();
                }
            })));
        }
        return results;
    }

    private static void InEach(IReadOnlyList<InferenceContext> contexts, Action<InferenceContext> body)
    {
        if (contexts.Count == 1)
        {
            body(contexts[0]);
            return;
        }
        var threads = contexts.Select(c => new Thread(() => body(c))).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
    }

    private static BenchmarkResult Measure(string name, int tokens, int repetitions, Action<string>? progress, Action body)
    {
        body(); // warm-up: JIT, page cache, first touch of the buffers
        var rates = new double[repetitions];
        for (int r = 0; r < repetitions; r++)
        {
            long start = Stopwatch.GetTimestamp();
            body();
            rates[r] = tokens / Stopwatch.GetElapsedTime(start).TotalSeconds;
            progress?.Invoke($"{name} repetition {r + 1}/{repetitions}: {rates[r]:F2} t/s");
        }
        return new BenchmarkResult(name, tokens, rates);
    }

    /// <summary>Deterministic ids spread over the vocabulary, skipping the low control ids.</summary>
    public static int[] TestTokens(int vocabSize, int count)
    {
        var rng = new Random(42);
        int low = Math.Min(3, vocabSize - 1);
        return Enumerable.Range(0, count).Select(_ => rng.Next(low, vocabSize)).ToArray();
    }

    /// <summary>A llama-bench-like Markdown table: model, size, params, type, threads, test, t/s (mean ± sd).</summary>
    public static string FormatTable(string modelName, LlamaModel model, int threads, IReadOnlyList<BenchmarkResult> results)
    {
        var inv = CultureInfo.InvariantCulture;
        string size = FormatBytes(model.WeightBytes);
        long parameters = model.File.Tensors.Sum(t => t.ElementCount);
        string paramText = parameters >= 1_000_000_000 ? $"{(parameters / 1e9).ToString("F2", inv)} B"
            : parameters >= 1_000_000 ? $"{(parameters / 1e6).ToString("F2", inv)} M" : $"{(parameters / 1e3).ToString("F2", inv)} K";
        string type = model.File.Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => t.ByteSize)).First().Key.ToString();
        var rows = new List<string[]> { new[] { "model", "size", "params", "type", "threads", "test", "t/s" } };
        foreach (var r in results)
            rows.Add([modelName, size, paramText, type, threads.ToString(inv), r.Test,
                $"{r.Mean.ToString("F2", inv)} ± {r.StandardDeviation.ToString("F2", inv)}"]);
        int columns = rows[0].Length;
        var widths = Enumerable.Range(0, columns).Select(c => rows.Max(row => row[c].Length)).ToArray();
        bool[] right = [false, true, true, false, true, true, true];
        var sb = new StringBuilder();
        void Line(string[] cells)
        {
            sb.Append('|');
            for (int c = 0; c < columns; c++)
                sb.Append(' ').Append(right[c] ? cells[c].PadLeft(widths[c]) : cells[c].PadRight(widths[c])).Append(" |");
            sb.Append('\n');
        }
        Line(rows[0]);
        sb.Append('|');
        for (int c = 0; c < columns; c++) sb.Append(new string('-', widths[c] + 1)).Append(right[c] ? ":|" : " |");
        sb.Append('\n');
        foreach (var row in rows.Skip(1)) Line(row);
        return sb.ToString();
    }

    private static string FormatBytes(long bytes)
    {
        var inv = CultureInfo.InvariantCulture;
        return bytes >= 1L << 30 ? $"{(bytes / (double)(1L << 30)).ToString("F2", inv)} GiB"
            : bytes >= 1L << 20 ? $"{(bytes / (double)(1L << 20)).ToString("F2", inv)} MiB"
            : $"{(bytes / 1024.0).ToString("F2", inv)} KiB";
    }
}

using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;
using QuantLlama.Compute;
using QuantLlama.Models;

namespace QuantLlama.EndToEnd;

/// <summary>What one process measured: each figure once (the parent takes medians over processes).</summary>
public sealed record RunResult
{
    public required string Engine { get; init; }
    public double TtftSeconds { get; init; }
    public double LoadSeconds { get; init; }
    public Dictionary<int, double> PromptTokensPerSecond { get; init; } = [];
    public double GenerateTokensPerSecond { get; init; }
    public long PeakRssBytes { get; init; }
    public bool Cold { get; init; }
}

public sealed record RunRequest(string Model, int Threads, int[] PromptLengths, int GenerateTokens, int ShortPrompt, long StartUnixMs, bool Cold);

/// <summary>The calls a test makes, so both engines are driven by the same code.</summary>
public interface IEngine : IDisposable
{
    /// <summary>Runs tokens from position start (the cache holds 0..start-1); returns the argmax of the last logits.</summary>
    int Decode(ReadOnlySpan<int> tokens, int start);

    /// <summary>Forgets the sequence (the next Decode starts at position 0).</summary>
    void Clear();
}

public static class EngineRunner
{
    public const int ContextSize = 1024;

    /// <summary>Which of LLamaSharp.Backend.Cpu's native builds llama.cpp runs: the widest this CPU (and .NET) takes.</summary>
    internal static AvxLevel LlamaCppAvxLevel => System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? AvxLevel.Avx512
        : System.Runtime.Intrinsics.X86.Avx2.IsSupported ? AvxLevel.Avx2
        : System.Runtime.Intrinsics.X86.Avx.IsSupported ? AvxLevel.Avx : AvxLevel.None;

    public static string LlamaCppBuild => LlamaCppAvxLevel switch
    {
        AvxLevel.Avx512 => "AVX-512",
        AvxLevel.Avx2 => "AVX2",
        AvxLevel.Avx => "AVX",
        _ => "generic",
    };

    public static RunResult Run(string engineName, RunRequest request)
    {
        var processStart = DateTimeOffset.FromUnixTimeMilliseconds(request.StartUnixMs);
        long t0 = Stopwatch.GetTimestamp();
        using IEngine engine = engineName switch
        {
            "ours" => new OurEngine(request.Model, request.Threads),
            // Ours with the mapped weights alone (no copy repacked for prompts), for comparing the two.
            "ours-mapped" => new OurEngine(request.Model, request.Threads, repack: false),
            "llamacpp" => new LlamaCppEngine(request.Model, request.Threads),
            _ => throw new ArgumentException($"unknown engine {engineName}"),
        };
        double load = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        int vocab = 32000;
        var rng = new Random(7);
        int[] Tokens(int n) => [1, .. Enumerable.Range(0, n - 1).Select(_ => rng.Next(3, vocab))];

        // Time to first token: a short prompt, from process start to the first sampled (argmax) token.
        var prompt = Tokens(request.ShortPrompt);
        int next = engine.Decode(prompt, 0);
        double ttft = (DateTimeOffset.UtcNow - processStart).TotalSeconds;

        // tg: tokens fed one at a time after the short prompt.
        long tg0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < request.GenerateTokens; i++) next = engine.Decode([next], prompt.Length + i);
        double tg = request.GenerateTokens / Stopwatch.GetElapsedTime(tg0).TotalSeconds;

        // pp: each prompt length from an empty cache, after one unmeasured warm-up batch.
        engine.Clear();
        engine.Decode(Tokens(Math.Min(64, request.PromptLengths.Min())), 0);
        var pp = new Dictionary<int, double>();
        foreach (int n in request.PromptLengths)
        {
            engine.Clear();
            var tokens = Tokens(n);
            long p0 = Stopwatch.GetTimestamp();
            engine.Decode(tokens, 0);
            pp[n] = n / Stopwatch.GetElapsedTime(p0).TotalSeconds;
        }
        return new RunResult
        {
            Engine = engineName, TtftSeconds = ttft, LoadSeconds = load, PromptTokensPerSecond = pp,
            GenerateTokensPerSecond = tg, PeakRssBytes = PeakRss(), Cold = request.Cold,
        };
    }

    /// <summary>VmHWM: the process's peak resident set, mapped file pages included.</summary>
    public static long PeakRss()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        return 0;
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    private sealed class OurEngine : IEngine
    {
        private readonly InferenceContext _model;

        public OurEngine(string path, int threads, bool repack = true)
        {
            WorkerPool.SetThreadCount(threads);
            _model = InferenceContext.Load(path, new ContextOptions { ContextSize = ContextSize, MaxBatch = 512 },
                // The first prompt follows the load at once: a warm-up would only move its cost (ModelOptions.WarmUp).
                modelOptions: new ModelOptions { RepackForPrompts = repack, WarmUp = false });
        }

        public int Decode(ReadOnlySpan<int> tokens, int start) => ArgMax(_model.Forward(tokens, start));

        public void Clear() { }

        public void Dispose() => _model.Dispose();
    }

    private sealed class LlamaCppEngine : IEngine
    {
        private readonly LLamaWeights _weights;
        private readonly LLamaContext _context;
        private readonly LLamaBatch _batch = new();

        public LlamaCppEngine(string path, int threads)
        {
            NativeLibraryConfig.All.WithCuda(false).WithVulkan(false).WithAvx(LlamaCppAvxLevel).WithAutoFallback(true)
                .WithSearchDirectory(AppContext.BaseDirectory).WithLogCallback(static (_, _) => { });
            NativeApi.llama_empty_call();
            NativeLogConfig.llama_log_set(static (_, _) => { });
            var parameters = new ModelParams(path)
            {
                ContextSize = ContextSize,
                GpuLayerCount = 0,
                Threads = threads,
                BatchThreads = threads,
                BatchSize = 512,
                UBatchSize = 512,
            };
            _weights = LLamaWeights.LoadFromFile(parameters);
            _context = _weights.CreateContext(parameters);
        }

        public int Decode(ReadOnlySpan<int> tokens, int start)
        {
            _batch.Clear();
            for (int i = 0; i < tokens.Length; i++)
                _batch.Add((LLamaToken)tokens[i], start + i, LLamaSeqId.Zero, i == tokens.Length - 1);
            var result = _context.Decode(_batch);
            if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
            return ArgMax(_context.NativeHandle.GetLogitsIth(_batch.TokenCount - 1));
        }

        public void Clear() => _context.NativeHandle.MemoryClear(true);

        public void Dispose()
        {
            _context.Dispose();
            _weights.Dispose();
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;
using System.Text.Json;
using QuantLlama.EndToEnd;
using QuantLlama.Gguf;

// End-to-end speed, QuantLlama against llama.cpp (LLamaSharp 0.30.0) on the same synthetic GGUFs. With no options it
// prints this machine's table (its CPU and instruction sets at the top): Q4_0, Q8_0, Q4_K_M and Q6_K, pp43, pp512
// and tg64, ours against llama.cpp and their ratios.
//   dotnet run -c Release --project bench/QuantLlama.EndToEnd -- [--dir /tmp/quantllama-bench] [--shape tinyllama]
//     [--types Q4_0,Q8_0,Q4_K_M,Q6_K] [--reps 3] [--threads 2] [--pp 43,512] [--tg 64] [--out results.md] [--clean]
//     [--engines ours,llamacpp] (also ours-mapped: without the weights repacked for prompts) [--vocab ggml-vocab-llama-spm.gguf] [--generate-only]
// Each measurement is its own process (so load time, time to first token and peak RSS are real), the two engines
// alternating run by run on the same file; the first run of each engine per model starts with the file evicted
// from the page cache (cold), the rest warm. Figures are medians over the warm runs.

var inv = CultureInfo.InvariantCulture;
var options = ParseArgs(args);

if (options.TryGetValue("child", out var childEngine))
{
    var request = JsonSerializer.Deserialize<RunRequest>(options["request"])!;
    var result = EngineRunner.Run(childEngine, request);
    Console.WriteLine("RESULT " + JsonSerializer.Serialize(result));
    return 0;
}

string dir = options.GetValueOrDefault("dir") ?? Environment.GetEnvironmentVariable("QUANTLLAMA_BENCH_DIR") ?? "/tmp/quantllama-bench";
var shape = ModelShape.Parse(options.GetValueOrDefault("shape") ?? "tinyllama");
string[] types = (options.GetValueOrDefault("types") ?? "Q4_0,Q8_0,Q4_K_M,Q6_K").Split(',', StringSplitOptions.RemoveEmptyEntries);
int reps = int.Parse(options.GetValueOrDefault("reps") ?? "3", inv);
int threads = int.Parse(options.GetValueOrDefault("threads") ?? "2", inv);
int[] promptLengths = (options.GetValueOrDefault("pp") ?? "43,512").Split(',').Select(s => int.Parse(s, inv)).ToArray();
int tgTokens = int.Parse(options.GetValueOrDefault("tg") ?? "64", inv);
string? outPath = options.GetValueOrDefault("out");
string[] engines = (options.GetValueOrDefault("engines") ?? "ours,llamacpp").Split(',');
string vocab = options.GetValueOrDefault("vocab") ?? FindVocab();

if (options.ContainsKey("generate-only"))
{
    foreach (string type in types) Console.WriteLine(SyntheticModels.Ensure(dir, shape, type, vocab, s => Console.Error.WriteLine(s)));
    return 0;
}

var report = new StringBuilder();
void Say(string line)
{
    Console.WriteLine(line);
    report.AppendLine(line);
    if (outPath != null) File.WriteAllText(outPath, report.ToString());
}

Console.Error.WriteLine($"models in {dir}; shape {shape}; {reps} runs per engine, {threads} threads");
Say($"Machine: {CpuModel()}, {Environment.ProcessorCount} logical CPUs, {MemTotalGiB():F1} GiB RAM, load average {LoadAverage()} at start");
Say($"Instruction sets: {CpuFeatures.Describe()}");
Say($"Engines: QuantLlama on its {QuantLlama.Quants.Kernels.Path} path; "
    + $"llama.cpp through LLamaSharp {LlamaSharpVersion()}, its {EngineRunner.LlamaCppBuild} CPU build");
Say($"Shape {shape.Name}: dim {shape.Dim}, ff {shape.FeedForward}, {shape.Layers} layers, {shape.Heads} heads, {shape.KvHeads} KV heads; "
    + $"{threads} threads; {(reps > 1 ? $"median of {reps - 1} warm runs per engine (plus 1 cold)" : "1 cold run per engine")}; pp {string.Join("/", promptLengths)}, tg {tgTokens} after an 8-token prompt; n_ctx {EngineRunner.ContextSize}, f16 KV cache");
Say("");
string pps = string.Join(" | ", promptLengths.Select(p => $"pp{p} t/s"));
Say($"| type | engine | {pps} | tg{tgTokens} t/s | tg % of bw limit | TTFT warm s | TTFT cold s | load s | peak RSS MiB | file MiB |");
Say("|---|---|" + string.Concat(Enumerable.Repeat("---:|", promptLengths.Length + 7)));

foreach (string type in types)
{
    string path = SyntheticModels.Ensure(dir, shape, type, vocab, s => Console.Error.WriteLine(s));
    long fileBytes = new FileInfo(path).Length;
    long bytesPerToken = WeightBytesPerToken(path);
    var runs = engines.ToDictionary(e => e, _ => new List<RunResult>());
    var bandwidths = new List<double> { StreamingReadBandwidth(threads) };
    for (int r = 0; r < reps; r++)
    {
        // Alternate which engine goes first, so a drift in machine load hits both alike.
        var order = r % 2 == 0 ? engines : engines.Reverse().ToArray();
        foreach (var engine in order)
        {
            bool cold = runs[engine].Count == 0;
            if (cold) EvictFromPageCache(path);
            var result = RunChild(engine, new RunRequest(path, threads, promptLengths, tgTokens, 8, 0, cold));
            runs[engine].Add(result);
            Console.Error.WriteLine($"  {type} {engine} run {r + 1}{(cold ? " (cold)" : "")}: " +
                string.Join(", ", result.PromptTokensPerSecond.Select(kv => $"pp{kv.Key} {kv.Value:F2}")) +
                $", tg {result.GenerateTokensPerSecond:F2} t/s, TTFT {result.TtftSeconds:F2} s, RSS {result.PeakRssBytes / 1048576.0:F0} MiB");
        }
        if (r == reps / 2) bandwidths.Add(StreamingReadBandwidth(threads));
    }
    bandwidths.Add(StreamingReadBandwidth(threads));
    double bandwidth = Median(bandwidths);
    var medians = new Dictionary<string, (double[] pp, double tg)>();
    foreach (var engine in engines)
    {
        var all = runs[engine];
        var warm = all.Where(x => !x.Cold).ToList();
        if (warm.Count == 0) warm = all;
        var pp = promptLengths.Select(p => Median(warm.Select(x => x.PromptTokensPerSecond[p]))).ToArray();
        double tg = Median(warm.Select(x => x.GenerateTokensPerSecond));
        medians[engine] = (pp, tg);
        double limit = bandwidth / bytesPerToken;
        string cold = all.FirstOrDefault(x => x.Cold) is { } c ? c.TtftSeconds.ToString("F2", inv) : "-";
        Say($"| {type} | {engine} | {string.Join(" | ", pp.Select(v => v.ToString("F2", inv)))} | {tg.ToString("F2", inv)} | "
            + $"{(100 * tg / limit).ToString("F0", inv)}% | {Median(warm.Select(x => x.TtftSeconds)).ToString("F2", inv)} | {cold} | "
            + $"{Median(warm.Select(x => x.LoadSeconds)).ToString("F2", inv)} | {(Median(all.Select(x => (double)x.PeakRssBytes)) / 1048576).ToString("F0", inv)} | "
            + $"{(fileBytes / 1048576.0).ToString("F0", inv)} |");
    }
    if (medians.ContainsKey("ours") && medians.ContainsKey("llamacpp"))
    {
        var (opp, otg) = medians["ours"];
        var (lpp, ltg) = medians["llamacpp"];
        Say($"| {type} | ratio ours/llama.cpp | {string.Join(" | ", opp.Zip(lpp, (a, b) => (a / b).ToString("F2", inv)))} | {(otg / ltg).ToString("F2", inv)} | | | | | | |");
    }
    Console.Error.WriteLine($"  {type}: streaming read {string.Join(", ", bandwidths.Select(b => (b / 1e9).ToString("F1", inv)))} GB/s; "
        + $"{bytesPerToken / 1048576.0:F0} MiB of weights read per token; limit {bandwidth / bytesPerToken:F1} t/s");
    report.AppendLine($"<!-- {type}: bandwidth {bandwidth / 1e9:F1} GB/s, {bytesPerToken / 1048576.0:F0} MiB/token, limit {bandwidth / bytesPerToken:F1} t/s -->");
}
Say("");
Say($"Load average at end: {LoadAverage()}");
if (outPath != null) File.WriteAllText(outPath, report.ToString());
if (options.ContainsKey("clean"))
    foreach (var type in types)
    {
        File.Delete(SyntheticModels.PathFor(dir, shape, type));
        if (!type.StartsWith('F')) File.Delete(SyntheticModels.PathFor(dir, shape, "F16"));
    }
return 0;

static RunResult RunChild(string engine, RunRequest request)
{
    var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    string self = typeof(EngineRunner).Assembly.Location;
    if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(self);
    psi.ArgumentList.Add("--child");
    psi.ArgumentList.Add(engine);
    psi.ArgumentList.Add("--request");
    request = request with { StartUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() };
    psi.ArgumentList.Add(JsonSerializer.Serialize(request));
    using var process = Process.Start(psi)!;
    var stderr = process.StandardError.ReadToEndAsync();
    string stdout = process.StandardOutput.ReadToEnd();
    process.WaitForExit();
    var line = stdout.Split('\n').FirstOrDefault(l => l.StartsWith("RESULT ", StringComparison.Ordinal));
    if (process.ExitCode != 0 || line == null)
        throw new InvalidOperationException($"{engine} run failed (exit {process.ExitCode}): {stderr.Result}");
    return JsonSerializer.Deserialize<RunResult>(line["RESULT ".Length..])!;
}

static Dictionary<string, string> ParseArgs(string[] args)
{
    var d = new Dictionary<string, string>();
    for (int i = 0; i < args.Length; i++)
    {
        if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument {args[i]}");
        string key = args[i][2..];
        d[key] = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
    }
    return d;
}

static double Median(IEnumerable<double> values)
{
    var s = values.Order().ToArray();
    if (s.Length == 0) return double.NaN;
    return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
}

/// <summary>Bytes of weights one generated token reads: every tensor but the embedding table (one row of it).</summary>
static long WeightBytesPerToken(string path)
{
    using var file = GgufFile.Open(path);
    long total = 0;
    foreach (var t in file.Tensors)
        total += t.Name == "token_embd.weight" ? t.ByteSize / t.Dimensions[1] : t.ByteSize;
    return total;
}

/// <summary>
/// Read bandwidth of a 1 GiB buffer (far beyond the caches) summed with 256-bit loads by <paramref name="threads"/>
/// threads, as generation streams the weights: the best of three passes, in bytes/s.
/// </summary>
static unsafe double StreamingReadBandwidth(int threads)
{
    const long size = 1L << 30;
    byte* buffer = (byte*)NativeMemory.AlignedAlloc((nuint)size, 64);
    try
    {
        for (long offset = 0; offset < size; offset += 1 << 28) new Span<byte>(buffer + offset, 1 << 28).Fill(1);
        double best = 0;
        for (int pass = 0; pass < 3; pass++)
        {
            long slice = size / threads;
            var sums = new float[threads];
            long t0 = Stopwatch.GetTimestamp();
            nint address = (nint)buffer;
            var workers = Enumerable.Range(0, threads).Select(i => new Thread(() =>
            {
                byte* start = (byte*)address;
                var acc0 = Vector256<float>.Zero;
                var acc1 = Vector256<float>.Zero;
                float* p = (float*)(start + i * slice), end = (float*)(start + (i + 1) * slice);
                for (; p < end; p += 16)
                {
                    acc0 += Vector256.Load(p);
                    acc1 += Vector256.Load(p + 8);
                }
                sums[i] = Vector256.Sum(acc0 + acc1);
            })).ToList();
            workers.ForEach(w => w.Start());
            workers.ForEach(w => w.Join());
            best = Math.Max(best, size / Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        return best;
    }
    finally
    {
        NativeMemory.AlignedFree(buffer);
    }
}

/// <summary>Drops the file's pages from the page cache (posix_fadvise DONTNEED), so the next load reads the disk.</summary>
static void EvictFromPageCache(string path)
{
    using var handle = File.OpenHandle(path);
    _ = Native.posix_fadvise(handle.DangerousGetHandle().ToInt32(), 0, 0, 4);
}

static string FindVocab()
{
    foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "vocab", "ggml-vocab-llama-spm.gguf");
            if (File.Exists(candidate)) return candidate;
            candidate = Path.Combine(d.FullName, "..", "shared", "vocab", "ggml-vocab-llama-spm.gguf");
            if (File.Exists(candidate)) return Path.GetFullPath(candidate);
        }
    throw new FileNotFoundException("ggml-vocab-llama-spm.gguf not found (../shared/vocab); pass --vocab FILE");
}

/// <summary>The LLamaSharp package version this build references (its assembly carries no version of its own).</summary>
static string LlamaSharpVersion()
{
    string deps = Path.Combine(AppContext.BaseDirectory, "QuantLlama.EndToEnd.deps.json");
    var match = File.Exists(deps) ? System.Text.RegularExpressions.Regex.Match(File.ReadAllText(deps), "\"LLamaSharp/([0-9.]+)\"") : null;
    return match is { Success: true } ? match.Groups[1].Value : "(version unknown)";
}

static string CpuModel() => File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";

static double MemTotalGiB() => long.Parse(File.ReadLines("/proc/meminfo").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1048576.0;

static string LoadAverage() => File.ReadAllText("/proc/loadavg").Split(' ')[0];

internal static partial class Native
{
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int posix_fadvise(int fd, long offset, long length, int advice);
}

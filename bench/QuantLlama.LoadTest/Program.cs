using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using QuantLlama.Compute;
using QuantLlama.LoadTest;
using QuantLlama.Models;
using Microsoft.Extensions.Logging;
using QuantLlama.Server;

// A bounded load generator: N concurrent clients streaming chat completions on loopback.
//   dotnet run -c Release --project bench/QuantLlama.LoadTest -- --model FILE.gguf [--threads 2] [--parallel 8]
//     [--clients 1,4,8] [--requests 32] [--time-limit 300] [--max-tokens 64] [--ubatch-size 64] [--no-batching] [--no-repack]
//   dotnet run -c Release --project bench/QuantLlama.LoadTest -- --url http://127.0.0.1:8080/ [--clients ...]
//     (any OpenAI-compatible server already running, llama-server included)
//   dotnet run -c Release --project bench/QuantLlama.LoadTest -- --model FILE --memory 10,1000 [--clients 4]
//     (the server process's resident memory and managed heap, after a full collection, at each request count)
// Without --url it starts `quantllama serve`'s server in a child process of its own, so the figures and the
// memory are the server's alone. Each client count runs after one warm-up request, sends --requests requests
// (fewer if --time-limit seconds pass first) and reports requests/s, time to first token and the time between
// streamed tokens at p50/p99, and generated tokens/s over all clients.

var inv = CultureInfo.InvariantCulture;
var options = Arguments.Parse(args);

if (options.ContainsKey("serve-child")) return await ChildServer.RunAsync(options);

int[] clientCounts = (options.GetValueOrDefault("clients") ?? "1,4,8").Split(',').Select(s => int.Parse(s, inv)).ToArray();
int requests = int.Parse(options.GetValueOrDefault("requests") ?? "32", inv);
var timeLimit = TimeSpan.FromSeconds(double.Parse(options.GetValueOrDefault("time-limit") ?? "300", inv));
int maxTokens = int.Parse(options.GetValueOrDefault("max-tokens") ?? "64", inv);

await using var target = await Target.StartAsync(options);
using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256, PooledConnectionLifetime = TimeSpan.FromMinutes(30) })
{
    BaseAddress = target.Url,
    Timeout = Timeout.InfiniteTimeSpan,
};
var load = new LoadClient(http, maxTokens);
Console.WriteLine($"Machine: {Machine.Cpu()}, {Environment.ProcessorCount} logical CPUs; load average {Machine.LoadAverage()} at start");
Console.WriteLine($"Target: {target.Description}; {maxTokens} tokens per request, greedy");

if (options.GetValueOrDefault("memory") is string checkpointList)
{
    int[] checkpoints = checkpointList.Split(',').Select(s => int.Parse(s, inv)).ToArray();
    int clients = clientCounts.Max();
    Console.WriteLine($"\n| requests served | resident MiB | managed heap MiB (after a full collection) | load average |");
    Console.WriteLine("|---:|---:|---:|---|");
    int served = 0;
    foreach (int checkpoint in checkpoints)
    {
        var run = await load.RunAsync(clients, checkpoint - served, TimeSpan.MaxValue, firstRequest: served);
        served += run.Completed;
        var memory = await target.MemoryAsync();
        Console.WriteLine($"| {served} | {memory.ResidentBytes / 1048576.0:F1} | {(memory.ManagedHeapBytes is long heap ? (heap / 1048576.0).ToString("F2", inv) : "n/a")} | {Machine.LoadAverage()} |");
    }
    return 0;
}

await load.RunAsync(1, 1, timeLimit, firstRequest: -1); // warm-up: JIT on both sides, pages of the model in memory
Console.WriteLine();
Console.WriteLine("| clients | requests | req/s | TTFT p50 ms | TTFT p99 ms | inter-token p50 ms | inter-token p99 ms | tokens/s (all clients) | tokens per step | load average |");
Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
int next = 0;
foreach (int clients in clientCounts)
{
    var before = await Counters.ReadAsync(http);
    var run = await load.RunAsync(clients, requests, timeLimit, firstRequest: next);
    var after = await Counters.ReadAsync(http);
    next += run.Completed;
    // Generated tokens per batched step, from our server's /metrics (another server: n/a).
    string perStep = after.TryGetValue("quantllama_batch_steps_total", out double steps) && steps > before.GetValueOrDefault("quantllama_batch_steps_total")
        ? ((after["quantllama_batch_generated_rows_total"] - before.GetValueOrDefault("quantllama_batch_generated_rows_total"))
            / (steps - before.GetValueOrDefault("quantllama_batch_steps_total"))).ToString("F2", inv)
        : "n/a";
    Console.WriteLine(string.Create(inv,
        $"| {clients} | {run.Completed} | {run.Completed / run.Wall.TotalSeconds:F2} | {Stats.Percentile(run.FirstToken, 50):F0} | {Stats.Percentile(run.FirstToken, 99):F0} | " +
        $"{Stats.Percentile(run.BetweenTokens, 50):F1} | {Stats.Percentile(run.BetweenTokens, 99):F1} | {run.Tokens / run.Wall.TotalSeconds:F1} | {perStep} | {Machine.LoadAverage()} |"));
}
return 0;

namespace QuantLlama.LoadTest
{
    internal static class Arguments
    {
        public static Dictionary<string, string> Parse(string[] args)
        {
            var options = new Dictionary<string, string>();
            for (int i = 0; i < args.Length; i++)
            {
                if (!args[i].StartsWith("--")) throw new ArgumentException($"unexpected argument {args[i]}");
                string key = args[i][2..];
                options[key] = i + 1 < args.Length && !args[i + 1].StartsWith("--") ? args[++i] : "";
            }
            return options;
        }
    }

    /// <summary>What one client count's run measured.</summary>
    internal sealed record RunResult(int Completed, long Tokens, TimeSpan Wall, List<double> FirstToken, List<double> BetweenTokens);

    /// <summary>Streams chat completions and times each streamed piece of text as it arrives.</summary>
    internal sealed class LoadClient(HttpClient http, int maxTokens)
    {
        private static readonly string[] Topics =
            ["a cat", "the sea", "a red ball", "a tall tree", "two friends", "a rainy day", "a little boat", "the moon"];

        /// <summary>
        /// <paramref name="count"/> requests from <paramref name="clients"/> clients, each sending its next request as
        /// soon as its last one ends, until all are sent or <paramref name="limit"/> passes.
        /// </summary>
        public async Task<RunResult> RunAsync(int clients, int count, TimeSpan limit, int firstRequest)
        {
            var firstToken = new List<double>();
            var between = new List<double>();
            long tokens = 0;
            int issued = 0, completed = 0;
            var wall = Stopwatch.StartNew();
            var workers = Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
            {
                while (wall.Elapsed < limit)
                {
                    int index = Interlocked.Increment(ref issued) - 1;
                    if (index >= count) break;
                    var one = await StreamOneAsync(firstRequest + index);
                    lock (firstToken)
                    {
                        if (one.FirstTokenMs is double ttft) firstToken.Add(ttft);
                        between.AddRange(one.BetweenMs);
                        tokens += one.Tokens;
                        completed++;
                    }
                }
            })).ToArray();
            await Task.WhenAll(workers);
            return new RunResult(completed, tokens, wall.Elapsed, firstToken, between);
        }

        private async Task<(double? FirstTokenMs, List<double> BetweenMs, int Tokens)> StreamOneAsync(int index)
        {
            var body = new
            {
                model = "default",
                messages = new[] { new { role = "user", content = $"Request {index}: write a short story about {Topics[Math.Abs(index) % Topics.Length]}." } },
                max_tokens = maxTokens,
                temperature = 0,
                stream = true,
                stream_options = new { include_usage = true },
            };
            var clock = Stopwatch.StartNew();
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = JsonContent.Create(body) };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            if (!response.IsSuccessStatusCode)
                throw new HttpRequestException($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(), Encoding.UTF8);
            double? first = null, last = null;
            var between = new List<double>();
            int pieces = 0, usageTokens = -1;
            while (await reader.ReadLineAsync() is string line)
            {
                if (!line.StartsWith("data: ")) continue;
                string data = line[6..];
                if (data == "[DONE]") break;
                double now = clock.Elapsed.TotalMilliseconds;
                using var chunk = JsonDocument.Parse(data);
                if (chunk.RootElement.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                    usageTokens = usage.GetProperty("completion_tokens").GetInt32();
                if (!chunk.RootElement.TryGetProperty("choices", out var choices) || choices.GetArrayLength() == 0) continue;
                if (!choices[0].TryGetProperty("delta", out var delta) || !delta.TryGetProperty("content", out var content)
                    || content.ValueKind != JsonValueKind.String || content.GetString()!.Length == 0) continue;
                pieces++;
                if (first == null) first = now;
                else between.Add(now - last!.Value);
                last = now;
            }
            return (first, between, usageTokens >= 0 ? usageTokens : pieces);
        }
    }

    /// <summary>The counters of a Prometheus /metrics page; empty when the server has none.</summary>
    internal static class Counters
    {
        public static async Task<Dictionary<string, double>> ReadAsync(HttpClient http)
        {
            var values = new Dictionary<string, double>();
            using var response = await http.GetAsync("metrics");
            if (!response.IsSuccessStatusCode) return values;
            foreach (string line in (await response.Content.ReadAsStringAsync()).Split('\n'))
            {
                string[] parts = line.Split(' ');
                if (parts.Length == 2 && !line.StartsWith('#') && double.TryParse(parts[1], CultureInfo.InvariantCulture, out double value))
                    values[parts[0]] = value;
            }
            return values;
        }
    }

    internal static class Stats
    {
        /// <summary>Nearest-rank percentile; NaN for no values.</summary>
        public static double Percentile(List<double> values, double percent)
        {
            if (values.Count == 0) return double.NaN;
            var sorted = values.Order().ToArray();
            int rank = (int)Math.Ceiling(percent / 100 * sorted.Length);
            return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
        }
    }

    internal static class Machine
    {
        public static string LoadAverage()
            => File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

        public static string Cpu()
        {
            if (!File.Exists("/proc/cpuinfo")) return "unknown CPU";
            string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"));
            return line?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        }
    }

    /// <summary>The server under load: one this program started in a child process, or one at a given URL.</summary>
    internal sealed class Target : IAsyncDisposable
    {
        private readonly Process? _child;

        private Target(Uri url, string description, Process? child)
        {
            Url = url;
            Description = description;
            _child = child;
        }

        public Uri Url { get; }

        public string Description { get; }

        public static async Task<Target> StartAsync(Dictionary<string, string> options)
        {
            if (options.GetValueOrDefault("url") is string url)
                return new Target(new Uri(url.EndsWith('/') ? url : url + "/"), $"server at {url}", null);
            string model = options.GetValueOrDefault("model") ?? throw new ArgumentException("--model FILE or --url URL is required");
            var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardInput = true };
            foreach (string a in (string[])["--serve-child", "--model", model]) start.ArgumentList.Add(a);
            foreach (string key in (string[])["threads", "parallel", "ubatch-size", "ctx"])
                if (options.GetValueOrDefault(key) is string value)
                {
                    start.ArgumentList.Add("--" + key);
                    start.ArgumentList.Add(value);
                }
            if (options.ContainsKey("no-batching")) start.ArgumentList.Add("--no-batching");
            if (options.ContainsKey("no-repack")) start.ArgumentList.Add("--no-repack");
            if (Path.GetFileName(start.FileName) is "dotnet" or "dotnet.exe") start.ArgumentList.Insert(0, typeof(Target).Assembly.Location);
            var child = Process.Start(start)!;
            string? ready = await child.StandardOutput.ReadLineAsync();
            if (ready == null || !ready.StartsWith("ready ")) throw new InvalidOperationException($"the server did not start: {ready}");
            string[] parts = ready.Split(' ', 3);
            return new Target(new Uri(parts[1]), $"quantllama serve ({parts[2]}), pid {child.Id}", child);
        }

        /// <summary>The child server's memory after a full collection (a server at a URL: its resident memory only, when on this machine).</summary>
        public async Task<(long ResidentBytes, long? ManagedHeapBytes)> MemoryAsync()
        {
            if (_child == null) return (0, null);
            await _child.StandardInput.WriteLineAsync("memory");
            string reply = await _child.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("the server exited");
            var parts = reply.Split(' ');
            return (long.Parse(parts[1], CultureInfo.InvariantCulture), long.Parse(parts[2], CultureInfo.InvariantCulture));
        }

        public async ValueTask DisposeAsync()
        {
            if (_child == null) return;
            _child.StandardInput.Close(); // the child stops its server when its input ends
            if (!_child.WaitForExit(30_000)) _child.Kill();
            await _child.WaitForExitAsync();
            _child.Dispose();
        }
    }

    /// <summary>
    /// The child process: `quantllama serve`'s server on a free loopback port. It says "ready URL description" once
    /// the model is loaded, answers "memory" on its input with its resident bytes and managed heap bytes after a
    /// full collection, and stops when its input ends.
    /// </summary>
    internal static class ChildServer
    {
        public static async Task<int> RunAsync(Dictionary<string, string> options)
        {
            var inv = CultureInfo.InvariantCulture;
            int threads = int.Parse(options.GetValueOrDefault("threads") ?? "2", inv);
            WorkerPool.SetThreadCount(threads);
            var serverOptions = new ServerOptions
            {
                ModelPath = options["model"],
                Model = new ModelOptions { RepackForPrompts = !options.ContainsKey("no-repack") },
                Port = 0,
                Parallel = int.Parse(options.GetValueOrDefault("parallel") ?? "8", inv),
                PromptBatch = int.Parse(options.GetValueOrDefault("ubatch-size") ?? ServerOptions.DefaultPromptBatch.ToString(inv), inv),
                ContextSize = options.GetValueOrDefault("ctx") is string ctx ? int.Parse(ctx, inv) : null,
                BatchedDecoding = !options.ContainsKey("no-batching"),
                MaxQueue = 256,
            };
            await using var server = await LlamaServer.StartAsync(serverOptions, logging => logging.ClearProviders());
            await server.ModelLoaded;
            Console.WriteLine($"ready {server.BaseAddress} {threads} threads, {serverOptions.Parallel} slots of {serverOptions.ContextSize?.ToString(inv) ?? "the model's default"} positions, " +
                $"{(serverOptions.BatchedDecoding ? $"batched, ubatch {serverOptions.PromptBatch}" : "not batched")}");
            while (Console.ReadLine() is string command)
                if (command == "memory")
                {
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                    GC.Collect();
                    using var self = Process.GetCurrentProcess();
                    Console.WriteLine(string.Create(inv, $"memory {self.WorkingSet64} {GC.GetTotalMemory(forceFullCollection: true)}"));
                }
            await server.StopAsync();
            return 0;
        }
    }
}

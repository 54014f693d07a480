using System.CommandLine;
using QuantLlama.Compute;
using QuantLlama.Generation;
using QuantLlama.Models;

namespace QuantLlama.Cli.Commands;

/// <summary>`quantllama bench`: llama-bench's pp/tg table for our engine alone.</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Measure prompt processing (pp) and generation (tg) speed, like llama-bench");
        var model = new Option<string>("--model", "-m") { Description = "GGUF (or legacy GGML) model file", Required = true };
        var prompt = new Option<int>("--n-prompt", "-p") { Description = "Prompt tokens processed as one batch (0: skip pp)", DefaultValueFactory = _ => 512 };
        var generate = new Option<int>("--n-gen", "-n") { Description = "Tokens generated one at a time (0: skip tg)", DefaultValueFactory = _ => 128 };
        var threads = new Option<int?>("--threads", "-t") { Description = "Threads (default: all cores)" };
        var reps = new Option<int>("--repetitions", "-r") { Description = "Measured repetitions of each test (after one warm-up)", DefaultValueFactory = _ => 5 };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Print each repetition's speed to stderr" };
        var contexts = new Option<int>("--contexts", "-np") { Description = "Conversations on one loaded model, run at the same time (t/s of all together)", DefaultValueFactory = _ => 1 };
        var batched = new Option<bool>("--batched", "-cb") { Description = "With --contexts, generate all contexts' tokens together, one pass through the weights per step (continuous batching)" };
        var noRepack = RepackOption.Create();
        foreach (var o in new Option[] { model, prompt, generate, threads, reps, verbose, contexts, batched, noRepack }) command.Options.Add(o);
        var attention = new AttentionOptions(command);
        command.SetAction(parse => CliErrors.Run(() =>
        {
            var options = new BenchmarkOptions
            {
                PromptTokens = parse.GetValue(prompt),
                GenerateTokens = parse.GetValue(generate),
                Repetitions = parse.GetValue(reps),
                Contexts = parse.GetValue(contexts),
                Batched = parse.GetValue(batched),
            };
            try
            {
                options.Validate();
            }
            catch (ArgumentException e)
            {
                throw new CliUsageException(e.Message);
            }
            int? t = parse.GetValue(threads);
            if (t is <= 0) throw new CliUsageException($"--threads must be positive, got {t}");
            if (t is int count) WorkerPool.SetThreadCount(count);
            string path = parse.GetValue(model)!;
            if (!File.Exists(path)) throw new FileNotFoundException($"model file '{path}' does not exist");
            int context = Math.Max(1, Math.Max(options.PromptTokens, options.GenerateTokens));
            using var weights = LlamaModel.Load(path, options: new ModelOptions { RepackForPrompts = !parse.GetValue(noRepack), WarmUp = false });
            var conversations = Enumerable.Range(0, options.Contexts)
                .Select(_ => weights.CreateContext(attention.Apply(parse, new ContextOptions { ContextSize = context, MaxBatch = Math.Max(1, options.PromptTokens) }))).ToList();
            try
            {
                var log = parse.GetValue(verbose) ? (Action<string>)(s => Console.Error.WriteLine(s)) : null;
                var results = Benchmark.Run(conversations, options, log);
                Console.Out.Write(Benchmark.FormatTable(Path.GetFileName(path), weights, WorkerPool.ThreadCount, results));
                if (options.Contexts > 1)
                    Console.Out.WriteLine($"{options.Contexts} contexts at once{(options.Batched ? ", tg batched" : "")}; t/s of all together");
                if (PeakResidentMiB() is long peak) Console.Error.WriteLine($"peak RSS: {peak} MiB");
                if (weights.RepackedBytes > 0) Console.Error.WriteLine($"repacked for prompts: {weights.RepackedBytes / 1024.0 / 1024.0:F2} MiB");
            }
            finally
            {
                foreach (var c in conversations) c.Dispose();
            }
            return 0;
        }));
        return command;
    }

    /// <summary>The process's peak resident memory (Linux VmHWM), or null where it cannot be read.</summary>
    private static long? PeakResidentMiB()
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return null;
        var line = File.ReadLines(status).FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line != null && long.TryParse(line[6..].Trim().Split(' ')[0], out long kib) ? kib / 1024 : null;
    }
}

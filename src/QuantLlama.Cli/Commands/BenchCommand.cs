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
        foreach (var o in new Option[] { model, prompt, generate, threads, reps, verbose }) command.Options.Add(o);
        var attention = new AttentionOptions(command);
        command.SetAction(parse => CliErrors.Run(() =>
        {
            var options = new BenchmarkOptions
            {
                PromptTokens = parse.GetValue(prompt),
                GenerateTokens = parse.GetValue(generate),
                Repetitions = parse.GetValue(reps),
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
            using var llama = LlamaModel.Load(path, attention.Apply(parse, new LlamaModelOptions { ContextSize = context, MaxBatch = Math.Max(1, options.PromptTokens) }));
            var log = parse.GetValue(verbose) ? (Action<string>)(s => Console.Error.WriteLine(s)) : null;
            var results = Benchmark.Run(llama, options, log);
            Console.Out.Write(Benchmark.FormatTable(Path.GetFileName(path), llama, WorkerPool.ThreadCount, results));
            return 0;
        }));
        return command;
    }
}

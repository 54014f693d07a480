using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Compute;
using QuantLlama.Generation;
using QuantLlama.Hub;
using QuantLlama.Models;
using QuantLlama.Sampling;
using QuantLlama.Tokenizers;

namespace QuantLlama.Cli.Commands;

/// <summary>The root command: text generation with candle's quantized example's flags.</summary>
public static class GenerateCommand
{
    public const string DefaultPrompt = "My favorite theorem is ";

    public static RootCommand Create()
    {
        var root = new RootCommand("QuantLlama: fast inference of quantized LLaMA-family models (GGUF and GGML), in pure C#.");
        var model = new Option<string?>("--model") { Description = "GGUF (or legacy GGML) model file; downloaded from the Hub for --which when absent" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Hugging Face tokenizer.json to use instead of the model file's vocabulary" };
        var which = new Option<string>("--which") { Description = "Model to use when --model is not given (see `quantllama models`)", DefaultValueFactory = _ => ModelRegistry.DefaultName };
        var prompt = new Option<string>("--prompt") { Description = "Prompt text, or 'interactive', or 'chat'", DefaultValueFactory = _ => DefaultPrompt };
        var sampleLen = new Option<int>("--sample-len", "-n") { Description = "Tokens to sample per prompt", DefaultValueFactory = _ => 1000 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature (0 or less: greedy)", DefaultValueFactory = _ => 0.8 };
        var topP = new Option<double?>("--top-p") { Description = "Nucleus sampling probability cutoff" };
        var topK = new Option<int?>("--top-k") { Description = "Only sample among the k most probable tokens" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the sampling RNG", DefaultValueFactory = _ => 299792458UL };
        var repeatPenalty = new Option<float>("--repeat-penalty") { Description = "Penalty for repeating tokens (1 means none)", DefaultValueFactory = _ => 1.1f };
        var repeatLastN = new Option<int>("--repeat-last-n") { Description = "Context size the repeat penalty looks at", DefaultValueFactory = _ => 64 };
        var splitPrompt = new Option<bool>("--split-prompt") { Description = "Process the prompt one token at a time" };
        var verbosePrompt = new Option<bool>("--verbose-prompt") { Description = "Print each prompt token as id -> 'piece'" };
        var gqa = new Option<int?>("--gqa") { Description = "Group-query attention factor for legacy GGML files (8 for Llama-2-70B)" };
        var cpu = new Option<bool>("--cpu") { Description = "Run on the CPU (the only device; accepted for candle compatibility)" };
        var tracing = new Option<bool>("--tracing") { Description = "Write a Chrome trace of the forward pass's spans (trace-TIMESTAMP.json)" };
        var threads = new Option<int?>("--threads", "-t") { Description = "Worker threads for the matrix products (default: all cores)" };
        var ctx = new Option<int?>("--ctx") { Description = "Positions in the KV cache (default: the model's context length, at most 4096)" };
        var system = new Option<string?>("--system") { Description = "System prompt for --prompt chat" };
        var noWarmup = new Option<bool>("--no-warmup") { Description = "With --prompt interactive or chat: skip the throwaway forward pass run at load while the first line is typed (the first prompt then compiles and faults in the model itself)" };
        foreach (var o in new Option[] { model, tokenizer, which, prompt, sampleLen, temperature, topP, topK, seed, repeatPenalty,
                     repeatLastN, splitPrompt, verbosePrompt, gqa, cpu, tracing, threads, ctx, system, noWarmup })
            root.Options.Add(o);
        var attention = new AttentionOptions(root);

        root.SetAction(parse => Run(new Arguments
        {
            Model = parse.GetValue(model),
            Tokenizer = parse.GetValue(tokenizer),
            Which = parse.GetValue(which)!,
            Prompt = parse.GetValue(prompt)!,
            SampleLength = parse.GetValue(sampleLen),
            Temperature = parse.GetValue(temperature),
            TopP = parse.GetValue(topP),
            TopK = parse.GetValue(topK),
            Seed = parse.GetValue(seed),
            RepeatPenalty = parse.GetValue(repeatPenalty),
            RepeatLastN = parse.GetValue(repeatLastN),
            SplitPrompt = parse.GetValue(splitPrompt),
            VerbosePrompt = parse.GetValue(verbosePrompt),
            Gqa = parse.GetValue(gqa),
            Tracing = parse.GetValue(tracing),
            Threads = parse.GetValue(threads),
            Context = parse.GetValue(ctx),
            System = parse.GetValue(system),
            // A single prompt follows the load at once, so a warm-up would only delay it by the warm-up's own rows.
            ModelOptions = new ModelOptions { WarmUp = !parse.GetValue(noWarmup) && parse.GetValue(prompt) is "interactive" or "chat" },
            ContextOptions = attention.Apply(parse, new ContextOptions { ContextSize = parse.GetValue(ctx) }),
        }));
        return root;
    }

    private sealed record Arguments
    {
        public string? Model, Tokenizer, System;
        public required string Which, Prompt;
        public int SampleLength, RepeatLastN;
        public double Temperature;
        public double? TopP;
        public int? TopK, Gqa, Threads, Context;
        public ulong Seed;
        public float RepeatPenalty;
        public bool SplitPrompt, VerbosePrompt, Tracing;
        public required ContextOptions ContextOptions;
        public required ModelOptions ModelOptions;
    }

    private static void Validate(Arguments a)
    {
        ModelRegistry.Get(a.Which); // an unknown name is an error even beside --model, as in candle
        if (a.SampleLength < 0) throw new CliUsageException($"--sample-len must not be negative, got {a.SampleLength}");
        if (!double.IsFinite(a.Temperature)) throw new CliUsageException("--temperature must be a number");
        if (a.TopP is double p && !(p > 0 && p <= 1)) throw new CliUsageException($"--top-p must be in (0, 1], got {p}");
        if (a.TopK is <= 0) throw new CliUsageException($"--top-k must be positive, got {a.TopK}");
        if (!(a.RepeatPenalty > 0) || !float.IsFinite(a.RepeatPenalty)) throw new CliUsageException($"--repeat-penalty must be positive, got {a.RepeatPenalty}");
        if (a.RepeatLastN < 0) throw new CliUsageException($"--repeat-last-n must not be negative, got {a.RepeatLastN}");
        if (a.Gqa is <= 0) throw new CliUsageException($"--gqa must be positive, got {a.Gqa}");
        if (a.Threads is <= 0) throw new CliUsageException($"--threads must be positive, got {a.Threads}");
        if (a.Context is <= 0) throw new CliUsageException($"--ctx must be positive, got {a.Context}");
    }

    private static int Run(Arguments a)
    {
        Validate(a);
        var err = Console.Error;
        var inv = CultureInfo.InvariantCulture;
        var resolved = ModelLocator.Locate(a.Model, a.Which, ConsoleProgress.HubOptions());
        err.WriteLine($"avx: {Lower(Avx.IsSupported)}, neon: {Lower(AdvSimd.IsSupported)}, simd128: false, f16c: {Lower(HasF16c())}, avx512: {Lower(Avx512F.IsSupported)}");
        err.WriteLine(string.Format(inv, "temp: {0:F2} repeat-penalty: {1:F2} repeat-last-n: {2}", a.Temperature, a.RepeatPenalty, a.RepeatLastN));
        ApplyThreads(a.Threads);

        var load = Stopwatch.StartNew();
        using var model = LlamaModel.Load(resolved.Path, a.Gqa ?? resolved.Gqa, a.ModelOptions);
        using var context = model.CreateContext(a.ContextOptions);
        var file = model.File;
        err.WriteLine(string.Format(inv, "loaded {0} tensors ({1}) in {2:F2}s", file.Tensors.Count, FormatSize(model.WeightBytes), load.Elapsed.TotalSeconds));
        err.WriteLine($"params: {model.Config}, n_ctx: {context.ContextSize}, {AttentionOptions.Describe(context)}");
        err.WriteLine("model built");

        ITokenizer tok = a.Tokenizer != null
            ? TokenizerFactory.FromHuggingFaceJson(a.Tokenizer)
            : TokenizerFactory.FromMetadata(file.Metadata);
        // The file's own chat template; the --which entry's family for files without one.
        var formatter = ChatFormats.ForModel(model, tok, resolved.Entry?.Template ?? ModelRegistry.Get(a.Which).Template);

        if (a.Tracing) context.Tracer = new ForwardTracer();
        // One sampler for the whole run, as candle keeps one RNG across turns.
        var sampler = new LogitsProcessor(a.Seed, SamplingStrategy.FromArguments(a.Temperature, a.TopK, a.TopP));
        var options = new GenerationOptions
        {
            MaxTokens = a.SampleLength,
            Sampling = new SamplingOptions { RepeatPenalty = a.RepeatPenalty, RepeatLastN = a.RepeatLastN },
            SplitPrompt = a.SplitPrompt,
        };
        var chatSession = new ChatSession(context, tok, formatter, a.System);
        var generator = new TextGenerator(context, tok, ChatSession.EndOfTurnIds(tok, formatter));

        // Ctrl-C during a reply ends that reply (a single prompt: the run, after its statistics); at the "> " prompt
        // it ends the program. A turn's token is made for that turn alone, so a press never carries over.
        CancellationTokenSource? turn = null;
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            var current = Volatile.Read(ref turn);
            if (current == null) return; // idle: the default, ending the process
            e.Cancel = true;
            current.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        var stdout = Console.Out;
        try
        {
            bool interactive = a.Prompt == "interactive", chat = a.Prompt == "chat";
            if (!interactive && !chat)
            {
                var tokens = tok.Encode(a.Prompt, addSpecial: true, parseSpecial: true);
                Turn(a, tok, a.Prompt, tokens, session: false, ref turn, cancel => generator.Generate(tokens, options, stdout, cancel, sampler));
                return 0;
            }
            while (true)
            {
                err.Write("> ");
                err.Flush();
                string? line = Console.In.ReadLine();
                if (line == null)
                {
                    err.WriteLine(); // end of input ends the session
                    break;
                }
                if (line.Length == 0) continue;
                GenerationResult? result;
                if (interactive)
                {
                    // Each line is a new prompt; the cache keeps what it shares with the previous one.
                    string text = formatter.Render([ChatTurn.User(line)], addGenerationPrompt: true);
                    var tokens = ChatSession.TokenizePrompt(tok, text);
                    result = Turn(a, tok, text, tokens, session: true, ref turn, cancel => generator.Generate(tokens, options, stdout, cancel, sampler));
                }
                else
                {
                    var tokens = chatSession.Tokenize([.. chatSession.Messages, ChatTurn.User(line)]);
                    stdout.Write(line);
                    result = Turn(a, tok, "", tokens, session: true, ref turn, cancel => chatSession.Send(line, options, stdout, cancel, sampler));
                }
                if (chat && result?.StopReason is null or StopReason.ContextFull)
                {
                    err.WriteLine("the context is full; ending the conversation");
                    break;
                }
            }
            return 0;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            if (context.Tracer is { } tracer)
            {
                string tracePath = $"trace-{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}.json";
                tracer.Write(tracePath);
                err.WriteLine($"trace written to {tracePath}");
            }
        }
    }

    /// <summary>
    /// One prompt: echo it, generate, print the statistics. A prompt that does not fit is an error for a single
    /// prompt, and gives null in an interactive or chat session.
    /// </summary>
    private static GenerationResult? Turn(Arguments a, ITokenizer tok, string echo, IReadOnlyList<int> tokens, bool session,
        ref CancellationTokenSource? turn, Func<CancellationToken, GenerationResult> generate)
    {
        var err = Console.Error;
        var stdout = Console.Out;
        if (a.VerbosePrompt)
            foreach (int id in tokens) err.WriteLine($"{id,7} -> '{tok.TokenToPiece(id)}'");
        stdout.Write(echo);
        stdout.Flush();
        GenerationResult result;
        using var cancel = new CancellationTokenSource();
        Volatile.Write(ref turn, cancel);
        try
        {
            result = generate(cancel.Token);
        }
        catch (ContextFullException e)
        {
            stdout.WriteLine();
            if (!session) throw new CliUsageException($"the prompt does not fit: {e.Message} (try a larger --ctx)");
            err.WriteLine($"the prompt does not fit: {e.Message} (try a larger --ctx)");
            return null;
        }
        finally
        {
            Volatile.Write(ref turn, null);
        }
        stdout.WriteLine();
        stdout.Flush();
        if (result.StopReason == StopReason.ContextFull)
            err.WriteLine("stopped: the context is full");
        if (result.StopReason == StopReason.Cancelled)
            err.WriteLine("stopped: interrupted");
        err.WriteLine();
        // Tokens computed, as llama.cpp's prompt eval counts them: a cached prefix is not processed again.
        WriteRate(err, "prompt tokens processed", result.PromptTokens - result.CachedPromptTokens, result.PromptTokensPerSecond);
        WriteRate(err, "tokens generated", result.GeneratedTokens, result.GeneratedTokensPerSecond);
        return result;
    }

    private static void WriteRate(TextWriter err, string what, int tokens, double? perSecond)
        => err.WriteLine(perSecond is double rate
            ? string.Format(CultureInfo.InvariantCulture, "{0,4} {1}: {2:F2} token/s", tokens, what, rate)
            : string.Format(CultureInfo.InvariantCulture, "{0,4} {1}", tokens, what));

    private static void ApplyThreads(int? threads)
    {
        if (threads is int t) WorkerPool.SetThreadCount(t);
    }

    private static bool HasF16c() => X86Base.IsSupported && (X86Base.CpuId(1, 0).Ecx & (1 << 29)) != 0;

    private static string Lower(bool b) => b ? "true" : "false";

    /// <summary>candle's format_size: B, KB, MB, GB in powers of 1000 with two decimals.</summary>
    public static string FormatSize(long bytes) => bytes switch
    {
        < 1_000 => $"{bytes}B",
        < 1_000_000 => string.Format(CultureInfo.InvariantCulture, "{0:F2}KB", bytes / 1e3),
        < 1_000_000_000 => string.Format(CultureInfo.InvariantCulture, "{0:F2}MB", bytes / 1e6),
        _ => string.Format(CultureInfo.InvariantCulture, "{0:F2}GB", bytes / 1e9),
    };
}

using System.CommandLine;
using System.Globalization;
using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Tokenizers;

namespace QuantLlama.Cli.Commands;

/// <summary>`quantllama perplexity`: llama-perplexity's measure of a model on a text file (see <see cref="Perplexity"/>).</summary>
public static class PerplexityCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "GGUF (or legacy GGML) model file", Required = true };
        var file = new Option<string>("--file", "-f") { Description = "The text to measure (UTF-8); not needed with --kl-divergence, which takes the saved file's tokens" };
        var context = new Option<int>("--ctx", "-c") { Description = "Window size in tokens; the text needs at least two windows", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Tokens evaluated per pass (at most the window size)", DefaultValueFactory = _ => 512 };
        var klBase = new Option<string>("--kl-divergence-base")
        {
            Description = "Log-probabilities file (llama-perplexity's format): written while measuring perplexity, or read with --kl-divergence",
        };
        var kl = new Option<bool>("--kl-divergence")
        {
            Description = "Compare the model with the log-probabilities saved in --kl-divergence-base (the same text and windows): KL divergence, perplexity ratio, Δp, same top token",
        };
        var command = new Command("perplexity", "Perplexity of a model on a text, or its KL divergence from a reference model's saved log-probabilities, as llama-perplexity computes them");
        foreach (var o in new Option[] { model, file, context, batch, klBase, kl }) command.Options.Add(o);
        var attention = new AttentionOptions(command);
        command.SetAction(parse => CliErrors.Run(() =>
        {
            Func<ContextOptions, ContextOptions> withAttention = options => attention.Apply(parse, options);
            int batchSize = parse.GetValue(batch);
            if (batchSize < 1) throw new CliUsageException($"--batch-size {batchSize}: must be at least 1");
            if (parse.GetValue(kl))
            {
                string basePath = parse.GetValue(klBase) ?? throw new CliUsageException("--kl-divergence needs --kl-divergence-base FILE: the base model's saved log-probabilities");
                return RunKlDivergence(parse.GetValue(model)!, basePath, batchSize, withAttention);
            }
            string textPath = parse.GetValue(file) ?? throw new CliUsageException("--file is required (the text to measure)");
            return Run(parse.GetValue(model)!, textPath, parse.GetValue(context), batchSize, parse.GetValue(klBase), withAttention);
        }));
        return command;
    }

    private static int Run(string modelPath, string textPath, int windowSize, int batchSize, string? basePath, Func<ContextOptions, ContextOptions> withAttention)
    {
        if (windowSize < 2) throw new CliUsageException($"--ctx {windowSize}: a window needs at least 2 tokens");
        string text = File.ReadAllText(textPath);
        using var weights = LlamaModel.Load(modelPath);
        ITokenizer tokenizer = TokenizerFactory.FromMetadata(weights.File.Metadata);
        // As llama-perplexity: BOS added when the vocabulary asks for it, special-token text left as plain text.
        var tokens = tokenizer.Encode(text, addSpecial: true, parseSpecial: false);
        if (tokens.Count < Perplexity.MinimumTokens(windowSize))
            throw new CliUsageException($"you need at least {Perplexity.MinimumTokens(windowSize)} tokens to evaluate perplexity with a context of {windowSize}; "
                + $"{textPath} tokenizes to only {tokens.Count} tokens");

        using var inference = weights.CreateContext(withAttention(new ContextOptions { ContextSize = windowSize, MaxBatch = Math.Min(batchSize, windowSize) }));
        Console.Error.WriteLine($"perplexity: calculating perplexity over {tokens.Count / windowSize} chunks, n_ctx={windowSize}, batch_size={inference.MaxBatch}, {AttentionOptions.Describe(inference)}");
        Action<int, double> printChunk = (chunk, estimate) => { Console.Out.Write(string.Format(Inv, "[{0}]{1:F4},", chunk, estimate)); Console.Out.Flush(); };
        PerplexityResult result;
        if (basePath is null)
            result = Perplexity.Compute(inference, tokens.ToArray(), tokenizer.AddBos ? tokenizer.BosId : null, printChunk);
        else
        {
            Console.Error.WriteLine($"perplexity: saving all logits to {basePath}");
            using var output = new BufferedStream(File.Create(basePath), 1 << 20);
            result = KlDivergence.SaveBase(inference, tokens.ToArray(), tokenizer.AddBos ? tokenizer.BosId : null, output, printChunk);
        }
        Console.Out.WriteLine();
        if (double.IsNaN(result.Uncertainty))
            Console.Out.WriteLine("Unexpected negative standard deviation of log(prob)");
        else
            Console.Out.WriteLine(string.Format(Inv, "Final estimate: PPL = {0:F4} +/- {1:F5}", result.Value, result.Uncertainty));
        return 0;
    }

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static int RunKlDivergence(string modelPath, string basePath, int batchSize, Func<ContextOptions, ContextOptions> withAttention)
    {
        using var input = new BufferedStream(OpenForReading(basePath), 1 << 20);
        LogProbabilityFile baseFile;
        try { baseFile = LogProbabilityFile.ReadHeader(input, basePath); }
        catch (InvalidDataException e) { throw new CliUsageException(e.Message); }
        using var weights = LlamaModel.Load(modelPath);
        if (baseFile.VocabSize != weights.Config.VocabSize)
            throw new CliUsageException($"{basePath}: inconsistent vocabulary ({baseFile.VocabSize} vs {weights.Config.VocabSize} in {modelPath})");
        ITokenizer tokenizer = TokenizerFactory.FromMetadata(weights.File.Metadata);
        using var inference = weights.CreateContext(withAttention(new ContextOptions
        {
            ContextSize = baseFile.WindowSize,
            MaxBatch = Math.Min(batchSize, baseFile.WindowSize),
        }));
        Console.Error.WriteLine($"kl-divergence: {baseFile.WindowCount} chunks of n_ctx={baseFile.WindowSize} from {basePath}, batch_size={inference.MaxBatch}, {AttentionOptions.Describe(inference)}");
        Console.Out.WriteLine("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p");
        var s = KlDivergence.Compare(inference, baseFile, input, tokenizer.AddBos ? tokenizer.BosId : null, (chunk, s) =>
        {
            Console.Out.WriteLine($"{chunk,4}    {F(s.Perplexity.Value, 9, 4)} ± {F(s.Perplexity.Uncertainty, 9, 4)}"
                + $"    {F(s.LogPerplexityRatio.Value, 10, 5)} ± {F(s.LogPerplexityRatio.Uncertainty, 10, 5)}"
                + $"    {F(s.MeanKld.Value, 10, 5)} ± {F(s.MeanKld.Uncertainty, 10, 5)}"
                + $"    {F(100 * s.RmsPDiff.Value, 6, 3)} ± {F(100 * s.RmsPDiff.Uncertainty, 6, 3)} %"
                + $"    {F(100 * s.SameTop.Value, 6, 3)} ± {F(100 * s.SameTop.Uncertainty, 6, 3)} %");
        });
        Console.Out.WriteLine();
        // As llama-perplexity: no distribution statistics over fewer than 100 positions.
        if (s.Count < 100)
        {
            Console.Error.WriteLine($"kl-divergence: only {s.Count} positions were compared; statistics need at least 100");
            return 0;
        }
        var o = Console.Out;
        o.WriteLine("====== Perplexity statistics ======");
        o.WriteLine($"Mean PPL(Q)                   : {F(s.Perplexity.Value, 10, 6)} ± {F(s.Perplexity.Uncertainty, 10, 6)}");
        o.WriteLine($"Mean PPL(base)                : {F(s.BasePerplexity.Value, 10, 6)} ± {F(s.BasePerplexity.Uncertainty, 10, 6)}");
        o.WriteLine($"Cor(ln(PPL(Q)), ln(PPL(base))): {F(100 * s.LogPerplexityCorrelation, 6, 2)}%");
        o.WriteLine($"Mean ln(PPL(Q)/PPL(base))     : {F(s.LogPerplexityRatio.Value, 10, 6)} ± {F(s.LogPerplexityRatio.Uncertainty, 10, 6)}");
        o.WriteLine($"Mean PPL(Q)/PPL(base)         : {F(s.PerplexityRatio.Value, 10, 6)} ± {F(s.PerplexityRatio.Uncertainty, 10, 6)}");
        o.WriteLine($"Mean PPL(Q)-PPL(base)         : {F(s.PerplexityDifference.Value, 10, 6)} ± {F(s.PerplexityDifference.Uncertainty, 10, 6)}");
        o.WriteLine();
        o.WriteLine("====== KL divergence statistics ======");
        o.WriteLine($"Mean    KLD: {F(s.MeanKld.Value, 10, 6)} ± {F(s.MeanKld.Uncertainty, 10, 6)}");
        o.WriteLine($"Maximum KLD: {F(s.KldPercentile(1), 10, 6)}");
        foreach (float p in new[] { 0.999f, 0.99f, 0.95f, 0.90f })
            o.WriteLine($"{Percent(p)}   KLD: {F(s.KldPercentile(p), 10, 6)}");
        o.WriteLine($"Median  KLD: {F(s.MedianKld, 10, 6)}");
        foreach (float p in new[] { 0.10f, 0.05f, 0.01f, 0.001f })
            o.WriteLine($"{Percent(p)}   KLD: {F(s.KldPercentile(p), 10, 6)}");
        o.WriteLine($"Minimum KLD: {F(s.KldPercentile(0), 10, 6)}");
        o.WriteLine();
        o.WriteLine("====== Token probability statistics ======");
        o.WriteLine($"Mean    Δp: {F(100 * s.MeanPDiff.Value, 6, 3)} ± {F(100 * s.MeanPDiff.Uncertainty, 5, 3)} %");
        o.WriteLine($"Maximum Δp: {F(100 * s.PDiffPercentile(1), 6, 3)}%");
        foreach (float p in new[] { 0.999f, 0.99f, 0.95f, 0.90f, 0.75f })
            o.WriteLine($"{Percent(p)}   Δp: {F(100 * s.PDiffPercentile(p), 6, 3)}%");
        o.WriteLine($"Median  Δp: {F(100 * s.MedianPDiff, 6, 3)}%");
        foreach (float p in new[] { 0.25f, 0.10f, 0.05f, 0.01f, 0.001f })
            o.WriteLine($"{Percent(p)}   Δp: {F(100 * s.PDiffPercentile(p), 6, 3)}%");
        o.WriteLine($"Minimum Δp: {F(100 * s.PDiffPercentile(0), 6, 3)}%");
        o.WriteLine($"RMS Δp    : {F(100 * s.RmsPDiff.Value, 6, 3)} ± {F(100 * s.RmsPDiff.Uncertainty, 5, 3)} %");
        o.WriteLine($"Same top p: {F(100 * s.SameTop.Value, 6, 3)} ± {F(100 * s.SameTop.Uncertainty, 5, 3)} %");
        return 0;
    }

    private static Stream OpenForReading(string path)
    {
        try { return File.OpenRead(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CliUsageException($"failed to open {path}: {e.Message}"); }
    }

    /// <summary>printf's "%{width}.{digits}f".</summary>
    private static string F(double value, int width, int digits) => value.ToString("F" + digits, Inv).PadLeft(width);

    /// <summary>printf's "%4.1f%%" for a fraction: "99.9%", " 0.1%".</summary>
    private static string Percent(float fraction) => (100 * (double)fraction).ToString("F1", Inv).PadLeft(4) + "%";
}

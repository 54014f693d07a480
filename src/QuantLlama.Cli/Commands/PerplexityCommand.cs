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
        var file = new Option<string>("--file", "-f") { Description = "The text to measure (UTF-8)", Required = true };
        var context = new Option<int>("--ctx", "-c") { Description = "Window size in tokens; the text needs at least two windows", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Tokens evaluated per pass (at most the window size)", DefaultValueFactory = _ => 512 };
        var command = new Command("perplexity", "Perplexity of a model on a text, as llama-perplexity computes it");
        foreach (var o in new Option[] { model, file, context, batch }) command.Options.Add(o);
        var attention = new AttentionOptions(command);
        command.SetAction(parse => CliErrors.Run(() => Run(parse.GetValue(model)!, parse.GetValue(file)!, parse.GetValue(context),
            parse.GetValue(batch), options => attention.Apply(parse, options))));
        return command;
    }

    private static int Run(string modelPath, string textPath, int windowSize, int batchSize, Func<ContextOptions, ContextOptions> withAttention)
    {
        if (windowSize < 2) throw new CliUsageException($"--ctx {windowSize}: a window needs at least 2 tokens");
        if (batchSize < 1) throw new CliUsageException($"--batch-size {batchSize}: must be at least 1");
        string text = File.ReadAllText(textPath);
        using var weights = LlamaModel.Load(modelPath);
        ITokenizer tokenizer = TokenizerFactory.FromMetadata(weights.File.Metadata);
        // As llama-perplexity: BOS added when the vocabulary asks for it, special-token text left as plain text.
        var tokens = tokenizer.Encode(text, addSpecial: true, parseSpecial: false);
        if (tokens.Count < Perplexity.MinimumTokens(windowSize))
            throw new CliUsageException($"you need at least {Perplexity.MinimumTokens(windowSize)} tokens to evaluate perplexity with a context of {windowSize}; "
                + $"{textPath} tokenizes to only {tokens.Count} tokens");

        using var inference = weights.CreateContext(withAttention(new ContextOptions { ContextSize = windowSize, MaxBatch = Math.Min(batchSize, windowSize) }));
        var inv = CultureInfo.InvariantCulture;
        Console.Error.WriteLine($"perplexity: calculating perplexity over {tokens.Count / windowSize} chunks, n_ctx={windowSize}, batch_size={inference.MaxBatch}, {AttentionOptions.Describe(inference)}");
        var result = Perplexity.Compute(inference, tokens.ToArray(), tokenizer.AddBos ? tokenizer.BosId : null,
            (chunk, estimate) => { Console.Out.Write(string.Format(inv, "[{0}]{1:F4},", chunk, estimate)); Console.Out.Flush(); });
        Console.Out.WriteLine();
        if (double.IsNaN(result.Uncertainty))
            Console.Out.WriteLine("Unexpected negative standard deviation of log(prob)");
        else
            Console.Out.WriteLine(string.Format(inv, "Final estimate: PPL = {0:F4} +/- {1:F5}", result.Value, result.Uncertainty));
        return 0;
    }
}

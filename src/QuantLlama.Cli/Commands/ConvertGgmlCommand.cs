using System.CommandLine;
using System.Globalization;
using QuantLlama.Gguf.Legacy;

namespace QuantLlama.Cli.Commands;

/// <summary><c>quantllama convert-ggml INPUT.bin OUTPUT.gguf</c>: a legacy ggml/ggmf/ggjt llama file to GGUF.</summary>
public static class ConvertGgmlCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "A legacy llama.cpp model file (ggml, ggmf or ggjt v1-v3, usually *.bin)" };
        var output = new Argument<string>("output") { Description = "The GGUF file to write" };
        var gqa = new Option<int>("--gqa")
        {
            Description = "Query heads per key/value head, which legacy files do not record (8 for Llama-2-70B); the K projection's shape decides when they agree",
            DefaultValueFactory = _ => 1,
        };
        var contextLength = new Option<int>("--context-length", "-c")
        {
            Description = "Context length to record (legacy files do not store it)",
            DefaultValueFactory = _ => GgmlLegacyOptions.Default.ContextLength,
        };
        var eps = new Option<float>("--eps")
        {
            Description = "RMS norm epsilon to record: 1e-5 for Llama 2, 1e-6 for Llama 1",
            DefaultValueFactory = _ => GgmlLegacyOptions.Default.RmsNormEpsilon,
        };
        var name = new Option<string?>("--name") { Description = "general.name to record (default: the input file name)" };

        var command = new Command("convert-ggml", "Convert a legacy GGML (ggml/ggmf/ggjt) llama model file to GGUF");
        command.Arguments.Add(input);
        command.Arguments.Add(output);
        command.Options.Add(gqa);
        command.Options.Add(contextLength);
        command.Options.Add(eps);
        command.Options.Add(name);
        // CliErrors.Run here too: System.CommandLine's own handler would print a stack trace for errors thrown in actions.
        command.SetAction(parseResult => CliErrors.Run(() =>
        {
            string inputPath = parseResult.GetValue(input)!;
            string outputPath = parseResult.GetValue(output)!;
            if (Path.GetFullPath(inputPath) == Path.GetFullPath(outputPath))
                throw new CliUsageException("the output file must differ from the input file");
            int gqaValue = parseResult.GetValue(gqa);
            if (gqaValue < 1) throw new CliUsageException($"--gqa must be at least 1 (got {gqaValue})");
            int ctx = parseResult.GetValue(contextLength);
            if (ctx < 1) throw new CliUsageException($"--context-length must be at least 1 (got {ctx})");
            float epsValue = parseResult.GetValue(eps);
            if (!(epsValue > 0 && epsValue < 1)) throw new CliUsageException($"--eps must be between 0 and 1 (got {epsValue.ToString(CultureInfo.InvariantCulture)})");
            var options = new GgmlLegacyOptions { Gqa = gqaValue, ContextLength = ctx, RmsNormEpsilon = epsValue };

            using var source = GgmlLegacyFile.Open(inputPath, options);
            var hp = source.Hyperparameters;
            Console.Error.WriteLine($"{inputPath}: {source.FormatDescription}, {hp.VocabSize} tokens ({source.VocabularyStyle} spelling), " +
                $"n_embd {hp.EmbeddingLength}, {hp.LayerCount} layers, {hp.HeadCount} heads / {source.HeadCountKv} kv heads, " +
                $"n_ff {source.FeedForwardLength}, ftype {hp.FileType}, {source.Tensors.Count} tensors");
            int written = GgmlLegacyConverter.ToGguf(source, outputPath, parseResult.GetValue(name));
            Console.Error.WriteLine($"wrote {outputPath} ({written} tensors)");
            return 0;
        }));
        return command;
    }
}

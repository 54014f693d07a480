using System.CommandLine;
using QuantLlama.Conversion;

namespace QuantLlama.Cli.Commands;

/// <summary><c>quantllama quantize INPUT.gguf OUTPUT.gguf TYPE</c>: llama-quantize's type choices and bytes, in C#.</summary>
public static class QuantizeCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "GGUF model to quantize (F32, F16, BF16, or already quantized)" };
        var output = new Argument<string>("output") { Description = "GGUF file to write (written to OUTPUT.tmp, then renamed)" };
        var type = new Argument<string>("type") { Description = "a llama.cpp mix or a type: " + ModelQuantizer.TargetNames };
        var imatrix = new Option<string>("--imatrix")
        {
            Description = "Importance matrix file written by llama-imatrix (GGUF or the legacy .dat), used as llama-quantize uses it",
        };
        var command = new Command("quantize", "Quantize a GGUF model the way llama-quantize does");
        command.Options.Add(imatrix);
        command.Arguments.Add(input);
        command.Arguments.Add(output);
        command.Arguments.Add(type);
        // System.CommandLine reports exceptions from actions itself, so user errors are turned into one line here.
        command.SetAction(parseResult => CliErrors.Run(() =>
        {
            string typeName = parseResult.GetValue(type)!;
            string? importance = parseResult.GetValue(imatrix);
            if (importance == null && ImportanceMatrix.RequiredBy.Contains(typeName.ToUpperInvariant()))
                throw new CliUsageException(ImportanceMatrix.RequiredMessage);
            if (!ModelQuantizer.TryParseTarget(typeName, out _) && !ImportanceMatrix.RequiredBy.Contains(typeName.ToUpperInvariant()))
                throw new CliUsageException($"unknown quantization type '{typeName}'; expected one of {ModelQuantizer.TargetNames}");
            ModelQuantizer.Quantize(parseResult.GetValue(input)!, parseResult.GetValue(output)!, typeName, Console.Error.WriteLine, importance);
            return 0;
        }));
        return command;
    }
}

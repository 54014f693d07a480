using System.CommandLine;
using QuantLlama.Models.Llama2c;

namespace QuantLlama.Cli.Commands;

/// <summary>`quantllama convert-llama2c`: a llama2.c checkpoint + tokenizer → a llama-architecture GGUF.</summary>
public static class ConvertLlama2cCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<FileInfo>("--checkpoint", "-c") { Description = "llama2.c checkpoint (e.g. stories15M.bin)", Required = true };
        var tokenizer = new Option<FileInfo>("--tokenizer", "-t") { Description = "llama2.c tokenizer file (e.g. tokenizer.bin, tok512.bin)", Required = true };
        var output = new Option<FileInfo>("--output", "-o") { Description = "GGUF file to write", Required = true };
        var name = new Option<string?>("--name") { Description = "general.name to record (default: the checkpoint's file name)" };
        var command = new Command("convert-llama2c", "Convert a llama2.c checkpoint and tokenizer into a GGUF file (F32) that quantllama and llama.cpp load.");
        command.Options.Add(checkpoint);
        command.Options.Add(tokenizer);
        command.Options.Add(output);
        command.Options.Add(name);
        command.SetAction(parseResult =>
        {
            var outputFile = parseResult.GetValue(output)!;
            var result = Llama2cConverter.Convert(parseResult.GetValue(checkpoint)!.FullName, parseResult.GetValue(tokenizer)!.FullName,
                outputFile.FullName, parseResult.GetValue(name));
            var c = result.Config;
            Console.WriteLine($"wrote {outputFile.FullName}: {result.TensorCount} tensors, {result.OutputBytes:N0} bytes "
                + $"(dim {c.Dim}, hidden {c.HiddenDim}, {c.Layers} layers, {c.Heads} heads, {c.KvHeads} kv heads, vocab {c.VocabSize}, "
                + $"context {c.SeqLen}, {(c.SharedClassifier ? "shared" : "separate")} classifier)");
            return 0;
        });
        return command;
    }
}

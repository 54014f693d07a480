using System.CommandLine;

namespace QuantLlama.Cli.Commands;

/// <summary>The root command: text generation with candle's quantized example's flags.</summary>
public static class GenerateCommand
{
    public static RootCommand Create()
    {
        var root = new RootCommand("QuantLlama: fast inference of quantized LLaMA-family models (GGUF and GGML), in pure C#.");
        root.SetAction(_ =>
        {
            Console.Error.WriteLine("error: generation is not implemented yet");
            return 1;
        });
        return root;
    }
}

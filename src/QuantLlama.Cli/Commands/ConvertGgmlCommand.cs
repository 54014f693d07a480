using System.CommandLine;

namespace QuantLlama.Cli.Commands;

public static class ConvertGgmlCommand
{
    public static Command Create()
    {
        var command = new Command("convert-ggml", "(not implemented yet)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("error: convert-ggml is not implemented yet");
            return 1;
        });
        return command;
    }
}

using System.CommandLine;

namespace QuantLlama.Cli.Commands;

public static class QuantizeCommand
{
    public static Command Create()
    {
        var command = new Command("quantize", "(not implemented yet)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("error: quantize is not implemented yet");
            return 1;
        });
        return command;
    }
}

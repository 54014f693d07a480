using System.CommandLine;

namespace QuantLlama.Cli.Commands;

public static class ConvertLlama2cCommand
{
    public static Command Create()
    {
        var command = new Command("convert-llama2c", "(not implemented yet)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("error: convert-llama2c is not implemented yet");
            return 1;
        });
        return command;
    }
}

using System.CommandLine;

namespace QuantLlama.Cli.Commands;

public static class TokenizeCommand
{
    public static Command Create()
    {
        var command = new Command("tokenize", "(not implemented yet)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("error: tokenize is not implemented yet");
            return 1;
        });
        return command;
    }
}

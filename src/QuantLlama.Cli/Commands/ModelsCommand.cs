using System.CommandLine;

namespace QuantLlama.Cli.Commands;

public static class ModelsCommand
{
    public static Command Create()
    {
        var command = new Command("models", "(not implemented yet)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("error: models is not implemented yet");
            return 1;
        });
        return command;
    }
}

using System.CommandLine;

namespace QuantLlama.Cli.Commands;

public static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "(not implemented yet)");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("error: bench is not implemented yet");
            return 1;
        });
        return command;
    }
}

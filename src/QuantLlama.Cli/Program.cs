using System.CommandLine;
using QuantLlama.Cli.Commands;

namespace QuantLlama.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = GenerateCommand.Create();
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(ConvertLlama2cCommand.Create());
        root.Subcommands.Add(QuantizeCommand.Create());
        root.Subcommands.Add(TokenizeCommand.Create());
        root.Subcommands.Add(ModelsCommand.Create());
        root.Subcommands.Add(ConvertGgmlCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(DownloadCommand.Create());
        root.Subcommands.Add(CachePutCommand.Create());
        root.Subcommands.Add(ChatTemplateCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(PerplexityCommand.Create());
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            // One line, not the help screen: a mistyped value should not bury its own message.
            Console.Error.WriteLine("error: " + string.Join("; ", parse.Errors.Select(e => e.Message)));
            return 1;
        }
        // The library's default handler would print "Unhandled exception" and a stack trace; user errors must reach
        // CliErrors to become one line. Ctrl-C is left to the commands (generation stops cleanly, prints statistics).
        return CliErrors.Run(() => parse.Invoke(new InvocationConfiguration
        {
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = null,
        }));
    }
}

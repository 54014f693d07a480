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
        // The library's default handler would print "Unhandled exception" and a stack trace; user errors
        // must reach CliErrors to become one line.
        var invocation = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
        return CliErrors.Run(() => root.Parse(args).Invoke(invocation));
    }
}

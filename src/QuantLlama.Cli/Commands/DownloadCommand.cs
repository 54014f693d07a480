using System.CommandLine;
using QuantLlama.Hub;

namespace QuantLlama.Cli.Commands;

/// <summary>`quantllama download`: fetch a model into the Hugging Face cache ahead of time and print its path.</summary>
public static class DownloadCommand
{
    public static Command Create()
    {
        var which = new Option<string>("--which")
        {
            Description = "Model name from `quantllama models`",
            DefaultValueFactory = _ => ModelRegistry.DefaultName,
        };
        var model = new Option<string?>("--model") { Description = "A Hub file as owner/repo/file.gguf (overrides --which)" };
        var command = new Command("download", "Download a model into the Hugging Face cache (if not there yet) and print its local path");
        command.Options.Add(which);
        command.Options.Add(model);
        command.SetAction(parseResult =>
        {
            string? reference = parseResult.GetValue(model);
            if (reference != null && !ModelLocator.TryParseHubReference(reference, out _, out _, out _))
                throw new CliUsageException($"--model {reference}: expected a Hub file as owner/repo/file.gguf");
            var resolved = ModelLocator.Locate(reference, parseResult.GetValue(which), ConsoleProgress.HubOptions());
            Console.WriteLine(resolved.Path);
            return 0;
        });
        return command;
    }
}

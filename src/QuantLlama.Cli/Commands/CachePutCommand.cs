using System.CommandLine;
using QuantLlama.Hub;

namespace QuantLlama.Cli.Commands;

/// <summary>
/// Hidden `quantllama cache-put REPO FILE SOURCE`: places a local file in the Hugging Face cache where a
/// download of REPO/FILE would put it, so `--which` finds it offline (CI uses it with HF_HUB_OFFLINE=1).
/// </summary>
public static class CachePutCommand
{
    public static Command Create()
    {
        var repo = new Argument<string>("repo") { Description = "Hub repository id, owner/name" };
        var file = new Argument<string>("file") { Description = "Path of the file inside the repository" };
        var source = new Argument<string>("source") { Description = "Local file to place in the cache" };
        var revision = new Option<string>("--revision")
        {
            Description = "Revision (branch, tag or commit) the file is recorded under",
            DefaultValueFactory = _ => "main",
        };
        var commit = new Option<string?>("--commit") { Description = "Commit hash for the snapshot (default: derived from the content)" };
        var command = new Command("cache-put", "Place a local file in the Hugging Face cache as if it had been downloaded") { Hidden = true };
        command.Arguments.Add(repo);
        command.Arguments.Add(file);
        command.Arguments.Add(source);
        command.Options.Add(revision);
        command.Options.Add(commit);
        command.SetAction(parseResult =>
        {
            var cache = HubCache.FromEnvironment();
            string path = cache.Store(parseResult.GetValue(repo)!, parseResult.GetValue(revision)!, parseResult.GetValue(commit),
                parseResult.GetValue(file)!, parseResult.GetValue(source)!);
            Console.WriteLine(path);
            return 0;
        });
        return command;
    }
}

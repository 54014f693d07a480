using System.CommandLine;
using QuantLlama.Hub;

namespace QuantLlama.Cli.Commands;

/// <summary>`quantllama models`: the --which names with their Hub repository, file, size and chat template.</summary>
public static class ModelsCommand
{
    public static Command Create()
    {
        var command = new Command("models", "List the --which model names with their Hugging Face repository, file, size and chat template");
        command.SetAction(_ =>
        {
            var cache = HubCache.FromEnvironment();
            var rows = new List<string[]> { new[] { "NAME", "REPOSITORY", "FILE", "SIZE", "TEMPLATE", "GQA", "CACHED" } };
            foreach (var e in ModelRegistry.All)
            {
                string? cached = cache.TryGetCachedFile(e.Repo, e.Revision, e.File);
                long? size = e.SizeBytes ?? (cached != null ? HubCache.FileLength(cached) : null);
                string repo = e.Revision == "main" ? e.Repo : $"{e.Repo}@{e.Revision[..Math.Min(7, e.Revision.Length)]}";
                rows.Add([
                    e.Name + (e.Name == ModelRegistry.DefaultName ? " (default)" : ""),
                    repo,
                    e.File,
                    size is long s ? ConsoleDownloadProgress.FormatBytes(s) : "",
                    e.TemplateName,
                    e.Gqa?.ToString() ?? "",
                    cached != null ? "yes" : "",
                ]);
            }
            int[] widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
            foreach (var row in rows)
                Console.WriteLine(string.Join("  ", row.Select((cell, c) => cell.PadRight(widths[c]))).TrimEnd());
            Console.WriteLine();
            Console.WriteLine($"cache: {cache.Root}   (--model also takes a local file or owner/repo/file.gguf)");
            return 0;
        });
        return command;
    }
}

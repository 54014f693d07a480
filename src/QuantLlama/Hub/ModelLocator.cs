namespace QuantLlama.Hub;

/// <summary>Where a model came from and how to run it.</summary>
/// <param name="Path">The local file to open.</param>
/// <param name="Entry">The registry entry whose settings apply (gqa for legacy files, chat template family): the
/// <c>--which</c> entry, as in candle, where <c>--which</c> still sets them when <c>--model</c> names the file; for a
/// <c>--model</c> Hub file that is itself a listed model, that model's entry. Null when neither applies.</param>
/// <param name="Repo">Hub repository, when the file came from the Hub.</param>
/// <param name="File">Path inside that repository.</param>
/// <param name="Revision">Revision asked for.</param>
public sealed record ResolvedModel(string Path, ModelEntry? Entry, string? Repo = null, string? File = null, string? Revision = null)
{
    /// <summary>The gqa to use for a legacy GGML file: the entry's, else 1 (candle's default for unlisted files).</summary>
    public int Gqa => Entry?.Gqa ?? 1;

    public ChatTemplateFamily Template => Entry?.Template ?? ChatTemplateFamily.None;
}

/// <summary>Turns the command line's --model / --which into a local file path, downloading it when needed.</summary>
public static class ModelLocator
{
    /// <summary>The local path for <c>--model</c> (a local file or <c>owner/name/file</c> on the Hub), else for <c>--which</c>.</summary>
    public static string Resolve(string? model, string which) => Locate(model, which).Path;

    /// <summary>
    /// Like <see cref="Resolve"/>, with the registry entry beside the path. Hub settings come from the environment
    /// (HF_ENDPOINT, HF_HUB_CACHE/HF_HOME, HF_TOKEN, HF_HUB_OFFLINE) unless <paramref name="options"/> is given;
    /// progress is reported only through the options' <see cref="IDownloadProgress"/>.
    /// </summary>
    public static ResolvedModel Locate(string? model, string? which, HubOptions? options = null)
    {
        if (!string.IsNullOrEmpty(model))
        {
            var whichEntry = string.IsNullOrEmpty(which) ? null : ModelRegistry.Get(which);
            if (System.IO.File.Exists(model)) return new ResolvedModel(model, whichEntry);
            if (TryParseHubReference(model, out string repo, out string file, out string revision))
            {
                var known = ModelRegistry.FindByFile(repo, file) ?? whichEntry;
                try
                {
                    return new ResolvedModel(Download(repo, file, revision, options), known, repo, file, revision);
                }
                catch (HubException e) when (e.Kind is HubErrorKind.RepositoryNotFound or HubErrorKind.FileNotFound or HubErrorKind.NotInCache)
                {
                    // It may have been meant as a local path with a typo: say both readings failed.
                    throw new HubException(e.Kind, $"{model}: no such local file, and as a Hub file: {e.Message}", e);
                }
            }
            if (Directory.Exists(model)) throw new FileNotFoundException($"{model}: is a directory, not a model file", model);
            throw new FileNotFoundException($"{model}: no such file (a model is a local file, or owner/repo/file.gguf on the Hub)", model);
        }

        var entry = ModelRegistry.Get(string.IsNullOrEmpty(which) ? ModelRegistry.DefaultName : which);
        return new ResolvedModel(Download(entry.Repo, entry.File, entry.Revision, options), entry, entry.Repo, entry.File, entry.Revision);
    }

    /// <summary>
    /// Recognizes <c>owner/name/path/to/file</c> (optionally <c>owner/name@revision/file</c>): at least three
    /// path segments, relative, with no <c>.</c> or <c>..</c> segment. A path that exists locally is never asked about.
    /// </summary>
    public static bool TryParseHubReference(string reference, out string repo, out string file, out string revision)
    {
        repo = file = "";
        revision = "main";
        if (reference.Length == 0 || reference.Contains('\\') || System.IO.Path.IsPathRooted(reference)
            || reference.StartsWith('~') || reference.Contains("://", StringComparison.Ordinal))
            return false;
        string[] parts = reference.Split('/');
        if (parts.Length < 3 || parts.Any(p => p.Length == 0 || p == "." || p == "..")) return false;
        string name = parts[1];
        int at = name.IndexOf('@');
        if (at >= 0)
        {
            revision = name[(at + 1)..];
            name = name[..at];
            if (revision.Length == 0) return false;
        }
        string candidateRepo = parts[0] + "/" + name;
        string candidateFile = string.Join('/', parts[2..]);
        try
        {
            HubCache.ValidateRepo(candidateRepo);
            HubCache.ValidateFile(candidateFile);
            HubCache.ValidateRevision(revision);
        }
        catch (ArgumentException)
        {
            return false;
        }
        repo = candidateRepo;
        file = candidateFile;
        return true;
    }

    private static string Download(string repo, string file, string revision, HubOptions? options)
    {
        options ??= HubOptions.FromEnvironment();
        using var client = new HubClient(options);
        return client.Download(repo, file, revision);
    }
}

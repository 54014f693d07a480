using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Hub;

/// <summary>`quantllama models` and the hidden `cache-put`, run as a user would (the cache is a temp folder).</summary>
public class ModelsCommandTests
{
    [Fact]
    public void ModelsListsNamesRepositoriesFilesAndTemplates()
    {
        string cache = TestPaths.NewTempDirectory();
        try
        {
            var r = CliRunner.Run(["models"], environment: new Dictionary<string, string> { ["HF_HUB_CACHE"] = cache });
            Assert.Equal(0, r.ExitCode);
            string stories = r.StdOut.Split('\n').Single(l => l.StartsWith("stories260k ", StringComparison.Ordinal));
            Assert.Contains("ggml-org/models", stories);
            Assert.Contains("tinyllamas/stories260K.gguf", stories);
            Assert.Contains("1.2 MB", stories);
            string chat = r.StdOut.Split('\n').Single(l => l.StartsWith("70b-chat ", StringComparison.Ordinal));
            Assert.Contains("TheBloke/Llama-2-70B-Chat-GGML", chat);
            Assert.Contains("llama2-chat", chat);
            Assert.Contains("7b (default)", r.StdOut);
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public void CachePutMakesAFileFindableAsIfDownloaded()
    {
        string cache = TestPaths.NewTempDirectory();
        try
        {
            var env = new Dictionary<string, string> { ["HF_HUB_CACHE"] = cache, ["HF_HUB_OFFLINE"] = "1" };
            string source = TestPaths.SharedFile("llamacpp", "stories260K.gguf");
            var put = CliRunner.Run(["cache-put", "ggml-org/models", "tinyllamas/stories260K.gguf", source], environment: env);
            Assert.Equal(0, put.ExitCode);
            string snapshot = put.StdOut.Trim();
            Assert.StartsWith(Path.Combine(cache, "models--ggml-org--models", "snapshots"), snapshot);
            Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(snapshot));

            var list = CliRunner.Run(["models"], environment: env);
            string stories = list.StdOut.Split('\n').Single(l => l.StartsWith("stories260k ", StringComparison.Ordinal));
            Assert.EndsWith("yes", stories.TrimEnd());
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public void CachePutOfAMissingFileFailsWithOneLine()
    {
        string cache = TestPaths.NewTempDirectory();
        try
        {
            var r = CliRunner.Run(["cache-put", "owner/name", "model.gguf", "/no/such/file.gguf"],
                environment: new Dictionary<string, string> { ["HF_HUB_CACHE"] = cache });
            Assert.Equal(1, r.ExitCode);
            Assert.StartsWith("error: ", r.StdErr);
            Assert.Single(r.StdErr.Trim().Split('\n'));
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }
}

/// <summary>`quantllama download` in its own process, configured only by the environment (HF_ENDPOINT, HF_HUB_CACHE,
/// HF_TOKEN, HF_HUB_OFFLINE), against the local fake Hub.</summary>
public sealed class DownloadCommandTests : IDisposable
{
    private readonly FakeHubServer _server = new();
    private readonly string _cache = TestPaths.NewTempDirectory();

    [Fact]
    public void DownloadsWithTheEnvironmentsSettingsThenWorksOffline()
    {
        byte[] content = System.Security.Cryptography.RandomNumberGenerator.GetBytes(123_456);
        var hubFile = _server.Add("ggml-org/models", "tinyllamas/stories260K.gguf", content);
        _server.GatedRepos.Add("ggml-org/models");
        var env = new Dictionary<string, string>
        {
            ["HF_ENDPOINT"] = _server.Endpoint,
            ["HF_HUB_CACHE"] = _cache,
            ["HF_TOKEN"] = _server.ValidToken,
        };

        var first = CliRunner.Run(["download", "--which", "stories260k"], environment: env);

        Assert.Equal(0, first.ExitCode);
        string path = first.StdOut.Trim();
        Assert.Equal(Path.Combine(_cache, "models--ggml-org--models", "snapshots", hubFile.Commit, "tinyllamas", "stories260K.gguf"), path);
        Assert.Equal(content, File.ReadAllBytes(path));
        // stderr is not a terminal here: one line when the download starts and one when it ends, no bar.
        string[] lines = first.StdErr.Trim().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.Equal("downloading ggml-org/models/tinyllamas/stories260K.gguf (123.5 kB)", lines[0]);
        Assert.StartsWith("downloaded ggml-org/models/tinyllamas/stories260K.gguf: 123.5 kB in ", lines[1]);
        int requests = _server.Requests.Count;

        env["HF_HUB_OFFLINE"] = "1";
        env.Remove("HF_TOKEN");
        var second = CliRunner.Run(["download", "--model", "ggml-org/models/tinyllamas/stories260K.gguf"], environment: env);

        Assert.Equal(0, second.ExitCode);
        Assert.Equal(path, second.StdOut.Trim());
        Assert.Equal("", second.StdErr);
        Assert.Equal(requests, _server.Requests.Count);
    }

    [Fact]
    public void GatedRepositoryWithoutATokenFailsWithOneActionableLine()
    {
        _server.Add("ggml-org/models", "tinyllamas/stories260K.gguf", [1, 2, 3]);
        _server.GatedRepos.Add("ggml-org/models");
        var env = new Dictionary<string, string>
        {
            ["HF_ENDPOINT"] = _server.Endpoint,
            ["HF_HUB_CACHE"] = _cache,
            ["HF_HOME"] = _cache, // no token file there
            ["HF_TOKEN"] = "",
        };

        var r = CliRunner.Run(["download", "--which", "stories260k"], environment: env);

        Assert.Equal(1, r.ExitCode);
        string line = Assert.Single(r.StdErr.Trim().Split('\n'));
        Assert.StartsWith("error: ggml-org/models: access denied (HTTP 401)", line);
        Assert.Contains("set HF_TOKEN", line);
    }

    public void Dispose()
    {
        _server.Dispose();
        Directory.Delete(_cache, recursive: true);
    }
}

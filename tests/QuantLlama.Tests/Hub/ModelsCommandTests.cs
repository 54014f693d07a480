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

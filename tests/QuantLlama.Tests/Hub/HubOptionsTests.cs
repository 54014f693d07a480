using QuantLlama.Hub;

namespace QuantLlama.Tests.Hub;

/// <summary>The environment variables huggingface_hub reads, read the same way (from a dictionary, not the process).</summary>
public class HubOptionsTests
{
    private static HubOptions From(Dictionary<string, string> env) =>
        HubOptions.FromEnvironment(name => env.GetValueOrDefault(name));

    [Fact]
    public void DefaultsToTheUsersHuggingFaceCacheAndTheHub()
    {
        var o = From(new() { ["HOME"] = "/home/u" });
        Assert.Equal("/home/u/.cache/huggingface/hub", o.CacheDirectory);
        Assert.Equal("https://huggingface.co", o.Endpoint);
        Assert.False(o.Offline);
        Assert.Null(o.Token);
    }

    [Fact]
    public void HfHubCacheWinsOverHfHome()
    {
        Assert.Equal("/data/hf/hub", From(new() { ["HOME"] = "/home/u", ["HF_HOME"] = "/data/hf" }).CacheDirectory);
        Assert.Equal("/fast/cache", From(new() { ["HOME"] = "/home/u", ["HF_HOME"] = "/data/hf", ["HF_HUB_CACHE"] = "/fast/cache" }).CacheDirectory);
        Assert.Equal("/x/huggingface/hub", From(new() { ["HOME"] = "/home/u", ["XDG_CACHE_HOME"] = "/x" }).CacheDirectory);
    }

    [Fact]
    public void EndpointOfflineAndTokenComeFromTheEnvironment()
    {
        var o = From(new() { ["HOME"] = "/home/u", ["HF_ENDPOINT"] = "http://127.0.0.1:9/", ["HF_HUB_OFFLINE"] = "1", ["HF_TOKEN"] = " hf_abc \n" });
        Assert.Equal("http://127.0.0.1:9", o.Endpoint);
        Assert.True(o.Offline);
        Assert.Equal("hf_abc", o.Token);
        Assert.False(From(new() { ["HOME"] = "/h", ["HF_HUB_OFFLINE"] = "0" }).Offline);
        Assert.True(From(new() { ["HOME"] = "/h", ["HF_HUB_OFFLINE"] = "true" }).Offline);
    }

    [Fact]
    public void TokenFileUnderHfHomeIsUsedWhenHfTokenIsUnset()
    {
        string home = TestPaths.NewTempDirectory();
        try
        {
            File.WriteAllText(Path.Combine(home, "token"), "hf_from_file\n");
            Assert.Equal("hf_from_file", From(new() { ["HOME"] = "/h", ["HF_HOME"] = home }).Token);
            Assert.Equal("hf_env", From(new() { ["HOME"] = "/h", ["HF_HOME"] = home, ["HF_TOKEN"] = "hf_env" }).Token);
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }
}

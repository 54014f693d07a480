namespace QuantLlama.Tests.Cli;

public class CliSmokeTests
{
    [Fact]
    public void HelpListsTheSubcommands()
    {
        var r = CliRunner.Run(["--help"]);
        Assert.Equal(0, r.ExitCode);
        foreach (var name in new[] { "inspect", "convert-llama2c", "quantize", "tokenize", "models", "convert-ggml", "bench", "chat-template", "serve" })
            Assert.Contains(name, r.StdOut);
    }

    [Fact]
    public void UnknownFlagFailsWithOneErrorLineNamingIt()
    {
        var r = CliRunner.Run(["--no-such-flag"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.StdOut);
        var line = Assert.Single(r.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line);
        Assert.Contains("--no-such-flag", line);
    }
}

namespace QuantLlama.Tests;

public class CliSmokeTests
{
    [Fact]
    public void HelpListsTheSubcommands()
    {
        var r = CliRunner.Run(["--help"]);
        Assert.Equal(0, r.ExitCode);
        foreach (var name in new[] { "inspect", "convert-llama2c", "quantize", "tokenize", "models", "convert-ggml", "bench" })
            Assert.Contains(name, r.StdOut);
    }

    [Fact]
    public void UnknownFlagFailsWithNonZeroExit()
    {
        var r = CliRunner.Run(["--no-such-flag"]);
        Assert.NotEqual(0, r.ExitCode);
    }
}

using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Tokenizers;

public class TokenizeCommandTests
{
    [Fact]
    public void PrintsIdsWithBosForALlamaVocabulary()
    {
        var r = CliRunner.Run(["tokenize", "--model", VocabTestCases.VocabPath("llama-spm"), "Hello world"]);
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.Equal("1 15043 3186", r.StdOut.Trim());
    }

    [Fact]
    public void PiecesAndNoBosAndParseSpecial()
    {
        var r = CliRunner.Run(["tokenize", "-m", VocabTestCases.VocabPath("llama-spm"), "--pieces", "--no-bos", "--parse-special", "Hi</s>🦙"]);
        Assert.True(r.ExitCode == 0, r.StdErr);
        var lines = r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("  6324 -> ' Hi'", lines[0]);
        Assert.Equal("     2 -> '</s>'", lines[1]);
        Assert.Equal("   243 -> '<0xF0>'", lines[3]); // after the prefix space: the emoji's first byte token
    }

    [Fact]
    public void HuggingFaceTokenizerJsonAndStdin()
    {
        var r = CliRunner.Run(["tokenize", "--tokenizer", VocabTestCases.TokenizerJsonPath("llama2")], stdin: "Hello world");
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.Equal("1 22557 1526", r.StdOut.Trim());
    }

    [Fact]
    public void MissingModelIsAOneLineError()
    {
        var r = CliRunner.Run(["tokenize", "--model", "/no/such/model.gguf", "x"]);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error:", r.StdErr);
        Assert.Single(r.StdErr.Trim().Split('\n'));
        var none = CliRunner.Run(["tokenize", "x"]);
        Assert.Equal(1, none.ExitCode);
        Assert.Contains("--model", none.StdErr);
    }
}

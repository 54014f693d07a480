using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using QuantLlama.Gguf;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Templates;

/// <summary>`quantllama chat-template` and the chat line of `quantllama inspect`, run as a user runs them.</summary>
public class ChatTemplateCliTests
{
    private static string Root => ChatTemplateCorpusTests.Root;

    /// <summary>A context file for one case of cases.json, with the template's tokens unless left out.</summary>
    private static string WriteContext(string directory, string caseName, string? template)
    {
        var cases = JsonNode.Parse(File.ReadAllText(Path.Combine(Root, "cases.json")))!.AsArray();
        var context = cases.Single(c => (string?)c!["name"] == caseName)!.DeepClone().AsObject();
        context.Remove("name");
        if (template != null)
        {
            var tokens = JsonNode.Parse(File.ReadAllText(Path.Combine(Root, "templates", template + ".json")))!;
            context["bos_token"] = tokens["bos_token"]!.DeepClone();
            context["eos_token"] = tokens["eos_token"]!.DeepClone();
        }
        string path = Path.Combine(directory, "context.json");
        File.WriteAllText(path, context.ToJsonString(), new UTF8Encoding(false));
        return path;
    }

    [Theory]
    [InlineData("Qwen-Qwen2.5-7B-Instruct", "unicode_whitespace")]
    [InlineData("meta-llama-Llama-3.1-8B-Instruct", "tool_weather")]
    public void PrintsTheRenderedTextExactly(string template, string caseName)
    {
        string dir = TestPaths.NewTempDirectory();
        var r = CliRunner.Run(["chat-template", Path.Combine(Root, "templates", template + ".jinja"), "--context", WriteContext(dir, caseName, template)]);
        Assert.Equal("", r.StdErr);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(File.ReadAllText(Path.Combine(Root, "expected", template, caseName + ".txt"), Encoding.UTF8), r.StdOut);
    }

    [Fact]
    public void ABadTemplateGivesOneErrorLineAndExitCode1()
    {
        string dir = TestPaths.NewTempDirectory();
        string template = Path.Combine(dir, "bad.jinja");
        File.WriteAllText(template, "{% for message in messages %}{{ message.content ");
        var r = CliRunner.Run(["chat-template", template, "--context", WriteContext(dir, "single_user", null)]);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.StdOut);
        Assert.StartsWith("error: ", r.StdErr);
        Assert.Single(r.StdErr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void ATemplateThatRaisesGivesItsMessage()
    {
        string dir = TestPaths.NewTempDirectory();
        var r = CliRunner.Run(["chat-template", Path.Combine(Root, "templates", "google-gemma-7b-it.jinja"), "--context",
            WriteContext(dir, "system_user", "google-gemma-7b-it")]);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("error: System role not supported\n", r.StdErr.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void TheModelsTemplateAndTokensAreUsedWhenTheContextLeavesThemOut()
    {
        string dir = TestPaths.NewTempDirectory();
        var r = CliRunner.Run(["chat-template", "--model", TestPaths.SharedFile("vocab", "ggml-vocab-phi-3.gguf"), "--context",
            WriteContext(dir, "multi_turn_no_system", null)]);
        Assert.Equal("", r.StdErr);
        Assert.Equal(0, r.ExitCode);
        // What jinja2 renders for this file's tokenizer.chat_template with its BOS piece "<s>".
        Assert.Equal("<s><|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\nThe capital of France is Paris.<|end|>\n"
            + "<|user|>\nAnd what is its population?<|end|>\n<|assistant|>\n", r.StdOut);
    }

    [Fact]
    public void AModelWithoutATemplateIsAnError()
    {
        string dir = TestPaths.NewTempDirectory();
        var r = CliRunner.Run(["chat-template", "--model", TestPaths.SharedFile("vocab", "ggml-vocab-llama-spm.gguf"), "--context",
            WriteContext(dir, "single_user", null)]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("has no tokenizer.chat_template", r.StdErr);
    }

    [Fact]
    public void InspectShowsTheChatTemplateAndItsFamily()
    {
        var withTemplate = CliRunner.Run(["inspect", TestPaths.SharedFile("vocab", "ggml-vocab-phi-3.gguf")]);
        Assert.Equal(0, withTemplate.ExitCode);
        Assert.Contains("\nchat:     tokenizer.chat_template (269 chars), family Zephyr\n", withTemplate.StdOut);
        var json = JsonDocument.Parse(CliRunner.Run(["inspect", "--json", TestPaths.SharedFile("vocab", "ggml-vocab-phi-3.gguf")]).StdOut);
        Assert.Equal("Zephyr", json.RootElement.GetProperty("chatTemplate").GetProperty("family").GetString());

        var without = CliRunner.Run(["inspect", TestPaths.SharedFile("vocab", "ggml-vocab-llama-spm.gguf")]);
        Assert.Contains("\nchat:     no tokenizer.chat_template\n", without.StdOut);
        using var file = ModelFileLoader.Open(TestPaths.SharedFile("vocab", "ggml-vocab-llama-spm.gguf"));
        Assert.False(JsonDocument.Parse(ModelInspector.FormatJson(file)).RootElement.GetProperty("chatTemplate").GetProperty("present").GetBoolean());
    }
}

using System.Text.RegularExpressions;
using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Tokenizers;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Templates;

/// <summary>Chat through a model's own Jinja template: the ids fed are the template's text, tokenized.</summary>
public partial class ChatWithTemplateTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDirectory();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("llama3")]
    [InlineData("chatml")]
    public async Task ASessionFeedsTheTemplatesTextAndStopsAtItsEndOfTurn(string kind)
    {
        string path = kind == "llama3" ? ChatModels.Llama3(_dir) : ChatModels.ChatML(_dir);
        using var model = LlamaModel.Load(path);
        var tok = TokenizerFactory.FromMetadata(model.File.Metadata);
        var format = ChatFormats.ForModel(model, tok);
        Assert.IsType<JinjaChatFormatter>(format);
        Assert.Contains(kind == "llama3" ? "<|eot_id|>" : "<|im_end|>", format.EndOfTurnTokens);

        using var context = model.CreateContext(new ContextOptions { ContextSize = 1024 });
        var chat = new ChatSession(context, tok, format, systemPrompt: "You are a storyteller.");
        var options = new GenerationOptions { MaxTokens = 12, Sampling = SamplingOptions.Greedy };
        foreach (string line in new[] { "Once upon a time", "Tell me about Lily.", "The end?" })
        {
            var history = chat.Messages.ToList();
            history.Add(ChatTurn.User(line));
            string text = format.Render(history, addGenerationPrompt: true);
            var expected = tok.Encode(text, addSpecial: !text.StartsWith("<s>", StringComparison.Ordinal), parseSpecial: true);
            Assert.Equal(expected, chat.Tokenize(history));
            Assert.Equal(1, expected.Count(id => id == tok.BosId)); // the Llama 3 template writes BOS itself: not doubled
            GenerationResult? result = null;
            await foreach (var update in chat.SendAsync(line, options)) result = update.Result ?? result;
            Assert.NotNull(result);
            Assert.Equal(expected, context.Tokens.Take(expected.Count));
        }
        Assert.Equal(7, chat.Messages.Count);
        // The special tokens parse as single control tokens, never as their characters.
        string rendered = format.Render(chat.Messages, addGenerationPrompt: false);
        var ids = tok.Encode(rendered, addSpecial: false, parseSpecial: true);
        foreach (string special in kind == "llama3" ? ChatModels.Llama3Tokens : ChatModels.ChatMLTokens)
            Assert.Contains(tok.Encode(special, addSpecial: false, parseSpecial: true).Single(), ids);
    }

    [Fact]
    public void TheCliChatsWithASystemPromptAndThreeTurnsThroughTheTemplate()
    {
        string path = ChatModels.ChatML(_dir);
        var r = CliRunner.Run(["--model", path, "--prompt", "chat", "--system", "You are a storyteller.", "--temperature", "0", "-n", "8",
            "--ctx", "1024", "--verbose-prompt"], stdin: "Once upon a time\nTell me about Lily.\nThe end?\n");
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.Equal(3, Regex.Matches(r.StdErr, @"tokens generated").Count);
        // --verbose-prompt lists each turn's ids: the whole conversation rendered by the template each time, so
        // <|im_start|> opens system + user + assistant, then two more per turn.
        using var model = LlamaModel.Load(path);
        var tok = TokenizerFactory.FromMetadata(model.File.Metadata);
        int imStart = tok.Encode("<|im_start|>", addSpecial: false, parseSpecial: true).Single();
        var listed = IdLine().Matches(r.StdErr).Select(m => int.Parse(m.Groups[1].Value)).ToList();
        Assert.Equal(3 + 5 + 7, listed.Count(id => id == imStart));
        Assert.Equal(3, listed.Count(id => id == tok.BosId));
    }

    [GeneratedRegex(@"(?m)^(?:> )?\s+(\d+) -> '")]
    private static partial Regex IdLine();
}

using QuantLlama.Generation;
using QuantLlama.Hub;
using QuantLlama.Models;
using QuantLlama.Sampling;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests;

public class TextGeneratorTests
{
    private static string Stories => TestPaths.SharedFile("llamacpp", "stories260K.gguf");

    private static (LlamaModel Model, ITokenizer Tokenizer) Load(int? context = null)
    {
        var model = LlamaModel.Load(Stories, new LlamaModelOptions { ContextSize = context });
        return (model, TokenizerFactory.FromMetadata(model.File.Metadata));
    }

    private static TextGenerator Greedy(LlamaModel model, ITokenizer tok, int sampleLength, IEnumerable<int>? stopIds = null)
        => new(model, tok, new LogitsProcessor(1, SamplingStrategy.FromArguments(0, null, null)),
            new GenerationOptions { SampleLength = sampleLength, RepeatPenalty = 1f }, stopIds);

    [Fact]
    public void GreedyTurnStreamsTheStoryAndCountsLikeCandle()
    {
        var (model, tok) = Load();
        using var _ = model;
        var prompt = tok.Encode("Once upon a time", addSpecial: true, parseSpecial: false);
        var output = new StringWriter();
        var result = Greedy(model, tok, 20).Generate(prompt, output);
        Assert.StartsWith(", there was a little girl named Lily.", output.ToString());
        Assert.Equal(5, result.PromptTokens);
        Assert.Equal(19, result.GeneratedTokens); // candle counts the tokens after the one sampled from the prompt
        Assert.Equal(20, result.Tokens.Count);
        Assert.Equal(StopReason.SampleLength, result.StopReason);
        Assert.Equal(LlamaModelTests.Greedy(model, prompt, 20), result.Tokens);
    }

    [Fact]
    public void ChatTurnsFedIncrementallyMatchTheWholeConversationFedAtOnce()
    {
        var (model, tok) = Load();
        using var _ = model;
        var first = tok.Encode("Once upon a time", addSpecial: true, parseSpecial: false);
        var second = tok.Encode(" The dog", addSpecial: false, parseSpecial: false);
        var chat = Greedy(model, tok, 8);
        var turn1 = chat.Generate(first, TextWriter.Null);
        var turn2 = chat.Generate(second, TextWriter.Null);
        Assert.Equal(1 + second.Count, turn2.PromptTokens); // only the new turn (after the unfed last token)
        Assert.Equal(first.Count + 8 + second.Count + 7, chat.Position);

        var (model2, _) = Load();
        using var __ = model2;
        var whole = Greedy(model2, tok, 8).Generate([.. first, .. turn1.Tokens, .. second], TextWriter.Null);
        Assert.Equal(whole.Tokens, turn2.Tokens);
    }

    [Fact]
    public void StopsWhenTheContextIsFull()
    {
        var (model, tok) = Load(context: 16);
        using var _ = model;
        var gen = Greedy(model, tok, 100);
        var result = gen.Generate([1, 403, 407, 261, 378], TextWriter.Null);
        Assert.Equal(StopReason.ContextFull, result.StopReason);
        Assert.Equal(16, gen.Position);
        Assert.Equal(12, result.Tokens.Count);
        Assert.Throws<ContextFullException>(() => gen.Generate([403], TextWriter.Null));
    }

    [Fact]
    public void StopsAtAnEndOfGenerationId()
    {
        var (model, tok) = Load();
        using var _ = model;
        int comma = tok.Encode(",", addSpecial: false, parseSpecial: false).Last();
        var result = Greedy(model, tok, 50, [comma]).Generate([1, 403, 407, 261, 378], TextWriter.Null);
        Assert.Equal(StopReason.EndOfSequence, result.StopReason);
        Assert.Equal([comma], result.Tokens);
        Assert.Contains(tok.EosId, Greedy(model, tok, 1).EndOfGenerationIds);
    }

    [Fact]
    public void CancellationStopsBeforeTheNextToken()
    {
        var (model, tok) = Load();
        using var _ = model;
        using var cts = new CancellationTokenSource();
        var writer = new CancelAfterFirstText(cts);
        var result = Greedy(model, tok, 50).Generate([1, 403, 407, 261, 378], writer, cts.Token);
        Assert.Equal(StopReason.Cancelled, result.StopReason);
        Assert.True(result.Tokens.Count < 5);
    }

    private sealed class CancelAfterFirstText(CancellationTokenSource cts) : StringWriter
    {
        public override void Write(string? value)
        {
            base.Write(value);
            if (!string.IsNullOrEmpty(value)) cts.Cancel();
        }
    }

    [Theory]
    [InlineData(ChatTemplateFamily.OpenChat, true, "GPT4 Correct User: hi<|end_of_turn|>GPT4 Correct Assistant:")]
    [InlineData(ChatTemplateFamily.Zephyr, true, "<|system|>\n</s>\n<|user|>\nhi</s>\n<|assistant|>")]
    [InlineData(ChatTemplateFamily.Zephyr, false, "<|user|>\nhi</s>\n<|assistant|>")]
    [InlineData(ChatTemplateFamily.Mistral, true, "[INST] hi [/INST]")]
    [InlineData(ChatTemplateFamily.Llama2Chat, false, "[INST] hi [/INST]")]
    [InlineData(ChatTemplateFamily.DeepSeek, true, "<｜User｜>hi<｜Assistant｜>")]
    [InlineData(ChatTemplateFamily.Llama3, true, "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    [InlineData(ChatTemplateFamily.ChatML, true, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")]
    [InlineData(ChatTemplateFamily.ChatML, false, "\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")]
    [InlineData(ChatTemplateFamily.None, true, "hi")]
    public void TemplatesWrapTurnsAsTheFamilyExpects(ChatTemplateFamily family, bool firstTurn, string expected)
        => Assert.Equal(expected, ChatTemplate.FormatTurn(family, "hi", firstTurn));

    [Fact]
    public void TemplateFamilyIsRecognisedInGgufChatTemplates()
    {
        Assert.Equal(ChatTemplateFamily.ChatML, ChatTemplate.Detect("{% for m in messages %}<|im_start|>{{ m.role }}"));
        Assert.Equal(ChatTemplateFamily.Llama3, ChatTemplate.Detect("<|start_header_id|>' + message['role'] + '<|end_header_id|>"));
        Assert.Equal(ChatTemplateFamily.Llama2Chat, ChatTemplate.Detect("[INST] <<SYS>>\\n' + system + '\\n<</SYS>>"));
        Assert.Equal(ChatTemplateFamily.Mistral, ChatTemplate.Detect("{{ '[INST] ' + message['content'] + ' [/INST]' }}"));
        Assert.Equal(ChatTemplateFamily.Zephyr, ChatTemplate.Detect("<|user|>\n{{ message['content'] }}</s>\n<|assistant|>"));
        Assert.Equal(ChatTemplateFamily.None, ChatTemplate.Detect(null));
        Assert.Equal(ChatTemplateFamily.Zephyr, ChatTemplate.Resolve(ChatTemplateFamily.Zephyr, "<|im_start|>"));
        Assert.Equal(ChatTemplateFamily.ChatML, ChatTemplate.Resolve(ChatTemplateFamily.None, "<|im_start|>"));
    }
}

using QuantLlama.Generation;
using QuantLlama.Hub;
using QuantLlama.Models;
using QuantLlama.Sampling;
using QuantLlama.Tokenizers;
using QuantLlama.Tests.Models;

namespace QuantLlama.Tests.Generation;

public class TextGeneratorTests
{
    private static string Stories => TestPaths.SharedFile("llamacpp", "stories260K.gguf");

    private static (InferenceContext Context, ITokenizer Tokenizer) Load(int? context = null)
    {
        var model = InferenceContext.Load(Stories, new ContextOptions { ContextSize = context });
        return (model, TokenizerFactory.FromMetadata(model.Model.File.Metadata));
    }

    private static GenerationOptions GreedyOptions(int maxTokens, params string[] stop)
        => new() { MaxTokens = maxTokens, Sampling = SamplingOptions.Greedy, StopStrings = stop };

    private static readonly int[] OnceUponATime = [1, 403, 407, 261, 378];

    [Fact]
    public void GreedyTurnStreamsTheStoryAndCountsLikeCandle()
    {
        var (model, tok) = Load();
        using var _ = model;
        var prompt = tok.Encode("Once upon a time", addSpecial: true, parseSpecial: false);
        var output = new StringWriter();
        var result = new TextGenerator(model, tok).Generate(prompt, GreedyOptions(20), output);
        Assert.StartsWith(", there was a little girl named Lily.", output.ToString());
        Assert.Equal(output.ToString(), result.Text);
        Assert.Equal(5, result.PromptTokens);
        Assert.Equal(0, result.CachedPromptTokens);
        Assert.Equal(19, result.GeneratedTokens); // candle counts the tokens after the one sampled from the prompt
        Assert.Equal(20, result.Tokens.Count);
        Assert.Equal(StopReason.Length, result.StopReason);
        Assert.Equal(LlamaModelTests.Greedy(model, prompt, 20), result.Tokens);
    }

    [Fact]
    public void AResentConversationComputesOnlyItsNewTokens()
    {
        var (model, tok) = Load();
        using var _ = model;
        var gen = new TextGenerator(model, tok);
        var first = tok.Encode("Once upon a time", addSpecial: true, parseSpecial: false);
        var turn1 = gen.Generate(first, GreedyOptions(8), TextWriter.Null);
        var second = tok.Encode(" The dog", addSpecial: false, parseSpecial: false);
        List<int> conversation = [.. first, .. turn1.Tokens, .. second];
        var turn2 = gen.Generate(conversation, GreedyOptions(8), TextWriter.Null);
        // The cache held the prompt and all but the last answer token (sampled, never fed).
        Assert.Equal(first.Count + 7, turn2.CachedPromptTokens);
        Assert.Equal(conversation.Count, turn2.PromptTokens);

        var (fresh, _) = Load();
        using var __ = fresh;
        var whole = new TextGenerator(fresh, tok).Generate(conversation, GreedyOptions(8), TextWriter.Null);
        Assert.Equal(0, whole.CachedPromptTokens);
        Assert.Equal(whole.Tokens, turn2.Tokens);
    }

    [Fact]
    public void StopsWhenTheContextIsFull()
    {
        var (model, tok) = Load(context: 16);
        using var _ = model;
        var gen = new TextGenerator(model, tok);
        var result = gen.Generate(OnceUponATime, GreedyOptions(100), TextWriter.Null);
        Assert.Equal(StopReason.ContextFull, result.StopReason);
        Assert.Equal(16, model.Position);
        Assert.Equal(12, result.Tokens.Count);
        Assert.Throws<ContextFullException>(() => gen.Generate([.. Enumerable.Repeat(403, 17)], GreedyOptions(1), TextWriter.Null));
    }

    [Fact]
    public void StopsAtAnEndOfGenerationId()
    {
        var (model, tok) = Load();
        using var _ = model;
        int comma = tok.Encode(",", addSpecial: false, parseSpecial: false).Last();
        var result = new TextGenerator(model, tok, [comma]).Generate(OnceUponATime, GreedyOptions(50), TextWriter.Null);
        Assert.Equal(StopReason.EndOfGeneration, result.StopReason);
        Assert.Equal([comma], result.Tokens);
        Assert.Equal("", result.Text); // the end token is not text
        Assert.Contains(tok.EosId, new TextGenerator(model, tok).EndOfGenerationIds);
    }

    [Theory]
    [InlineData("Lily")] // a whole token
    [InlineData("ttle gi")] // across tokens
    [InlineData(". She")]
    public void StopStringsEndTheTextAndNeverLeak(string stop)
    {
        var (model, tok) = Load();
        using var _ = model;
        var full = new TextGenerator(model, tok).Generate(OnceUponATime, GreedyOptions(40), TextWriter.Null).Text;
        int at = full.IndexOf(stop, StringComparison.Ordinal);
        Assert.True(at > 0, full);
        var streamed = new StringWriter();
        var result = new TextGenerator(model, tok).Generate(OnceUponATime, GreedyOptions(40, "no such text", stop), streamed);
        Assert.Equal(StopReason.StopString, result.StopReason);
        Assert.Equal(full[..at], result.Text);
        Assert.Equal(full[..at], streamed.ToString());
    }

    [Fact]
    public void MinPOfOneIsGreedyAndSeedsRepeat()
    {
        var (model, tok) = Load();
        using var _ = model;
        var gen = new TextGenerator(model, tok);
        var greedy = gen.Generate(OnceUponATime, GreedyOptions(20), TextWriter.Null).Tokens;
        // min-p 1 keeps only the most probable token, whatever the temperature.
        var hot = new GenerationOptions { MaxTokens = 20, Sampling = new SamplingOptions { Temperature = 5, MinP = 1, RepeatPenalty = 1f } };
        Assert.Equal(greedy, gen.Generate(OnceUponATime, hot, TextWriter.Null).Tokens);
        var sampled = new GenerationOptions { MaxTokens = 20, Sampling = new SamplingOptions { Temperature = 1.5, Seed = 42 } };
        var a = gen.Generate(OnceUponATime, sampled, TextWriter.Null).Tokens;
        var b = gen.Generate(OnceUponATime, sampled, TextWriter.Null).Tokens;
        Assert.Equal(a, b);
        Assert.NotEqual(greedy, a);
    }

    [Fact]
    public async Task StreamsPiecesWhoseTextIsTheResult()
    {
        var (model, tok) = Load();
        using var _ = model;
        var pieces = new List<GenerationUpdate>();
        await foreach (var update in new TextGenerator(model, tok).GenerateAsync(OnceUponATime, GreedyOptions(30)))
            pieces.Add(update);
        var result = pieces[^1].Result;
        Assert.NotNull(result);
        Assert.All(pieces.SkipLast(1), p => Assert.Null(p.Result));
        Assert.Equal(result.Text, string.Concat(pieces.Select(p => p.Text)));
        Assert.Equal(30, result.Tokens.Count);
    }

    [Fact]
    public async Task CancellationEndsTheStreamWithACancelledResult()
    {
        var (model, tok) = Load();
        using var _ = model;
        using var cts = new CancellationTokenSource();
        GenerationResult? result = null;
        int updates = 0;
        await foreach (var update in new TextGenerator(model, tok).GenerateAsync(OnceUponATime, GreedyOptions(50), cts.Token))
        {
            if (++updates == 3) cts.Cancel();
            result = update.Result ?? result;
        }
        Assert.NotNull(result);
        Assert.Equal(StopReason.Cancelled, result.StopReason);
        Assert.True(result.Tokens.Count < 10);
    }

    [Fact]
    public void CancellationStopsBeforeTheNextToken()
    {
        var (model, tok) = Load();
        using var _ = model;
        using var cts = new CancellationTokenSource();
        var writer = new CancelAfterFirstText(cts);
        var result = new TextGenerator(model, tok).Generate(OnceUponATime, GreedyOptions(50), writer, cts.Token);
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

    /// <summary>Contexts on one model, generating at once from different threads, each give exactly their text alone.</summary>
    [Fact]
    public void ContextsOnOneModelRunConcurrentlyWithTheirOwnResults()
    {
        using var model = LlamaModel.Load(Stories);
        var tok = TokenizerFactory.FromMetadata(model.File.Metadata);
        string[] prompts = ["Once upon a time", "The dog", "Lily was", "One day, a big"];
        var alone = prompts.Select(p =>
        {
            using var context = model.CreateContext();
            return new TextGenerator(context, tok).Generate(tok.Encode(p, true, false), GreedyOptions(48), TextWriter.Null).Tokens;
        }).ToArray();
        for (int round = 0; round < 3; round++)
        {
            var together = new IReadOnlyList<int>[prompts.Length];
            Parallel.For(0, prompts.Length, new ParallelOptions { MaxDegreeOfParallelism = prompts.Length }, i =>
            {
                using var context = model.CreateContext();
                together[i] = new TextGenerator(context, tok).Generate(tok.Encode(prompts[i], true, false), GreedyOptions(48), TextWriter.Null).Tokens;
            });
            for (int i = 0; i < prompts.Length; i++) Assert.Equal(alone[i], together[i]);
        }
    }

    [Theory]
    [InlineData(ChatTemplateFamily.OpenChat, "GPT4 Correct User: hi<|end_of_turn|>GPT4 Correct Assistant:")]
    [InlineData(ChatTemplateFamily.Zephyr, "<|system|>\n</s>\n<|user|>\nhi</s>\n<|assistant|>")]
    [InlineData(ChatTemplateFamily.Mistral, "[INST] hi [/INST]")]
    [InlineData(ChatTemplateFamily.Llama2Chat, "[INST] hi [/INST]")]
    [InlineData(ChatTemplateFamily.DeepSeek, "<｜User｜>hi<｜Assistant｜>")]
    [InlineData(ChatTemplateFamily.Llama3, "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    [InlineData(ChatTemplateFamily.ChatML, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")]
    [InlineData(ChatTemplateFamily.None, "hi")]
    public void FamiliesFormatAFirstTurnAsCandleDoes(ChatTemplateFamily family, string expected)
        => Assert.Equal(expected, new FamilyChatFormatter(family).Render([ChatTurn.User("hi")], addGenerationPrompt: true));

    [Theory]
    [InlineData(ChatTemplateFamily.Llama2Chat, "[INST] <<SYS>>\nbe kind\n<</SYS>>\n\nhi [/INST] hello </s><s>[INST] more [/INST]")]
    [InlineData(ChatTemplateFamily.Mistral, "[INST] be kind\n\nhi [/INST]hello</s>[INST] more [/INST]")]
    [InlineData(ChatTemplateFamily.ChatML, "<|im_start|>system\nbe kind<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n")]
    [InlineData(ChatTemplateFamily.Zephyr, "<|system|>\nbe kind</s>\n<|user|>\nhi</s>\n<|assistant|>\nhello</s>\n<|user|>\nmore</s>\n<|assistant|>")]
    public void FamiliesFormatAWholeConversation(ChatTemplateFamily family, string expected)
        => Assert.Equal(expected, new FamilyChatFormatter(family).Render(
            [ChatTurn.System("be kind"), ChatTurn.User("hi"), ChatTurn.Assistant("hello"), ChatTurn.User("more")], addGenerationPrompt: true));

    [Fact]
    public async Task AChatSessionKeepsTheConversationAndComputesOnlyEachNewTurn()
    {
        var (model, tok) = Load(context: 512); // ChatML's markers are plain text to this vocabulary: long prompts
        using var _ = model;
        var chat = new ChatSession(model, tok, new FamilyChatFormatter(ChatTemplateFamily.ChatML), systemPrompt: "Be brief.");
        var first = chat.Send("Once upon a time", GreedyOptions(6), TextWriter.Null);
        Assert.Equal(0, first.CachedPromptTokens);
        GenerationResult? second = null;
        await foreach (var update in chat.SendAsync("The dog", GreedyOptions(6))) second = update.Result ?? second;
        Assert.NotNull(second);
        Assert.Equal(["system", "user", "assistant", "user", "assistant"], chat.Messages.Select(m => m.Role));
        Assert.Equal(second.Text, chat.Messages[^1].Content);
        var prompt = chat.Tokenize(chat.Messages.SkipLast(1).ToList());
        Assert.Equal(prompt.Count, second.PromptTokens);
        Assert.True(second.CachedPromptTokens >= first.PromptTokens, $"{second.CachedPromptTokens} cached of {second.PromptTokens}");
        // The ids fed are the rendered conversation's, with one BOS.
        Assert.Equal(tok.Encode(new FamilyChatFormatter(ChatTemplateFamily.ChatML).Render(chat.Messages.SkipLast(1).ToList(), true), true, true), prompt);
    }

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

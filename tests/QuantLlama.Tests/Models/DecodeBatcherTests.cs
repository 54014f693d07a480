using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Quants;
using QuantLlama.Sampling;
using QuantLlama.Tensors;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Models;

/// <summary>Several conversations' tokens through the weights in one pass: each gets exactly its logits alone.</summary>
public class DecodeBatcherTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDirectory();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, KvCacheType, FlashAttention> Models => new()
    {
        { "stories-f32", KvCacheType.F16, FlashAttention.On },
        { "stories-f32", KvCacheType.F16, FlashAttention.Off },
        { "stories-f32", KvCacheType.F32, FlashAttention.Auto },
        { "stories-q4_0", KvCacheType.F16, FlashAttention.On },
        { "moe-q8_0", KvCacheType.F16, FlashAttention.On },
    };

    private string ModelPath(string name) => name switch
    {
        "stories-f32" => TestPaths.SharedFile("llamacpp", "stories260K.gguf"),
        "stories-q4_0" => TestPaths.SharedFile("llamacpp", "stories260K-Q4_0.gguf"),
        _ => SyntheticLlama.Write(_dir, GgmlType.Q8_0, new SyntheticLlama.Shape { Experts = 4, ExpertsUsed = 2 }),
    };

    /// <summary>
    /// Three conversations at different positions (prompts of different lengths) step together for 40 tokens; every
    /// step's logits equal, bit for bit, those of the same conversation stepping alone.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void DecodingTogetherGivesEachConversationItsOwnLogits(string name, KvCacheType cache, FlashAttention flash)
    {
        using var model = LlamaModel.Load(ModelPath(name));
        var options = new ContextOptions { ContextSize = 128, KvCacheType = cache, FlashAttention = flash };
        int[][] prompts = [[1, 403, 407, 261, 378], [1, 319, 280], [1, 403, 407, 261, 378, 300, 290, 301, 302, 303, 304]];
        var together = prompts.Select(_ => model.CreateContext(options)).ToArray();
        var alone = prompts.Select(_ => model.CreateContext(options)).ToArray();
        using var workspace = model.CreateContext(new ContextOptions { ContextSize = 4, MaxBatch = 4, KvCacheType = cache, FlashAttention = flash });
        try
        {
            var next = new int[prompts.Length];
            for (int i = 0; i < prompts.Length; i++)
            {
                next[i] = LogitsProcessor.ArgMax(together[i].Append(prompts[i]));
                Assert.Equal(next[i], LogitsProcessor.ArgMax(alone[i].Append(prompts[i])));
            }
            for (int step = 0; step < 40; step++)
            {
                workspace.DecodeTogether(together, next);
                for (int i = 0; i < prompts.Length; i++)
                {
                    var expected = alone[i].Append([next[i]]).ToArray();
                    Assert.Equal(expected, together[i].LastLogits.ToArray());
                    next[i] = LogitsProcessor.ArgMax(expected);
                }
            }
            for (int i = 0; i < prompts.Length; i++) Assert.Equal(alone[i].Tokens, together[i].Tokens);
        }
        finally
        {
            foreach (var c in together.Concat(alone)) c.Dispose();
        }
    }

    /// <summary>
    /// 1 to 8 Q4_0 conversations decoding together over the weights repacked at load (every layer matrix and the
    /// output: a tile of each batch size) give, bit for bit, the logits of each conversation stepping alone through
    /// the row dots over the mapped file.
    /// </summary>
    [Fact]
    public void Q4_0ConversationsOverRepackedWeightsGiveTheMappedRowDotsLogits()
    {
        string path = SyntheticLlama.Write(_dir, GgmlType.Q4_0, new SyntheticLlama.Shape { Layers = 1 });
        using var repacked = LlamaModel.Load(path, options: new ModelOptions { WarmUp = false });
        using var mapped = LlamaModel.Load(path, options: new ModelOptions { RepackForPrompts = false, WarmUp = false });
        Assert.Equal(0, mapped.RepackedBytes);
        Assert.SkipWhen(repacked.RepackedBytes == 0, "Q4_0 weights are repacked only on the AVX-512 path");
        var options = new ContextOptions { ContextSize = 64 };
        for (int count = 1; count <= 8; count++)
        {
            var together = Enumerable.Range(0, count).Select(_ => repacked.CreateContext(options)).ToArray();
            var alone = Enumerable.Range(0, count).Select(_ => mapped.CreateContext(options)).ToArray();
            using var workspace = repacked.CreateContext(new ContextOptions { ContextSize = 8, MaxBatch = 8 });
            try
            {
                var next = new int[count];
                for (int i = 0; i < count; i++)
                {
                    int[] prompt = [1, 300 + 7 * i, 400 + i];
                    next[i] = LogitsProcessor.ArgMax(together[i].Append(prompt));
                    Assert.Equal(next[i], LogitsProcessor.ArgMax(alone[i].Append(prompt)));
                }
                for (int step = 0; step < 3; step++)
                {
                    workspace.DecodeTogether(together, next);
                    for (int i = 0; i < count; i++)
                    {
                        var expected = alone[i].Append([next[i]]).ToArray();
                        Assert.Equal(expected, together[i].LastLogits.ToArray());
                        next[i] = LogitsProcessor.ArgMax(expected);
                    }
                }
            }
            finally
            {
                foreach (var c in together.Concat(alone)) c.Dispose();
            }
        }
    }

    /// <summary>Four conversations generating on their own threads through one batcher each give their text alone.</summary>
    [Fact]
    public void GeneratorsSharingABatcherGiveTheirOwnGreedyText()
    {
        using var model = LlamaModel.Load(TestPaths.SharedFile("llamacpp", "stories260K-Q8_0.gguf"));
        var tok = TokenizerFactory.FromMetadata(model.File.Metadata);
        string[] prompts = ["Once upon a time", "The dog", "Lily was", "One day, a big"];
        var options = new GenerationOptions { MaxTokens = 48, Sampling = SamplingOptions.Greedy };
        var alone = prompts.Select(p =>
        {
            using var context = model.CreateContext();
            return new TextGenerator(context, tok).Generate(tok.Encode(p, true, false), options, TextWriter.Null).Tokens;
        }).ToArray();

        using var batcher = new DecodeBatcher(model, prompts.Length + 1);
        var together = new IReadOnlyList<int>[prompts.Length];
        // The test takes part itself until every conversation has joined, so no step runs before all four are in:
        // however the threads are scheduled, the first steps hold every conversation's token.
        batcher.Join();
        var threads = prompts.Select((p, i) => new Thread(() =>
        {
            using var context = model.CreateContext();
            var generator = new TextGenerator(context, tok) { Batcher = batcher };
            together[i] = generator.Generate(tok.Encode(p, true, false), options, TextWriter.Null).Tokens;
        })).ToList();
        threads.ForEach(t => t.Start());
        Assert.True(SpinWait.SpinUntil(() => batcher.Participants == prompts.Length + 1, TimeSpan.FromMinutes(1)), "the conversations did not all join");
        batcher.Leave();
        threads.ForEach(t => t.Join());
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(alone[i], together[i]);
        Assert.Equal(0, batcher.Participants);
        Assert.Equal(alone.Sum(t => t.Count - 1), batcher.Rows); // every generated token but each one's last went through a step
        // One step read all four prompts; each conversation stayed in from there, so every later step held every one
        // still generating, however the threads were scheduled.
        Assert.Equal(1 + alone.Max(t => t.Count - 1), batcher.Steps);
    }

    private const string LongText =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. " +
        "She wanted to play with it, but it was too high. Lily's mom said, \"Lily, let's go to the park and play with the ball.\" " +
        "Lily was very happy and ran to the park with her mom. They played all day and had lots of fun together.";

    /// <summary>
    /// A long prompt read while another conversation generates: every step that reads a batch of the prompt also
    /// takes the other's next token, so it keeps generating instead of waiting for the whole prompt; both get
    /// exactly the logits they get alone, and the prompt's cache is the one <see cref="InferenceContext.Forward"/> fills.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void APromptIsReadBesideTheGeneratingConversationsWithoutStallingThem(string name, KvCacheType cache, FlashAttention flash)
    {
        using var model = LlamaModel.Load(ModelPath(name));
        const int batch = 16;
        var options = new ContextOptions { ContextSize = 256, MaxBatch = batch, KvCacheType = cache, FlashAttention = flash };
        int[] generatingPrompt = [1, 403, 407, 261, 378];
        int[] longPrompt = [.. Enumerable.Range(0, 150).Select(i => 1 + (i * 37 + 11) % 500)];
        using var generating = model.CreateContext(options);
        using var generatingAlone = model.CreateContext(options);
        using var reading = model.CreateContext(options);
        using var readingAlone = model.CreateContext(options);
        using var batcher = new DecodeBatcher(model, 2, maxPromptRows: batch);

        int next = LogitsProcessor.ArgMax(batcher.Prompt(generating, generatingPrompt));
        Assert.Equal(next, LogitsProcessor.ArgMax(generatingAlone.Append(generatingPrompt)));
        long steps = batcher.Steps;
        batcher.Join();
        float[]? promptLogits = null;
        var promptThread = new Thread(() => promptLogits = batcher.Prompt(reading, longPrompt).ToArray());
        promptThread.Start();
        Assert.True(SpinWait.SpinUntil(() => batcher.Participants == 2, TimeSpan.FromMinutes(1)), "the prompt did not join");
        int generated = 0;
        while (!promptThread.Join(0) && generated < 100)
        {
            var logits = batcher.Decode(generating, next).ToArray();
            var expected = generatingAlone.Append([next]).ToArray();
            Assert.Equal(expected, logits);
            next = LogitsProcessor.ArgMax(expected);
            generated++;
        }
        batcher.Leave();
        promptThread.Join();

        Assert.Equal(readingAlone.Append(longPrompt).ToArray(), promptLogits);
        Assert.Equal(longPrompt, reading.Tokens);
        Assert.Equal(LogitsProcessor.ArgMax(readingAlone.Append([7])), LogitsProcessor.ArgMax(reading.Append([7])));
        // The prompt took at least 150 / 16 = 10 steps, and every step since the other joined held its token.
        Assert.Equal(generatingPrompt.Length + longPrompt.Length, batcher.PromptRows);
        Assert.Equal(batcher.Steps - steps, batcher.Rows);
        Assert.True(generated >= (longPrompt.Length + batch - 1) / batch, $"{generated} tokens generated while the prompt was read");
        Assert.Equal(0, batcher.Participants);
    }

    /// <summary>
    /// Conversations that start one after another while the earlier ones are mid-generation, with prompts read over
    /// several steps beside them, each give exactly the text they give alone.
    /// </summary>
    [Fact]
    public void ConversationsStartingMidGenerationGiveTheirOwnGreedyText()
    {
        using var model = LlamaModel.Load(TestPaths.SharedFile("llamacpp", "stories260K-Q8_0.gguf"));
        var tok = TokenizerFactory.FromMetadata(model.File.Metadata);
        string[] prompts = ["Once upon a time", LongText, "The dog", LongText + " The end. Once upon a time, Tom"];
        var contextOptions = new ContextOptions { ContextSize = 512, MaxBatch = 8 };
        var options = new GenerationOptions { MaxTokens = 40, Sampling = SamplingOptions.Greedy };
        var alone = prompts.Select(p =>
        {
            using var context = model.CreateContext(contextOptions);
            return new TextGenerator(context, tok).Generate(tok.Encode(p, true, false), options, TextWriter.Null).Tokens;
        }).ToArray();

        using var batcher = new DecodeBatcher(model, prompts.Length, maxPromptRows: 8);
        var together = new IReadOnlyList<int>[prompts.Length];
        // Each conversation starts once the one before it has streamed three pieces of text.
        var started = prompts.Select(_ => new SemaphoreSlim(0)).ToArray();
        var threads = prompts.Select((p, i) => new Thread(() =>
        {
            using var context = model.CreateContext(contextOptions);
            var generator = new TextGenerator(context, tok) { Batcher = batcher };
            int pieces = 0;
            foreach (var update in generator.GenerateUpdates(tok.Encode(p, true, false), options))
            {
                if (++pieces == 3 && i + 1 < prompts.Length) started[i + 1].Release();
                if (update.Result != null) together[i] = update.Result.Tokens;
            }
            if (pieces < 3 && i + 1 < prompts.Length) started[i + 1].Release();
        })).ToList();
        for (int i = 0; i < prompts.Length; i++)
        {
            if (i > 0) Assert.True(started[i].Wait(TimeSpan.FromMinutes(2)), $"conversation {i - 1} did not stream");
            threads[i].Start();
        }
        threads.ForEach(t => t.Join());
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(alone[i], together[i]);
        Assert.Equal(prompts.Sum(p => tok.Encode(p, true, false).Count), batcher.PromptRows);
        Assert.Equal(0, batcher.Participants);
    }
}

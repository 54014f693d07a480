using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Quants;
using QuantLlama.Sampling;
using QuantLlama.Tensors;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Models;

/// <summary>
/// Several conversations' tokens through the weights in one pass: each gets exactly its logits alone. Models without
/// F32 matrices of a multiple of 4 rows: those llama.cpp (and so QuantLlama) sums in tinyBLAS's order once a product
/// has two or more rows, so a conversation's bits there depend on being batched, in llama.cpp too.
/// </summary>
public class DecodeBatcherTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDirectory();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, KvCacheType, FlashAttention> Models => new()
    {
        { "stories-q8_0", KvCacheType.F16, FlashAttention.On },
        { "stories-q8_0", KvCacheType.F16, FlashAttention.Off },
        { "stories-q8_0", KvCacheType.F32, FlashAttention.Auto },
        { "stories-q4_0", KvCacheType.F16, FlashAttention.On },
        { "moe-q8_0", KvCacheType.F16, FlashAttention.On },
    };

    private string ModelPath(string name) => name switch
    {
        "stories-q8_0" => TestPaths.SharedFile("llamacpp", "stories260K-Q8_0.gguf"),
        "stories-q4_0" => TestPaths.SharedFile("llamacpp", "stories260K-Q4_0.gguf"),
        // 6 experts: the F32 router's 6 rows are not tinyBLAS's (see above).
        _ => SyntheticLlama.Write(_dir, GgmlType.Q8_0, new SyntheticLlama.Shape { Experts = 6, ExpertsUsed = 2 }),
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
        Assert.True(batcher.Steps <= batcher.Rows - 3, $"{batcher.Rows} rows in {batcher.Steps} steps"); // the first step held all four
    }
}

using System.Runtime.InteropServices;
using QuantLlama.Gguf;
using QuantLlama.Gguf.Legacy;
using QuantLlama.Tests.Legacy;
using QuantLlama.Models;
using QuantLlama.Sampling;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Models;

public class LlamaModelTests(ITestOutputHelper output)
{
    /// <summary>BOS + "Once upon a time" in the stories260K vocabulary.</summary>
    private static readonly int[] OnceUponATime = [1, 403, 407, 261, 378];

    private static readonly int[] SomeTokens = [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889];

    [Theory]
    [InlineData("stories260K.gguf")]
    [InlineData("stories260K-Q8_0.gguf")]
    public void GreedyContinuationMatchesLlamaCpp(string fileName)
    {
        string path = TestPaths.SharedFile("llamacpp", fileName);
        int[] expected;
        using (var reference = LlamaCppModel.Load(path, 128))
        {
            Assert.Equal(OnceUponATime, reference.Tokenize("Once upon a time"));
            expected = reference.GenerateGreedy(OnceUponATime, 64, stopAtEndOfGeneration: false);
        }

        using var model = InferenceContext.Load(path);
        var tokenizer = TokenizerFactory.FromMetadata(model.Model.File.Metadata);
        Assert.Equal(OnceUponATime, tokenizer.Encode("Once upon a time", addSpecial: true, parseSpecial: false));
        var actual = Greedy(model, OnceUponATime, 64);
        Assert.Equal(expected, actual);

        var decoder = new StreamingDecoder(tokenizer);
        string text = "Once upon a time" + string.Concat(actual.Select(decoder.Push)) + decoder.Flush();
        output.WriteLine(text);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.", text);
    }

    [Fact]
    public void LegacyGgjtFileGivesTheSameContinuationAsItsGguf()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string gguf = TestPaths.SharedFile("llamacpp", "stories260K.gguf");
            string ggjt = Path.Combine(dir, "stories260K.ggjt.bin");
            using (var source = GgufFile.Open(gguf))
                LegacyGgmlWriter.FromGguf(source, GgmlLegacyFormat.Ggjt, 3, VocabSpelling.SentencePiece).Write(ggjt);
            using var a = InferenceContext.Load(gguf);
            using var b = InferenceContext.Load(ggjt);
            Assert.Equal(a.Config with { ContextLength = 0 }, b.Config with { ContextLength = 0 });
            Assert.Equal(Greedy(a, OnceUponATime, 24), Greedy(b, OnceUponATime, 24));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void SingleTokenForwardPassesAllocateNothing()
    {
        using var model = InferenceContext.Load(TestPaths.SharedFile("llamacpp", "stories260K-Q8_0.gguf"));
        model.Forward(OnceUponATime, 0);
        int next = LogitsProcessor.ArgMax(model.Forward([400], 5)); // warm-up: JIT, per-thread scratch
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int position = 6; position < 40; position++)
            next = LogitsProcessor.ArgMax(model.Forward([next], position));
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void ModelBehindASymlinkLoads()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string link = Path.Combine(dir, "model.gguf");
            File.CreateSymbolicLink(link, TestPaths.SharedFile("llamacpp", "stories260K.gguf"));
            using var model = InferenceContext.Load(link);
            Assert.Equal(512, model.Config.VocabSize);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void SplitPromptGivesTheSameLogitsAsABatch()
    {
        string path = TestPaths.SharedFile("llamacpp", "stories260K.gguf");
        using var batched = InferenceContext.Load(path, new ContextOptions { KvCacheType = KvCacheType.F32 });
        using var split = InferenceContext.Load(path, new ContextOptions { KvCacheType = KvCacheType.F32, MaxBatch = 2 });
        var a = batched.Forward(OnceUponATime, 0).ToArray();
        var b = Array.Empty<float>();
        for (int i = 0; i < OnceUponATime.Length; i++) b = split.Forward(OnceUponATime.AsSpan(i, 1), i).ToArray();
        Assert.True(MaxAbsDiff(a, b) < 1e-4f, $"max diff {MaxAbsDiff(a, b)}");
    }

    /// <summary>
    /// A tensor of a type without kernels fails the load itself, naming the tensor and the type, so nothing runs
    /// (or prints "model built") on a model that cannot.
    /// </summary>
    [Theory]
    [InlineData("blk.1.ffn_down.weight", GgmlType.MXFP4)]
    [InlineData("token_embd.weight", GgmlType.MXFP4)]
    public void UnsupportedTensorTypeFailsAtLoad(string tensor, GgmlType type)
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = SyntheticLlama.Write(dir, GgmlType.Q8_0, new SyntheticLlama.Shape { Layers = 2, ZeroTensor = (tensor, type) });
            var e = Assert.Throws<NotSupportedException>(() => LlamaModel.Load(path).Dispose());
            Assert.Contains($"'{tensor}'", e.Message);
            Assert.Contains(type.ToString(), e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// With the default f16 KV cache (flash attention on) and 64-value heads, a batch shorter than 64 tokens
    /// (attention over an f32 copy of the cache) and the same tokens one at a time (attention straight from the f16
    /// cache) give the same bits, as in llama.cpp. With flash attention off neither engine does: a batch sums in
    /// llama.cpp's GEMM order, one token in its vector dot's.
    /// </summary>
    [Fact]
    public void BatchAndTokenByTokenGiveIdenticalLogits()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            // F32 weights: a quantized activation would absorb a last-bit difference in the attention output.
            string path = SyntheticLlama.Write(dir, GgmlType.F32, new SyntheticLlama.Shape());
            int[] tokens = [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889, 13];
            using var batched = InferenceContext.Load(path);
            using var single = InferenceContext.Load(path);
            Assert.Equal(64, batched.Config.HeadDim);
            var a = batched.Forward(tokens, 0).ToArray();
            var b = Array.Empty<float>();
            for (int i = 0; i < tokens.Length; i++) b = single.Forward(tokens.AsSpan(i, 1), i).ToArray();
            for (int j = 0; j < a.Length; j++)
                Assert.True(BitConverter.SingleToInt32Bits(a[j]) == BitConverter.SingleToInt32Bits(b[j]), $"logit {j}: batch {a[j]:R}, one at a time {b[j]:R}");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// The last position's logits after a 12-token batch, after one more token (matrix-vector path, KV cache), and
    /// for all 13 as one batch, against llama.cpp on the same file: with an f32 KV cache on both sides, then the
    /// default f16 cache with flash attention off and on.
    /// Bound: max |ours − llama.cpp| ≤ tolerance × max(1, max |logit|). F32: 5e-6 with the f32 cache (measured
    /// ≤ 6e-7), 5e-4 with the f16 cache (measured ≤ 2.4e-4: a last-bit difference in a query, key or value
    /// sometimes rounds to another f16). F16: 2e-3 (llama.cpp rounds activations to f16 for F16 weights; measured ≤ 3.7e-4). Quantized:
    /// 2e-2; mostly ≤ 2e-7 in every mode (same Q8_0/Q8_1/Q8_K activation quantization as ggml), but at some
    /// positions up to ~1e-2 (measured 1.1e-2, in each cache mode for some type): a last-bit difference that flips
    /// one activation-quantization rounding moves every logit.
    /// Quantized models keep token_embd and output in Q8_0, so the test's time goes to the type under test.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.F32, 5e-6, 5e-4, false)]
    [InlineData(GgmlType.F32, 5e-6, 5e-4, true)]
    [InlineData(GgmlType.F16, 2e-3, 2e-3, false)]
    [InlineData(GgmlType.Q8_0, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.Q4_0, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.Q4_1, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.Q5_0, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.Q5_1, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.Q2_K, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.Q3_K, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.Q4_K, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.Q5_K, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.Q6_K, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.IQ4_NL, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.IQ4_XS, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.IQ3_XXS, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.IQ3_S, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.IQ2_XXS, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.IQ2_XS, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.IQ2_S, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.IQ1_S, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.IQ1_M, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.TQ1_0, 2e-2, 2e-2, false)]
    [InlineData(GgmlType.TQ2_0, 2e-2, 2e-2, false)]
    public void LogitsMatchLlamaCpp(GgmlType type, double tolerance, double f16Tolerance, bool tiedOutput)
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            // Quantized layers with Q8_0 embeddings and head: the vocabulary-sized matrices stay quick to quantize.
            var embeddingType = type is GgmlType.F32 or GgmlType.F16 ? type : GgmlType.Q8_0;
            string path = SyntheticLlama.Write(dir, type, new SyntheticLlama.Shape { TiedOutput = tiedOutput, EmbeddingType = embeddingType });
            CompareWithLlamaCpp(path, tolerance, f16Tolerance);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void MixtralLogitsMatchLlamaCppAndBothExpertLayoutsAgree()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            var shape = new SyntheticLlama.Shape { Experts = 4, ExpertsUsed = 2 };
            string stacked = SyntheticLlama.Write(dir, GgmlType.F32, shape);
            string split = SyntheticLlama.Write(dir, GgmlType.F32, shape with { SplitExperts = true });
            CompareWithLlamaCpp(stacked, 5e-6, 5e-4); // as LogitsMatchLlamaCpp's F32

            using var a = InferenceContext.Load(stacked);
            using var b = InferenceContext.Load(split);
            Assert.True(a.Config.IsMixtureOfExperts);
            Assert.Equal(a.Forward(SomeTokens, 0).ToArray(), b.Forward(SomeTokens, 0).ToArray());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ConfigComesFromMetadataAndTensorShapes()
    {
        using var file = GgufFile.Open(TestPaths.SharedFile("llamacpp", "stories260K.gguf"));
        var c = LlamaConfig.FromModelFile(file);
        Assert.Equal(64, c.EmbeddingLength);
        Assert.Equal(172, c.FeedForwardLength);
        Assert.Equal(5, c.BlockCount);
        Assert.Equal(8, c.HeadCount);
        Assert.Equal(4, c.HeadCountKv);
        Assert.Equal(512, c.VocabSize);
        Assert.Equal(128, c.ContextLength);
        Assert.Equal(8, c.HeadDim);
        Assert.False(c.IsMixtureOfExperts);
    }

    [Fact]
    public void TooManyTokensForTheContextIsAClearError()
    {
        using var model = InferenceContext.Load(TestPaths.SharedFile("llamacpp", "stories260K.gguf"), new ContextOptions { ContextSize = 8 });
        model.Forward(OnceUponATime, 0);
        var e = Assert.Throws<ContextFullException>(() => model.Forward(OnceUponATime, 5));
        Assert.Contains("context holds 8 tokens, 10 are needed", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([512], 0));
    }

    [Fact]
    public void MissingTensorIsReportedByName()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = Path.Combine(dir, "broken.gguf");
            using (var src = GgufFile.Open(TestPaths.SharedFile("llamacpp", "stories260K.gguf")))
            {
                var w = new GgufWriter().CopyMetadataFrom(src);
                foreach (var t in src.Tensors)
                    if (t.Name != "blk.3.attn_k.weight") w.AddTensor(t.Name, t.Type, t.Dimensions, src.GetTensorData(t).ToArray());
                w.Write(path);
            }
            var e = Assert.Throws<InvalidDataException>(() => InferenceContext.Load(path));
            Assert.Contains("tensor 'blk.3.attn_k.weight' is missing", e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private void CompareWithLlamaCpp(string path, double tolerance, double f16Tolerance)
        => CompareWithLlamaCpp(output, path, tolerance, f16Tolerance);

    /// <summary>
    /// <see cref="CompareWithLlamaCpp(ITestOutputHelper, string, double, KvCacheType, FlashAttention)"/> with the f32
    /// cache, then the f16 cache with flash attention off and on; returns the largest relative difference of each.
    /// </summary>
    internal static (double F32, double F16) CompareWithLlamaCpp(ITestOutputHelper output, string path, double tolerance, double f16Tolerance)
    {
        double f32 = CompareWithLlamaCpp(output, path, tolerance, KvCacheType.F32, FlashAttention.Off);
        double off = CompareWithLlamaCpp(output, path, f16Tolerance, KvCacheType.F16, FlashAttention.Off);
        double on = CompareWithLlamaCpp(output, path, f16Tolerance, KvCacheType.F16, FlashAttention.On);
        return (f32, Math.Max(off, on));
    }

    /// <summary>
    /// The f16 cache's bound on this CPU: the x64 one, twice that on ARM64. Ours attends over an f16 cache as
    /// llama.cpp's x64 (AVX2) build does, on every CPU; its ARM64 build (NEON without f16 arithmetic: no f16
    /// instruction in its libggml-cpu.so) does otherwise. Its tinyBLAS multiplies an f16 matrix by an f32 one
    /// as it is, so the softmax weights (and one token's query) meet the cache unrounded where x64 rounds them to
    /// f16 first, and its f16 vector dot sums 16-value steps into four 4-lane accumulators (x64: 32 into four
    /// 8-lane ones). The x64 bounds' effect (a last-bit difference rounding to another f16 or flipping an
    /// activation rounding) then comes up more often. Measured under qemu (neoverse-n1) on the same files:
    /// llama.cpp's ARM64 build against its x64 build 2.5e-2 (Q5_1), 1.8e-2 (IQ1_S), 6.3e-4 (phi3 F32), 2.5e-4
    /// (F32); ours against its ARM64 build 2.4e-2, 2.7e-2, 6.3e-4, 2.5e-4; ours on ARM64 against ours on x64
    /// ≤ 2.5e-7 for F32 weights. Worst of this test and ArchitectureTests against the ARM64 build: 3.4e-2
    /// (IQ1_M; TQ1_0, TQ2_0 3.2e-2), F32 6.3e-4 (phi3, YaRN), F16 8.6e-4.
    /// </summary>
    internal static double F16CacheBound(double x64Bound) =>
        RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 2 * x64Bound : x64Bound;

    /// <summary>Asserts the three comparisons within max |ours − llama.cpp| ≤ tolerance × max(1, max |logit|); returns the largest ratio.</summary>
    private static double CompareWithLlamaCpp(ITestOutputHelper output, string path, double tolerance, KvCacheType cache, FlashAttention flash)
    {
        double worst = 0, bound = cache == KvCacheType.F16 ? F16CacheBound(tolerance) : tolerance;
        float[] expectedBatch, expectedNext;
        using (var reference = LlamaCppModel.Load(path, 64, f32KvCache: cache == KvCacheType.F32, flashAttention: flash == FlashAttention.On))
        {
            expectedBatch = reference.LastLogits(SomeTokens);
            expectedNext = reference.LastLogits([.. SomeTokens, 319]);
        }
        using var model = InferenceContext.Load(path, new ContextOptions { KvCacheType = cache, FlashAttention = flash });
        var batch = model.Forward(SomeTokens, 0).ToArray();
        var next = model.Forward([319], SomeTokens.Length).ToArray();
        var whole = model.Forward([.. SomeTokens, 319], 0).ToArray();
        string mode = cache == KvCacheType.F32 ? "f32 cache" : $"f16 cache, flash attention {flash}";
        foreach (var (expected, actual, what) in new[] { (expectedBatch, batch, "batch"), (expectedNext, next, "next"), (expectedNext, whole, "batch of 13") })
        {
            float scale = Math.Max(1f, expected.Max(MathF.Abs));
            float diff = MaxAbsDiff(expected, actual);
            output.WriteLine($"{Path.GetFileName(path)} {mode} {what}: max |logit| {scale:G4}, max diff {diff:G4} ({diff / scale:G3} relative)");
            worst = Math.Max(worst, diff / scale);
            Assert.True(diff <= bound * scale, $"{mode}, {what}: max diff {diff} > {bound} × {scale}");
            int want = LogitsProcessor.ArgMax(expected), got = LogitsProcessor.ArgMax(actual);
            if (want == got || bound == tolerance) Assert.Equal(want, got);
            else
            {
                // A widened bound (ARM64's f16 cache) can swap a near-tie: llama.cpp's own lead must be within it.
                float lead = expected[want] - expected[got];
                output.WriteLine($"  {what}: llama.cpp's {want} leads our {got} by {lead:G3} ({lead / scale:G3} relative)");
                Assert.True(lead <= bound * scale, $"{mode}, {what}: llama.cpp's {want} leads our {got} by {lead}");
            }
        }
        return worst;
    }

    internal static List<int> Greedy(InferenceContext model, IReadOnlyList<int> prompt, int count)
    {
        var output = new List<int>();
        var logits = model.Forward(prompt.ToArray(), 0);
        int position = prompt.Count;
        for (int i = 0; i < count; i++)
        {
            int next = LogitsProcessor.ArgMax(logits);
            output.Add(next);
            if (i < count - 1) logits = model.Forward([next], position++);
        }
        return output;
    }

    private static float MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        float m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }
}

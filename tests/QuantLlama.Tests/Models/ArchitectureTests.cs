using QuantLlama.Gguf;
using QuantLlama.Models;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Models;

/// <summary>
/// Each llama-family feature a model file can ask for (RoPE frequency factors, a head size of its own, linear and
/// YaRN RoPE scaling, the qwen2, qwen3, gemma2, gemma3 and phi3 architectures, Phi-3's LongRoPE) on tiny random-weight GGUFs against llama.cpp: logits with
/// both caches (LlamaModelTests' bounds), 32 greedy tokens, and a batch against one token at a time.
/// </summary>
public class ArchitectureTests(ITestOutputHelper output)
{
    private static readonly int[] Prompt = [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889, 13];

    private static readonly Dictionary<string, SyntheticLlama.Shape> Features = new()
    {
        ["rope-freqs"] = new() { RopeFreqFactors = true },
        ["head-size"] = new() { HeadDim = 32 },
        ["rope-linear"] = new() { RopeScalingType = "linear", RopeScalingFactor = 4 },
        ["rope-yarn"] = new() { RopeScalingType = "yarn", RopeScalingFactor = 4, RopeOriginalContext = 64 },
        ["llama-bias"] = new() { QkvBias = true },
        ["qwen2"] = new() { Architecture = "qwen2", QkvBias = true, TiedOutput = true },
        ["qwen3"] = new() { Architecture = "qwen3", QkNorm = true, HeadDim = 96 },
        // Fused QKV and gate-up matrices, a sliding window llama.cpp ignores for Phi-3 (whose heads are dim/heads).
        ["phi3"] = new() { Architecture = "phi3", Fused = true, SlidingWindow = 4 },
        // LongRoPE with an attention factor: these tests' contexts (64 for llama.cpp, 64 or the file's 256 for ours)
        // are within an original context of 256 (the short factors) and beyond one of 32 (the long factors).
        ["phi3-longrope-short"] = new() { Architecture = "phi3", Fused = true, LongRope = true, RopeAttnFactor = 1.2f, RopeOriginalContext = 256 },
        ["phi3-longrope-long"] = new() { Architecture = "phi3", Fused = true, LongRope = true, RopeAttnFactor = 1.2f, RopeOriginalContext = 32 },
        // Windows of 4 positions in a 13-token prompt; soft caps low enough to bend the scores and logits; embeddings
        // of Gemma's size, which the model scales by √dim (tied, so the logits stay a few units).
        ["gemma2"] = new()
        {
            Architecture = "gemma2", PostNorms = true, TiedOutput = true, EmbeddingScale = 1f / 16, SlidingWindow = 4,
            AttnSoftCap = 2f, FinalSoftCap = 5f,
        },
        // Six layers: five local (RoPE base 10000, unscaled), then one global (base 1e6, linear scaling by 8).
        ["gemma3"] = new()
        {
            Architecture = "gemma3", PostNorms = true, QkNorm = true, HeadDim = 96, TiedOutput = true, EmbeddingScale = 1f / 16,
            SlidingWindow = 4, Layers = 6,
            RopeFreqBase = 1e6f, RopeScalingType = "linear", RopeScalingFactor = 8,
        },
    };

    public static TheoryData<string, GgmlType> Cases()
    {
        var data = new TheoryData<string, GgmlType>();
        foreach (var feature in Features.Keys)
        {
            data.Add(feature, GgmlType.F32);
            data.Add(feature, GgmlType.Q8_0);
        }
        return data;
    }

    /// <summary>Runs <paramref name="test"/> on the feature's model in <paramref name="type"/> (embeddings Q8_0 unless F32), written to a temporary directory.</summary>
    private static void WithModel(string feature, GgmlType type, Action<string> test)
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            test(SyntheticLlama.Write(dir, type, Features[feature] with { EmbeddingType = type == GgmlType.F32 ? GgmlType.F32 : GgmlType.Q8_0 }));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// Gemma's GELU looks each gate up by its f16 rounding (ggml's table, which <c>GemmaKernelTests</c> matches bit for
    /// bit): a last-bit difference in a gate, which F32 products summed in another order than llama.cpp's leave, moves
    /// the activation by a whole f16 step (up to 2^-11 of it) where it crosses a rounding boundary. Q8_0 products are
    /// llama.cpp's to the bit, so Q8_0 files keep the usual bounds.
    /// </summary>
    private static bool StepsByF16Gelu(string feature, GgmlType type) => feature.StartsWith("gemma") && type == GgmlType.F32;

    /// <summary>
    /// Bounds as LlamaModelTests.LogitsMatchLlamaCpp: F32 5e-6 (f32 cache) and 5e-4 (f16), Q8_0 2e-2; F32 Gemma 2e-3
    /// (<see cref="StepsByF16Gelu"/>).
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsMatchLlamaCpp(string feature, GgmlType type)
    {
        WithModel(feature, type, path =>
        {
            var (f32, f16) = StepsByF16Gelu(feature, type) ? LlamaModelTests.CompareWithLlamaCpp(output, path, 2e-3, 2e-3)
                : type == GgmlType.F32 ? LlamaModelTests.CompareWithLlamaCpp(output, path, 5e-6, 5e-4)
                : LlamaModelTests.CompareWithLlamaCpp(output, path, 2e-2, 2e-2);
            output.WriteLine($"| {feature} | {type} | {f32:G2} | {f16:G2} |");
        });
    }

    /// <summary>
    /// 32 greedy tokens with the default cache (f16, flash attention on) on both sides: identical, or identical up to
    /// a token where llama.cpp's own two candidates are closer than the logits bound. Random weights leave such
    /// near-ties (0.005 apart of 3.8 in rope-freqs Q8_0 at the 15th position), and the rounding steps the bounds allow
    /// (an f16 cache rounding, or a Q8_0 activation rounding turned by a last-bit difference) can swap them.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void GreedyContinuationMatchesLlamaCpp(string feature, GgmlType type)
    {
        WithModel(feature, type, path =>
        {
            using var reference = LlamaCppModel.Load(path, 64);
            int[] expected = reference.GenerateGreedy(Prompt, 32, stopAtEndOfGeneration: false);
            List<int> actual;
            using (var model = InferenceContext.Load(path, new ContextOptions { ContextSize = 64 }))
                actual = LlamaModelTests.Greedy(model, Prompt, 32);
            int same = 0;
            while (same < expected.Length && expected[same] == actual[same]) same++;
            output.WriteLine($"{feature} {type}: {same} of 32 greedy tokens agree");
            if (same == expected.Length) return;
            float[] logits = reference.LastLogits([.. Prompt, .. expected[..same]]);
            float scale = Math.Max(1f, logits.Max(MathF.Abs)), margin = logits[expected[same]] - logits[actual[same]];
            output.WriteLine($"  then llama.cpp's {expected[same]} leads our {actual[same]} by {margin:G3} ({margin / scale:G3} relative)");
            Assert.True(margin <= (type == GgmlType.F32 && !StepsByF16Gelu(feature, type) ? 5e-4 : 2e-2) * scale, $"token {same}: llama.cpp's {expected[same]} leads our {actual[same]} by {margin}");
        });
    }

    /// <summary>
    /// The prompt as one batch and one token at a time: the same logits (f32 cache; the batch sums in GEMM order, so
    /// F32 Gemma's f16 GELU lookup can step, <see cref="StepsByF16Gelu"/>).
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void BatchEqualsOneTokenAtATime(string feature, GgmlType type)
    {
        WithModel(feature, type, path =>
        {
            var options = new ContextOptions { ContextSize = 64, KvCacheType = KvCacheType.F32 };
            using var batched = InferenceContext.Load(path, options);
            using var single = InferenceContext.Load(path, options);
            var a = batched.Forward(Prompt, 0).ToArray();
            var b = Array.Empty<float>();
            for (int i = 0; i < Prompt.Length; i++) b = single.Forward(Prompt.AsSpan(i, 1), i).ToArray();
            float scale = Math.Max(1f, a.Max(MathF.Abs)), diff = 0;
            for (int j = 0; j < a.Length; j++) diff = Math.Max(diff, Math.Abs(a[j] - b[j]));
            output.WriteLine($"{feature} {type}: batch against one at a time, max diff {diff:G3} ({diff / scale:G3} relative)");
            Assert.True(diff <= (StepsByF16Gelu(feature, type) ? 2e-3 : 1e-5) * scale, $"max diff {diff}");
        });
    }

    /// <summary>
    /// A 100-token prompt, past llama.cpp's 64-row flash-attention tile, on Gemma's windows of 4: the last row's
    /// logits against llama.cpp's, f32 cache and f16 with flash attention, within the Q8_0 bound. A wrong window or
    /// tile is off by whole units; what remains are rounding flips carried to every later row by the global layers
    /// (gemma3: our rows equal llama.cpp's to 7e-7 up to position 17, then differ by 3e-2 to 1e-1, where llama.cpp's
    /// own batch and its token-by-token run differ by 2.6e-2 at the last row).
    /// </summary>
    [Theory]
    [InlineData("gemma2")]
    [InlineData("gemma3")]
    public void LongPromptPastTheTileMatchesLlamaCpp(string feature)
    {
        var random = new Random(3);
        int[] prompt = [1, .. Enumerable.Range(0, 99).Select(_ => random.Next(100, 30000))];
        WithModel(feature, GgmlType.Q8_0, path =>
        {
            foreach (var (cache, flash, bound) in new[] { (KvCacheType.F32, FlashAttention.Off, 2e-2), (KvCacheType.F16, FlashAttention.On, 2e-2) })
            {
                float[] expected;
                using (var reference = LlamaCppModel.Load(path, 128, f32KvCache: cache == KvCacheType.F32, flashAttention: flash == FlashAttention.On))
                    expected = reference.LastLogits(prompt);
                using var model = InferenceContext.Load(path, new ContextOptions { ContextSize = 128, KvCacheType = cache, FlashAttention = flash });
                var actual = model.Forward(prompt, 0).ToArray();
                float scale = Math.Max(1f, expected.Max(MathF.Abs)), diff = 0;
                for (int j = 0; j < expected.Length; j++) diff = Math.Max(diff, Math.Abs(expected[j] - actual[j]));
                output.WriteLine($"{feature} {cache} cache, flash {flash}: max diff {diff:G3} ({diff / scale:G3} relative)");
                Assert.True(diff <= bound * scale, $"{cache} cache, flash {flash}: max diff {diff}");
            }
        });
    }

    /// <summary>
    /// LongRoPE's choice against llama.cpp, each context on both sides (f32 cache): one file (original context 256)
    /// in contexts of 128 and 512 takes the short factors, then the long ones, and the two sets give different
    /// logits; another (original context 32) in a context of 32 takes the long ones, as llama.cpp rounds its context
    /// up to 256 before it compares.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.F32, 5e-6)]
    [InlineData(GgmlType.Q8_0, 2e-2)]
    public void LongRopePicksItsFactorsByContextSizeAsLlamaCpp(GgmlType type, double bound)
    {
        var random = new Random(5);
        int[] prompt = [1, .. Enumerable.Range(0, 19).Select(_ => random.Next(100, 30000))];
        float[] Compare(string path, int contextSize)
        {
            float[] expected;
            using (var reference = LlamaCppModel.Load(path, contextSize, f32KvCache: true, flashAttention: false))
                expected = reference.LastLogits(prompt);
            using var model = InferenceContext.Load(path, new ContextOptions { ContextSize = contextSize, KvCacheType = KvCacheType.F32, FlashAttention = FlashAttention.Off });
            var actual = model.Forward(prompt, 0).ToArray();
            float scale = Math.Max(1f, expected.Max(MathF.Abs)), diff = 0;
            for (int j = 0; j < expected.Length; j++) diff = Math.Max(diff, Math.Abs(expected[j] - actual[j]));
            output.WriteLine($"{type} {Path.GetFileName(path)} context {contextSize}: max diff {diff:G3} ({diff / scale:G3} relative)");
            Assert.True(diff <= bound * scale, $"context {contextSize}: max diff {diff}");
            return actual;
        }
        WithModel("phi3-longrope-short", type, path =>
        {
            float[] shortFactors = Compare(path, 128), longFactors = Compare(path, 512);
            float apart = 0;
            for (int j = 0; j < shortFactors.Length; j++) apart = Math.Max(apart, Math.Abs(shortFactors[j] - longFactors[j]));
            output.WriteLine($"{type}: short against long factors, max diff {apart:G3}");
            Assert.True(apart > 0.1f, $"the two factor sets differ by only {apart}");
        });
        WithModel("phi3-longrope-long", type, path => Compare(path, 32));
    }

    [Fact]
    public void GemmaConfigReadsWindowsCapsAndQueryScale()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            using var file = GgufFile.Open(SyntheticLlama.Write(dir, GgmlType.Q8_0, Features["gemma3"]));
            var c = LlamaConfig.FromModelFile(file);
            Assert.Equal(ModelArchitecture.Gemma3, c.Architecture);
            Assert.Equal(4, c.SlidingWindow);
            Assert.Equal([true, true, true, true, true, false], Enumerable.Range(0, 6).Select(c.IsLocalLayer));
            Assert.Equal(10000f, c.RopeFreqBaseLocal);
            Assert.Equal(1f / MathF.Sqrt(96), c.QueryScale);
            Assert.Equal(0f, c.AttentionSoftCap);
            Assert.Equal(0f, c.FinalSoftCap);

            using var gemma2 = GgufFile.Open(SyntheticLlama.Write(dir, GgmlType.Q8_0, Features["gemma2"]));
            c = LlamaConfig.FromModelFile(gemma2);
            Assert.Equal([true, false], Enumerable.Range(0, 2).Select(c.IsLocalLayer));
            Assert.Equal(0f, c.RopeFreqBaseLocal);
            Assert.Equal(2f, c.AttentionSoftCap);
            Assert.Equal(5f, c.FinalSoftCap);
            Assert.Equal(1f / 8, c.QueryScale);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ConfigReadsHeadSizeAndRopeScaling()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            using var file = GgufFile.Open(SyntheticLlama.Write(dir, GgmlType.F32, new SyntheticLlama.Shape
            {
                Architecture = "qwen3", QkNorm = true, HeadDim = 96, RopeScalingType = "yarn", RopeScalingFactor = 4, RopeOriginalContext = 64,
            }));
            var c = LlamaConfig.FromModelFile(file);
            Assert.Equal(ModelArchitecture.Qwen3, c.Architecture);
            Assert.Equal(96, c.HeadDim);
            Assert.Equal(384, c.QueryDim);
            Assert.Equal(192, c.KvDim);
            Assert.Equal(RopeScalingType.Yarn, c.RopeScaling);
            Assert.Equal(0.25f, c.RopeFreqScale);
            Assert.Equal(64, c.RopeOriginalContext);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>What llama.cpp refuses we refuse at load, in one line naming the culprit, never mid-generation.</summary>
    [Theory]
    [InlineData("llama", "blk.0.attn_q_norm.weight", "tensor 'blk.0.attn_q_norm.weight' is not supported for architecture 'llama'")]
    [InlineData("qwen3", "rope_freqs.weight", "tensor 'rope_freqs.weight' is not supported for architecture 'qwen3'")]
    [InlineData("falcon", null, "architecture 'falcon' is not supported")]
    [InlineData("qwen3", "rope_factors_long.weight", "tensor 'rope_factors_long.weight' is not supported for architecture 'qwen3'")]
    [InlineData("gemma2", "blk.0.attn_q_norm.weight", "tensor 'blk.0.attn_q_norm.weight' is not supported for architecture 'gemma2'")]
    public void UnsupportedFileFailsAtLoadInOneLine(string architecture, string? extraTensor, string expected)
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = SyntheticLlama.Write(dir, GgmlType.Q8_0, new SyntheticLlama.Shape
            {
                Architecture = architecture, QkNorm = architecture == "qwen3", PostNorms = architecture == "gemma2",
                TiedOutput = architecture == "gemma2", Fused = architecture == "phi3", ExtraTensor = extraTensor, Layers = 1,
            });
            bool llamaCppLoads;
            try
            {
                using var reference = LlamaCppModel.Load(path, 64);
                llamaCppLoads = true;
            }
            catch (Exception)
            {
                llamaCppLoads = false;
            }
            Assert.False(llamaCppLoads, "llama.cpp loads the file");
            var e = Assert.ThrowsAny<Exception>(() => InferenceContext.Load(path));
            Assert.True(e is NotSupportedException, e.ToString());
            Assert.Contains(expected, e.Message);
            Assert.DoesNotContain('\n', e.Message);
            using var file = GgufFile.Open(path);
            Assert.Equal(e.Message, LlamaModel.WhyNotRunnable(file));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

using QuantLlama.Models;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Models;

/// <summary>
/// RoPE's angles against ggml's own rope (llama.cpp's CPU build), to the bit: rotating the pair (1, 0) gives
/// (cos, sin) exactly, whatever the order of the rotation's products, so ggml's output is its cos/sin cache.
/// </summary>
public unsafe class RotaryEmbeddingTests
{
    private static readonly int[] Positions = [0, 1, 2, 7, 12, 100, 1000, 4095, 32767];

    [Theory]
    [InlineData("none", 1f, 0, false)]
    [InlineData("none", 1f, 0, true)]      // Llama 3.1's rope_freqs
    [InlineData("linear", 4f, 0, false)]
    [InlineData("linear", 2.5f, 0, true)]
    [InlineData("yarn", 4f, 64, false)]
    [InlineData("yarn", 40f, 4096, false)] // Qwen2.5's 32K → 128K kind
    [InlineData("yarn", 8f, 8192, true)]
    public void AnglesMatchGgml(string scaling, float factor, int originalContext, bool freqFactors)
    {
        const int headDim = 128, pairs = headDim / 2, contextLength = 32768;
        const float freqBase = 500000f;
        var type = scaling switch { "linear" => RopeScalingType.Linear, "yarn" => RopeScalingType.Yarn, _ => RopeScalingType.None };
        var config = new LlamaConfig
        {
            ContextLength = contextLength, EmbeddingLength = headDim * 4, BlockCount = 1, FeedForwardLength = 1, HeadCount = 4,
            HeadCountKv = 4, HeadDim = headDim, RmsEpsilon = 1e-5f, RopeFreqBase = freqBase, RopeDimensionCount = headDim,
            RopeScaling = type, RopeFreqScale = 1f / factor, RopeOriginalContext = originalContext, ExpertCount = 0,
            ExpertUsedCount = 0, VocabSize = 1,
        };
        float[]? factors = freqFactors ? Enumerable.Range(0, pairs).Select(p => p < 20 ? 1f : 1f + (p - 20) * 0.17f).ToArray() : null;
        var rope = new RotaryEmbedding(config, factors);

        // llama.cpp's context: ext_factor 1 for YaRN, and an attn_factor that cancels ggml's YaRN magnitude.
        float extFactor = type == RopeScalingType.Yarn ? 1f : 0f, attnFactor = 1f;
        if (extFactor != 0)
        {
            float f = 1f / config.RopeFreqScale;
            attnFactor = (f <= 1f ? 1f : 0.1f * MathF.Log(f) + 1f) * (1f / (1f + 0.1f * MathF.Log(f)));
        }

        using var g = new GgmlGraph();
        IntPtr a = g.Tensor(GgmlType.F32, headDim, 1, Positions.Length);
        IntPtr pos = g.Tensor(GgmlType.I32, Positions.Length);
        IntPtr ff = factors == null ? IntPtr.Zero : g.Tensor(GgmlType.F32, pairs);
        float* x = (float*)GgmlGraph.Data(a);
        for (int i = 0; i < headDim * Positions.Length; i++) x[i] = i % 2 == 0 ? 1f : 0f;
        for (int i = 0; i < Positions.Length; i++) ((int*)GgmlGraph.Data(pos))[i] = Positions[i];
        if (factors != null) factors.CopyTo(new Span<float>(GgmlGraph.Data(ff), pairs));
        IntPtr result = g.RopeExt(a, pos, ff, headDim, 0, config.RopeYarnContext, freqBase, config.RopeFreqScale, extFactor, attnFactor, 32f, 1f);
        g.Compute(result);
        float* theirs = (float*)GgmlGraph.Data(result);

        var cos = new float[pairs];
        var sin = new float[pairs];
        for (int i = 0; i < Positions.Length; i++)
        {
            fixed (float* c = cos, s = sin) rope.Angles(Positions[i], c, s);
            for (int p = 0; p < pairs; p++)
            {
                float tc = theirs[i * headDim + 2 * p], ts = theirs[i * headDim + 2 * p + 1];
                Assert.True(BitConverter.SingleToInt32Bits(cos[p]) == BitConverter.SingleToInt32Bits(tc)
                    && BitConverter.SingleToInt32Bits(sin[p]) == BitConverter.SingleToInt32Bits(ts),
                    $"position {Positions[i]}, pair {p}: ours ({cos[p]:R}, {sin[p]:R}), ggml ({tc:R}, {ts:R})");
            }
        }
    }
}

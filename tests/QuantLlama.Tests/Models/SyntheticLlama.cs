using QuantLlama.Gguf;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Models;

/// <summary>
/// Writes small LLaMA / Mixtral GGUFs with random weights and the Llama 2 vocabulary (copied from the shared
/// vocab-only file), in any weight type, for differential tests against llama.cpp.
/// </summary>
internal static class SyntheticLlama
{
    public sealed record Shape
    {
        public int Dim { get; init; } = 256;
        public int FeedForward { get; init; } = 768;
        public int Heads { get; init; } = 4;
        public int KvHeads { get; init; } = 2;
        public int Layers { get; init; } = 2;
        public int Context { get; init; } = 256;
        public int Experts { get; init; }
        public int ExpertsUsed { get; init; }
        /// <summary>Write expert weights as one tensor per expert (the older Mixtral naming) instead of 3-D tensors.</summary>
        public bool SplitExperts { get; init; }
        /// <summary>Leave out output.weight so the head is tied to token_embd.</summary>
        public bool TiedOutput { get; init; }
        /// <summary>Type of token_embd and output (null: the weights' type). Q8_0 keeps the vocabulary-sized
        /// matrices quick to quantize when the test is about the layers' type.</summary>
        public GgmlType? EmbeddingType { get; init; }
        /// <summary>general.architecture, and the prefix of the hyper-parameters' keys.</summary>
        public string Architecture { get; init; } = "llama";
        /// <summary>attention.key_length / value_length when set (null: Dim / Heads, and no keys written).</summary>
        public int? HeadDim { get; init; }
        /// <summary>Write rope_freqs.weight with Llama 3.1's kind of factors (1 for high frequencies, up to 8 for low).</summary>
        public bool RopeFreqFactors { get; init; }
        /// <summary>Write LongRoPE's rope_factors_short.weight (1 to 1.5) and rope_factors_long.weight (1 to 8), Phi-3 128k's kind.</summary>
        public bool LongRope { get; init; }
        /// <summary>rope.scaling.attn_factor when set.</summary>
        public float? RopeAttnFactor { get; init; }
        /// <summary>rope.scaling.type ("linear", "yarn"; null: none written) with <see cref="RopeScalingFactor"/>.</summary>
        public string? RopeScalingType { get; init; }
        public float RopeScalingFactor { get; init; } = 4f;
        /// <summary>rope.scaling.original_context_length when set.</summary>
        public int? RopeOriginalContext { get; init; }
        /// <summary>attn_q/k/v.bias (Qwen2).</summary>
        public bool QkvBias { get; init; }
        /// <summary>attn_q_norm / attn_k_norm per head (Qwen3).</summary>
        public bool QkNorm { get; init; }
        /// <summary>attn_qkv instead of attn_q/k/v, and ffn_up [dim, 2·ff] (gate rows first) instead of ffn_gate and ffn_up (Phi-3).</summary>
        public bool Fused { get; init; }
        /// <summary>post_attention_norm / post_ffw_norm (Gemma 2 and 3).</summary>
        public bool PostNorms { get; init; }
        /// <summary>attention.sliding_window when set.</summary>
        public int? SlidingWindow { get; init; }
        /// <summary>attn_logit_softcapping and final_logit_softcapping when set.</summary>
        public float? AttnSoftCap { get; init; }
        public float? FinalSoftCap { get; init; }
        public float RopeFreqBase { get; init; } = 10000f;
        /// <summary>Standard deviation of token_embd's values (Gemma's are small: the model scales them by √dim).</summary>
        public float EmbeddingScale { get; init; } = 1f;
        /// <summary>An extra tensor of this name, which no architecture reads.</summary>
        public string? ExtraTensor { get; init; }

        public int HeadSize => HeadDim ?? Dim / Heads;

        /// <summary>File name suffix naming what differs from the default shape.</summary>
        public string Tag => (Architecture == "llama" ? "" : "-" + Architecture) + (Experts > 0 ? "-moe" : "") + (SplitExperts ? "-split" : "")
            + (HeadDim is int h ? $"-hd{h}" : "") + (RopeFreqFactors ? "-freqs" : "") + (LongRope ? "-longrope" : "") + (RopeScalingType is string r ? $"-{r}{RopeScalingFactor}" : "")
            + (QkvBias ? "-bias" : "") + (Fused ? "-fused" : "") + (QkNorm ? "-qknorm" : "") + (ExtraTensor != null ? "-extra" : "")
            + (SlidingWindow is int window ? $"-swa{window}" : "") + (Layers != 2 ? $"-l{Layers}" : "")
            + (ZeroTensor is var (_, zeroType) ? $"-zero{zeroType}" : "");
        /// <summary>One matrix written as zero bytes of another type, for types our quantizer does not write.</summary>
        public (string Name, GgmlType Type)? ZeroTensor { get; init; }
    }

    public static string VocabFile => TestPaths.SharedFile("vocab", "ggml-vocab-llama-spm.gguf");

    public static string Write(string directory, GgmlType type, Shape shape, int seed = 1234)
    {
        string path = Path.Combine(directory, $"synthetic-{type}-{seed}{shape.Tag}.gguf");
        using var vocab = GgufFile.Open(VocabFile);
        int nVocab = vocab.Metadata.GetStringArray("tokenizer.ggml.tokens").Length;
        var w = new GgufWriter();
        string a = shape.Architecture + ".";
        w.Set("general.architecture", shape.Architecture).Set("general.name", "synthetic");
        w.Set(a + "context_length", (uint)(shape.Context))
            .Set(a + "embedding_length", (uint)(shape.Dim))
            .Set(a + "block_count", (uint)(shape.Layers))
            .Set(a + "feed_forward_length", (uint)(shape.FeedForward))
            .Set(a + "attention.head_count", (uint)(shape.Heads))
            .Set(a + "attention.head_count_kv", (uint)(shape.KvHeads))
            .Set(a + "attention.layer_norm_rms_epsilon", 1e-5f)
            .Set(a + "rope.freq_base", shape.RopeFreqBase)
            .Set(a + "rope.dimension_count", (uint)(shape.HeadSize));
        if (shape.HeadDim is int headDim)
            w.Set(a + "attention.key_length", (uint)headDim).Set(a + "attention.value_length", (uint)headDim);
        if (shape.RopeScalingType is string scaling)
            w.Set(a + "rope.scaling.type", scaling).Set(a + "rope.scaling.factor", shape.RopeScalingFactor);
        if (shape.RopeOriginalContext is int original)
            w.Set(a + "rope.scaling.original_context_length", (uint)original);
        if (shape.RopeAttnFactor is float attnFactor) w.Set(a + "rope.scaling.attn_factor", attnFactor);
        if (shape.SlidingWindow is int slidingWindow) w.Set(a + "attention.sliding_window", (uint)slidingWindow);
        if (shape.AttnSoftCap is float attnCap) w.Set(a + "attn_logit_softcapping", attnCap);
        if (shape.FinalSoftCap is float finalCap) w.Set(a + "final_logit_softcapping", finalCap);
        if (shape.Experts > 0)
            w.Set(a + "expert_count", (uint)(shape.Experts)).Set(a + "expert_used_count", (uint)(shape.ExpertsUsed));
        foreach (var (k, v) in vocab.Metadata.Entries)
            if (k.StartsWith("tokenizer.", StringComparison.Ordinal)) w.Set(k, v);

        var rng = new Random(seed);
        int dim = shape.Dim, ff = shape.FeedForward, head = shape.HeadSize, qDim = head * shape.Heads, kvDim = head * shape.KvHeads;
        void Matrix(string name, GgmlType t, int cols, int rows, float scale, int planes = 1)
        {
            long[] dims = planes == 1 ? [cols, rows] : [cols, rows, planes];
            var values = Random(rng, (long)cols * rows * planes, scale);
            if (shape.ZeroTensor is var (zeroName, zeroType) && zeroName == name)
                w.AddTensor(name, zeroType, dims, new byte[GgmlTypeInfo.RowBytes(zeroType, cols) * rows * planes]);
            else
                w.AddTensor(name, t, dims, Quantize(t, values, cols));
        }
        void Norm(string name, int length = 0)
        {
            length = length == 0 ? dim : length;
            w.AddTensor(name, [length], Enumerable.Range(0, length).Select(_ => 0.8f + 0.4f * rng.NextSingle()).ToArray());
        }
        void Bias(string name, int length) => w.AddTensor(name, [length], Random(rng, length, 0.5f));

        var embeddingType = shape.EmbeddingType ?? type;
        Matrix("token_embd.weight", embeddingType, dim, nVocab, shape.EmbeddingScale);
        Norm("output_norm.weight");
        if (shape.RopeFreqFactors)
        {
            // Llama 3.1's pattern: high-frequency pairs untouched, low ones slowed by 8, a smooth band between.
            int pairs = head / 2;
            w.AddTensor("rope_freqs.weight", [pairs], Enumerable.Range(0, pairs)
                .Select(p => p < pairs / 2 ? 1f : p >= 3 * pairs / 4 ? 8f : 1f + 7f * (p - pairs / 2) / (pairs / 4f)).ToArray());
        }
        if (shape.LongRope)
        {
            // Both grow from the high-frequency pairs to the low ones; the long set slows the lowest by 8.
            int pairs = head / 2;
            w.AddTensor("rope_factors_short.weight", [pairs], Enumerable.Range(0, pairs).Select(p => 1f + 0.5f * p / pairs).ToArray());
            w.AddTensor("rope_factors_long.weight", [pairs], Enumerable.Range(0, pairs).Select(p => 1f + 7f * p * p / (pairs * pairs)).ToArray());
        }
        if (shape.ExtraTensor != null) w.AddTensor(shape.ExtraTensor, [dim], new float[dim]);
        if (!shape.TiedOutput) Matrix("output.weight", embeddingType, dim, nVocab, 1.0f / MathF.Sqrt(dim));
        float inScale = 1.0f / MathF.Sqrt(dim), ffScale = 1.0f / MathF.Sqrt(ff);
        for (int l = 0; l < shape.Layers; l++)
        {
            string p = $"blk.{l}.";
            Norm(p + "attn_norm.weight");
            if (shape.Fused)
            {
                var qkv = Random(rng, (long)dim * (qDim + 2 * kvDim), inScale * 2);
                w.AddTensor(p + "attn_qkv.weight", type, [dim, qDim + 2 * kvDim], Quantize(type, qkv, dim));
            }
            else
            {
                Matrix(p + "attn_q.weight", type, dim, qDim, inScale * 2);
                Matrix(p + "attn_k.weight", type, dim, kvDim, inScale * 2);
                Matrix(p + "attn_v.weight", type, dim, kvDim, inScale);
            }
            Matrix(p + "attn_output.weight", type, qDim, dim, 1.0f / MathF.Sqrt(qDim));
            if (shape.QkvBias)
            {
                Bias(p + "attn_q.bias", qDim);
                Bias(p + "attn_k.bias", kvDim);
                Bias(p + "attn_v.bias", kvDim);
            }
            if (shape.QkNorm)
            {
                Norm(p + "attn_q_norm.weight", head);
                Norm(p + "attn_k_norm.weight", head);
            }
            if (shape.PostNorms) Norm(p + "post_attention_norm.weight");
            Norm(p + "ffn_norm.weight");
            if (shape.PostNorms) Norm(p + "post_ffw_norm.weight");
            if (shape.Fused)
            {
                Matrix(p + "ffn_up.weight", type, dim, 2 * ff, inScale);
                Matrix(p + "ffn_down.weight", type, ff, dim, ffScale);
                continue;
            }
            if (shape.Experts == 0)
            {
                Matrix(p + "ffn_gate.weight", type, dim, ff, inScale);
                Matrix(p + "ffn_up.weight", type, dim, ff, inScale);
                Matrix(p + "ffn_down.weight", type, ff, dim, ffScale);
                continue;
            }
            Matrix(p + "ffn_gate_inp.weight", GgmlType.F32, dim, shape.Experts, inScale * 4);
            if (shape.SplitExperts)
            {
                // Same random stream as the 3-D layout: expert e's slice of each stacked tensor.
                var gate = Random(rng, (long)dim * ff * shape.Experts, inScale);
                var up = Random(rng, (long)dim * ff * shape.Experts, inScale);
                var down = Random(rng, (long)ff * dim * shape.Experts, ffScale);
                for (int e = 0; e < shape.Experts; e++)
                {
                    w.AddTensor($"{p}ffn_gate.{e}.weight", type, [dim, ff], Quantize(type, gate.AsSpan(e * dim * ff, dim * ff).ToArray(), dim));
                    w.AddTensor($"{p}ffn_down.{e}.weight", type, [ff, dim], Quantize(type, down.AsSpan(e * dim * ff, dim * ff).ToArray(), ff));
                    w.AddTensor($"{p}ffn_up.{e}.weight", type, [dim, ff], Quantize(type, up.AsSpan(e * dim * ff, dim * ff).ToArray(), dim));
                }
            }
            else
            {
                var gate = Random(rng, (long)dim * ff * shape.Experts, inScale);
                var up = Random(rng, (long)dim * ff * shape.Experts, inScale);
                var down = Random(rng, (long)ff * dim * shape.Experts, ffScale);
                w.AddTensor(p + "ffn_gate_exps.weight", type, [dim, ff, shape.Experts], Quantize(type, gate, dim));
                w.AddTensor(p + "ffn_down_exps.weight", type, [ff, dim, shape.Experts], Quantize(type, down, ff));
                w.AddTensor(p + "ffn_up_exps.weight", type, [dim, ff, shape.Experts], Quantize(type, up, dim));
            }
        }
        w.Write(path);
        return path;
    }

    /// <summary>Uniform values in [-scale·√3, scale·√3] (standard deviation = scale).</summary>
    private static float[] Random(Random rng, long count, float scale)
    {
        var a = new float[count];
        float s = scale * MathF.Sqrt(3);
        for (long i = 0; i < count; i++) a[i] = (rng.NextSingle() * 2 - 1) * s;
        return a;
    }

    /// <summary>
    /// Our quantizer, or llama.cpp's for the types we only read (the grid i-quants), with an importance matrix for
    /// the types it refuses to make without one.
    /// </summary>
    private static byte[] Quantize(GgmlType type, float[] values, int rowLength)
    {
        if (!Quantizer.IsSupported(type)) return Quants.IQuantDifferentialTests.GgmlBlocks(type, values, rowLength);
        long rowBytes = GgmlTypeInfo.RowBytes(type, rowLength);
        int rows = values.Length / rowLength;
        var bytes = new byte[rowBytes * rows];
        for (int r = 0; r < rows; r++)
            Quantizer.QuantizeRow(type, values.AsSpan(r * rowLength, rowLength), bytes.AsSpan((int)(r * rowBytes), (int)rowBytes));
        return bytes;
    }
}

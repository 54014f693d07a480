using QuantLlama.Conversion;
using QuantLlama.Gguf;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.EndToEnd;

/// <summary>A LLaMA shape: TinyLlama-1.1B, Llama-7B, or a small one for trying the harness out.</summary>
public sealed record ModelShape(string Name, int Dim, int FeedForward, int Layers, int Heads, int KvHeads, int Context)
{
    public static readonly ModelShape TinyLlama = new("tinyllama", 2048, 5632, 22, 32, 4, 2048);
    public static readonly ModelShape Llama7B = new("7b", 4096, 11008, 32, 32, 32, 4096);
    public static readonly ModelShape Small = new("small", 512, 1536, 4, 8, 4, 2048);

    public static ModelShape Parse(string name) => name switch
    {
        "tinyllama" => TinyLlama,
        "7b" => Llama7B,
        "small" => Small,
        _ => throw new ArgumentException($"unknown shape '{name}' (tinyllama, 7b, small)"),
    };
}

/// <summary>
/// Writes random-weight GGUFs with the project's own writer and quantizers, once per (shape, type), into a folder:
/// plain types (F16, Q8_0, Q4_0, Q6_K, ...) are quantized directly from the random values, every matrix in that type
/// (as `llama-quantize --pure`); Q4_K_M goes through <see cref="ModelQuantizer"/> from the F16 file (llama-quantize's
/// per-tensor mix). The vocabulary (Llama 2's 32000 SentencePiece tokens) comes from ggml-vocab-llama-spm.gguf.
/// </summary>
public static class SyntheticModels
{
    public static string PathFor(string directory, ModelShape shape, string type) => Path.Combine(directory, $"synthetic-{shape.Name}-{type}.gguf");

    public static string Ensure(string directory, ModelShape shape, string type, string vocabFile, Action<string> log)
    {
        Directory.CreateDirectory(directory);
        string path = PathFor(directory, shape, type);
        if (File.Exists(path)) return path;
        if (GgmlTypeInfo.TryParse(type, out var plain))
        {
            log($"writing {path}");
            WritePlain(path, shape, plain, vocabFile);
        }
        else
        {
            string f16 = Ensure(directory, shape, "F16", vocabFile, log);
            log($"quantizing {f16} -> {path} ({type})");
            ModelQuantizer.Quantize(f16, path, type, _ => { });
        }
        return path;
    }

    private static void WritePlain(string path, ModelShape s, GgmlType type, string vocabFile)
    {
        using var vocab = GgufFile.Open(vocabFile);
        int nVocab = vocab.Metadata.GetStringArray("tokenizer.ggml.tokens").Length;
        var w = new GgufWriter();
        w.Set("general.architecture", "llama").Set("general.name", $"synthetic {s.Name}");
        w.Set("general.file_type", (uint)FileType(type));
        w.Set("llama.context_length", (uint)s.Context)
            .Set("llama.embedding_length", (uint)s.Dim)
            .Set("llama.block_count", (uint)s.Layers)
            .Set("llama.feed_forward_length", (uint)s.FeedForward)
            .Set("llama.attention.head_count", (uint)s.Heads)
            .Set("llama.attention.head_count_kv", (uint)s.KvHeads)
            .Set("llama.attention.layer_norm_rms_epsilon", 1e-5f)
            .Set("llama.rope.freq_base", 10000f)
            .Set("llama.rope.dimension_count", (uint)(s.Dim / s.Heads));
        foreach (var (k, v) in vocab.Metadata.Entries)
            if (k.StartsWith("tokenizer.", StringComparison.Ordinal)) w.Set(k, v);

        int dim = s.Dim, ff = s.FeedForward, kvDim = dim / s.Heads * s.KvHeads;
        int seed = 0;
        void Matrix(string name, int cols, int rows, float scale)
        {
            int tensorSeed = ++seed;
            w.AddTensor(name, type, [cols, rows], stream => WriteRandomRows(stream, type, cols, rows, scale, tensorSeed));
        }
        void Norm(string name)
        {
            var rng = new Random(++seed);
            w.AddTensor(name, [dim], Enumerable.Range(0, dim).Select(_ => 0.8f + 0.4f * rng.NextSingle()).ToArray());
        }
        float inScale = 1f / MathF.Sqrt(dim), ffScale = 1f / MathF.Sqrt(ff);
        Matrix("token_embd.weight", dim, nVocab, 1f);
        Norm("output_norm.weight");
        Matrix("output.weight", dim, nVocab, inScale);
        for (int l = 0; l < s.Layers; l++)
        {
            string p = $"blk.{l}.";
            Norm(p + "attn_norm.weight");
            Matrix(p + "attn_q.weight", dim, dim, inScale * 2);
            Matrix(p + "attn_k.weight", dim, kvDim, inScale * 2);
            Matrix(p + "attn_v.weight", dim, kvDim, inScale);
            Matrix(p + "attn_output.weight", dim, dim, inScale);
            Norm(p + "ffn_norm.weight");
            Matrix(p + "ffn_gate.weight", dim, ff, inScale);
            Matrix(p + "ffn_up.weight", dim, ff, inScale);
            Matrix(p + "ffn_down.weight", ff, dim, ffScale);
        }
        w.Write(path);
    }

    /// <summary>llama.cpp's LLAMA_FTYPE for a file that is all one type (ALL_F32 = 0, MOSTLY_F16 = 1, ...).</summary>
    private static int FileType(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,
        GgmlType.F16 => 1,
        GgmlType.Q4_0 => 2,
        GgmlType.Q4_1 => 3,
        GgmlType.Q8_0 => 7,
        GgmlType.Q5_0 => 8,
        GgmlType.Q5_1 => 9,
        GgmlType.Q2_K => 10,
        GgmlType.Q4_K => 15,
        GgmlType.Q5_K => 17,
        GgmlType.Q6_K => 18,
        _ => 0,
    };

    /// <summary>Uniform values with standard deviation <paramref name="scale"/>, rows quantized in parallel batches.</summary>
    private static void WriteRandomRows(Stream stream, GgmlType type, int cols, int rows, float scale, int seed)
    {
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        int batch = Math.Max(1, Math.Min(rows, (8 << 20) / cols));
        var output = new byte[batch * rowBytes];
        float s = scale * MathF.Sqrt(3);
        for (int r0 = 0; r0 < rows; r0 += batch)
        {
            int count = Math.Min(batch, rows - r0);
            int first = r0;
            Parallel.For(0, count, () => new float[cols], (i, _, values) =>
            {
                // A cheap generator per row, seeded by (tensor, row): fast and reproducible.
                ulong x = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ (ulong)(first + i + 1) * 0xD1B54A32D192ED03UL;
                for (int j = 0; j < cols; j++)
                {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    values[j] = ((x >> 40) * (1f / (1 << 24)) * 2 - 1) * s;
                }
                Quantizer.QuantizeRow(type, values, output.AsSpan((int)(i * rowBytes), (int)rowBytes));
                return values;
            }, _ => { });
            stream.Write(output, 0, (int)(count * rowBytes));
        }
    }
}

using System.Globalization;
using QuantLlama.Gguf;
using QuantLlama.Tensors;

namespace QuantLlama.Models.Llama2c;

/// <summary>What a conversion produced, for the CLI to report.</summary>
public sealed record Llama2cConversion(Llama2cConfig Config, int TensorCount, long OutputBytes);

/// <summary>
/// Converts a llama2.c checkpoint and tokenizer into a <c>llama</c>-architecture GGUF that llama.cpp loads.
/// Weights are copied unchanged (F32): llama2.c rotates adjacent pairs of each head's dimensions, exactly as
/// llama.cpp's <c>llama</c> architecture (normal RoPE) does, so no permutation of wq/wk is needed
/// (unlike Hugging Face checkpoints, whose rotary layout is split halves).
/// </summary>
public static class Llama2cConverter
{
    // llama.cpp's token types.
    public const int TokenTypeNormal = 1, TokenTypeUnknown = 2, TokenTypeControl = 3, TokenTypeByte = 6;
    public const int UnknownId = 0, BosId = 1, EosId = 2;

    /// <summary>llama2.c's run.c: RMS norm epsilon and rotary base.</summary>
    public const float RmsNormEpsilon = 1e-5f, RopeFreqBase = 10000f;

    public static Llama2cConversion Convert(string checkpointPath, string tokenizerPath, string outputPath, string? modelName = null)
    {
        using var checkpoint = Llama2cCheckpoint.Open(checkpointPath);
        var tokenizer = Llama2cTokenizer.Read(tokenizerPath, checkpoint.Config.VocabSize);
        var writer = CreateWriter(checkpoint, tokenizer, modelName ?? Path.GetFileNameWithoutExtension(checkpointPath));
        writer.Write(outputPath);
        return new Llama2cConversion(checkpoint.Config, writer.TensorCount, new FileInfo(outputPath).Length);
    }

    /// <summary>
    /// A writer holding the model's metadata and tensors; the tensors' bytes are read from the checkpoint when the
    /// writer writes, so the checkpoint must stay open until then.
    /// </summary>
    public static GgufWriter CreateWriter(Llama2cCheckpoint checkpoint, Llama2cTokenizer tokenizer, string modelName)
    {
        var c = checkpoint.Config;
        if (tokenizer.Pieces.Count != c.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokenizer.Pieces.Count} tokens, the checkpoint {c.VocabSize}");
        var w = new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("general.name", modelName)
            .Set("general.file_type", 0u) // all F32
            .Set("general.source.format", "llama2.c")
            .Set("llama.vocab_size", (uint)c.VocabSize)
            .Set("llama.context_length", (uint)c.SeqLen)
            .Set("llama.embedding_length", (uint)c.Dim)
            .Set("llama.block_count", (uint)c.Layers)
            .Set("llama.feed_forward_length", (uint)c.HiddenDim)
            .Set("llama.attention.head_count", (uint)c.Heads)
            .Set("llama.attention.head_count_kv", (uint)c.KvHeads)
            .Set("llama.rope.dimension_count", (uint)c.HeadSize)
            .Set("llama.rope.freq_base", RopeFreqBase)
            .Set("llama.attention.layer_norm_rms_epsilon", RmsNormEpsilon);
        AddVocabulary(w, tokenizer);

        void Add(string name, Llama2cCheckpoint.Region region)
            => w.AddTensor(name, GgmlType.F32, region.Dimensions, stream => checkpoint.CopyTo(region, stream));

        Add("token_embd.weight", checkpoint.TokenEmbedding);
        for (int l = 0; l < c.Layers; l++)
        {
            Add($"blk.{l}.attn_norm.weight", checkpoint.AttentionNorm(l));
            Add($"blk.{l}.attn_q.weight", checkpoint.Wq(l));
            Add($"blk.{l}.attn_k.weight", checkpoint.Wk(l));
            Add($"blk.{l}.attn_v.weight", checkpoint.Wv(l));
            Add($"blk.{l}.attn_output.weight", checkpoint.Wo(l));
            Add($"blk.{l}.ffn_norm.weight", checkpoint.FfnNorm(l));
            Add($"blk.{l}.ffn_gate.weight", checkpoint.W1(l));
            Add($"blk.{l}.ffn_down.weight", checkpoint.W2(l));
            Add($"blk.{l}.ffn_up.weight", checkpoint.W3(l));
        }
        Add("output_norm.weight", checkpoint.FinalNorm);
        // A shared classifier is not stored twice: llama.cpp falls back to token_embd when output.weight is absent.
        if (!c.SharedClassifier) Add("output.weight", checkpoint.Classifier);
        return w;
    }

    /// <summary>
    /// The SentencePiece vocabulary as llama.cpp's llama2.c converter writes it: spaces back to '▁', BOS/EOS/UNK
    /// under their usual names, byte tokens typed as bytes.
    /// </summary>
    public static void AddVocabulary(GgufWriter w, Llama2cTokenizer tokenizer)
    {
        int n = tokenizer.Pieces.Count;
        var tokens = new string[n];
        var types = new int[n];
        for (int i = 0; i < n; i++)
        {
            string piece = tokenizer.Pieces[i];
            (tokens[i], types[i]) = i switch
            {
                UnknownId => ("<unk>", TokenTypeUnknown),
                BosId => ("<s>", TokenTypeControl),
                EosId => ("</s>", TokenTypeControl),
                _ when IsByteToken(piece) => (piece, TokenTypeByte),
                _ => (piece.Replace(' ', '\u2581'), TokenTypeNormal),
            };
        }
        w.Set("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.tokens", tokens)
            .Set("tokenizer.ggml.scores", tokenizer.Scores.ToArray())
            .Set("tokenizer.ggml.token_type", types)
            .Set("tokenizer.ggml.unknown_token_id", (uint)UnknownId)
            .Set("tokenizer.ggml.bos_token_id", (uint)BosId)
            .Set("tokenizer.ggml.eos_token_id", (uint)EosId)
            .Set("tokenizer.ggml.add_bos_token", true)
            .Set("tokenizer.ggml.add_eos_token", false);
    }

    /// <summary>"&lt;0x0A&gt;": SentencePiece's byte-fallback pieces.</summary>
    public static bool IsByteToken(string piece)
        => piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
           && byte.TryParse(piece.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out _);
}

using QuantLlama.Gguf;
using QuantLlama.Gguf.Legacy;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Legacy;

public sealed class GgmlLegacyFileTests : LegacyFileTestBase
{
    [Fact]
    public void GgjtV1VocabFile_HyperparametersAnd32000Tokens()
    {
        using var file = GgmlLegacyFile.Open(TestPaths.SharedFile("vocab", "ggml-vocab-llama-ggjt-v1.bin"));
        Assert.Equal(GgmlLegacyFormat.Ggjt, file.Format);
        Assert.Equal(1u, file.Version);
        Assert.Equal("ggjt v1", file.FormatDescription);
        Assert.Equal(new GgmlLegacyHyperparameters(32000, 0, 0, 1, 0, 0, 0), file.Hyperparameters);
        Assert.Empty(file.Tensors);
        Assert.Equal(LegacyVocabularyStyle.SentencePiece, file.VocabularyStyle);

        var md = file.Metadata;
        Assert.Equal("llama", md.GetString("general.architecture"));
        Assert.Equal("llama", md.GetString("tokenizer.ggml.model"));
        var tokens = md.GetStringArray("tokenizer.ggml.tokens");
        Assert.Equal(32000, tokens.Length);
        Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], tokens[..4]);
        Assert.Equal("<0xFF>", tokens[258]);
        Assert.Equal("\u2581\u2581", tokens[259]);
        Assert.Equal(1, md.GetInteger("tokenizer.ggml.bos_token_id"));
        Assert.Equal(2, md.GetInteger("tokenizer.ggml.eos_token_id"));
        Assert.Equal(0, md.GetInteger("tokenizer.ggml.unknown_token_id"));
    }

    [Fact]
    public void GgjtV1VocabFile_EqualsTheLlamaSpmGgufVocabulary()
    {
        using var legacy = GgmlLegacyFile.Open(TestPaths.SharedFile("vocab", "ggml-vocab-llama-ggjt-v1.bin"));
        using var gguf = GgufFile.Open(TestPaths.SharedFile("vocab", "ggml-vocab-llama-spm.gguf"));
        Assert.Equal(gguf.Metadata.GetStringArray("tokenizer.ggml.tokens"), legacy.Metadata.GetStringArray("tokenizer.ggml.tokens"));
        Assert.Equal(gguf.Metadata.GetFloatArray("tokenizer.ggml.scores"), legacy.Metadata.GetFloatArray("tokenizer.ggml.scores"));
        Assert.Equal(gguf.Metadata.GetIntArray("tokenizer.ggml.token_type"), legacy.Metadata.GetIntArray("tokenizer.ggml.token_type"));
    }

    public static TheoryData<GgmlLegacyFormat, uint, VocabSpelling> AllFormats()
    {
        var data = new TheoryData<GgmlLegacyFormat, uint, VocabSpelling>();
        foreach (var spelling in Enum.GetValues<VocabSpelling>())
        {
            data.Add(GgmlLegacyFormat.Ggml, 0, spelling);
            data.Add(GgmlLegacyFormat.Ggmf, 1, spelling);
            data.Add(GgmlLegacyFormat.Ggjt, 1, spelling);
            data.Add(GgmlLegacyFormat.Ggjt, 2, spelling);
            data.Add(GgmlLegacyFormat.Ggjt, 3, spelling);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(AllFormats))]
    public void Stories260KF32_ReadsAsTheGguf(GgmlLegacyFormat format, uint version, VocabSpelling spelling)
    {
        string path = WriteLegacy(Stories(), format, version, spelling);
        using var gguf = GgufFile.Open(Stories());
        using var legacy = GgmlLegacyFile.Open(path);
        Assert.Equal(format, legacy.Format);
        Assert.Equal(spelling == VocabSpelling.ConvertPy ? LegacyVocabularyStyle.ConvertPy : LegacyVocabularyStyle.SentencePiece, legacy.VocabularyStyle);

        var md = legacy.Metadata;
        Assert.Equal(64, md.GetInteger("llama.embedding_length"));
        Assert.Equal(5, md.GetInteger("llama.block_count"));
        Assert.Equal(172, md.GetInteger("llama.feed_forward_length"));
        Assert.Equal(8, md.GetInteger("llama.attention.head_count"));
        Assert.Equal(4, md.GetInteger("llama.attention.head_count_kv")); // from the K projection's shape
        Assert.Equal(8, md.GetInteger("llama.rope.dimension_count"));
        Assert.Equal(4096, md.GetInteger("llama.context_length"));
        Assert.Equal(1e-5, md.GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-9);
        Assert.Equal(Path.GetFileNameWithoutExtension(path), md.GetString("general.name"));

        Assert.Equal(gguf.Metadata.GetStringArray("tokenizer.ggml.tokens"), md.GetStringArray("tokenizer.ggml.tokens"));
        Assert.Equal(gguf.Metadata.GetIntArray("tokenizer.ggml.token_type"), md.GetIntArray("tokenizer.ggml.token_type"));
        var scores = md.GetFloatArray("tokenizer.ggml.scores");
        if (format != GgmlLegacyFormat.Ggml)
        {
            Assert.True(legacy.HasScores);
            Assert.Equal(gguf.Metadata.GetFloatArray("tokenizer.ggml.scores"), scores);
        }
        else
        {
            // No scores stored: synthesized from the order (the Llama 2 vocabulary test checks that this order
            // tokenizes as the real scores do).
            Assert.False(legacy.HasScores);
            var tokens = md.GetStringArray("tokenizer.ggml.tokens");
            var types = md.GetIntArray("tokenizer.ggml.token_type");
            for (int i = 0; i < scores.Length; i++)
                Assert.Equal(LegacyVocabulary.SynthesizedScore(i, tokens[i], types[i]), scores[i]);
            Assert.Equal(-300f, scores[300]);
        }

        Assert.Equal(gguf.Tensors.Select(t => t.Name), legacy.Tensors.Select(t => t.Name));
        foreach (var expected in gguf.Tensors)
        {
            var actual = legacy.GetTensor(expected.Name);
            Assert.Equal(expected.Type, actual.Type);
            Assert.Equal(expected.Dimensions, actual.Dimensions);
            Assert.Equal(expected.ByteSize, actual.ByteSize);
            Assert.True(gguf.GetTensorData(expected).SequenceEqual(legacy.GetTensorData(actual)), expected.Name);
            Assert.Equal(LegacyTensorNames.ToLegacy(expected.Name), legacy.LegacyName(actual));
        }
        if (format == GgmlLegacyFormat.Ggjt) Assert.All(legacy.Tensors, t => Assert.Equal(0, t.Offset % 32));
        else Assert.Contains(legacy.Tensors, t => t.Offset % 4 != 0); // unaligned F32 data, read in place
    }

    [Theory]
    [InlineData("-Q8_0", GgmlType.Q8_0)]
    [InlineData("-Q4_0", GgmlType.Q4_0)]
    public void Stories260KQuantizedGgjtV3_BlocksServedUnchanged(string suffix, GgmlType quantType)
    {
        string path = WriteLegacy(Stories(suffix), GgmlLegacyFormat.Ggjt, 3, VocabSpelling.ConvertPy);
        using var gguf = GgufFile.Open(Stories(suffix));
        using var legacy = (GgmlLegacyFile)ModelFileLoader.Open(path, gqa: 2);
        Assert.Equal(4, legacy.Metadata.GetInteger("llama.attention.head_count_kv"));
        Assert.Contains(legacy.Tensors, t => t.Type == quantType);
        Assert.Contains(legacy.Tensors, t => t.Type == GgmlType.F16); // ffn_down: rows of 172
        foreach (var expected in gguf.Tensors)
        {
            var actual = legacy.GetTensor(expected.Name);
            Assert.Equal(expected.Type, actual.Type);
            Assert.True(gguf.GetTensorData(expected).SequenceEqual(legacy.GetTensorData(actual)), expected.Name);
        }
    }

    [Theory]
    [InlineData(GgmlLegacyFormat.Ggml, 0u, "-Q8_0", "PR #1405")]
    [InlineData(GgmlLegacyFormat.Ggmf, 1u, "-Q4_0", "PR #1405")]
    [InlineData(GgmlLegacyFormat.Ggjt, 1u, "-Q8_0", "PR #1405")]
    [InlineData(GgmlLegacyFormat.Ggjt, 2u, "-Q8_0", "PR #1508")]
    [InlineData(GgmlLegacyFormat.Ggjt, 2u, "-Q4_0", "PR #1508")]
    public void OldQuantizedLayouts_RejectedWithTheVersionAndTheFix(GgmlLegacyFormat format, uint version, string suffix, string pr)
    {
        string path = WriteLegacy(Stories(suffix), format, version, VocabSpelling.SentencePiece);
        var e = Assert.Throws<GgufFormatException>(() => GgmlLegacyFile.Open(path));
        string description = format == GgmlLegacyFormat.Ggml ? "ggml (unversioned)" : $"{format.ToString().ToLowerInvariant()} v{version}";
        Assert.Contains(description, e.Message);
        Assert.Contains(pr, e.Message);
        Assert.Contains("re-convert", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void GgjtV2_Q5BlocksAreAccepted()
    {
        // PR #1508 left Q5_0/Q5_1 alone: ggjt v2 Q5 blocks are GGUF's.
        var w = new LegacyGgmlWriter { Format = GgmlLegacyFormat.Ggjt, Version = 2, EmbeddingLength = 32, HeadCount = 1 };
        w.Vocab.Add(("a"u8.ToArray(), 0));
        var block = Enumerable.Range(0, 22).Select(i => (byte)i).ToArray();
        w.Tensors.Add(("norm.weight", GgmlType.Q5_0, [32], block));
        using var file = Open(w);
        Assert.Equal(GgmlType.Q5_0, file.GetTensor("output_norm.weight").Type);
        Assert.True(file.GetTensorData("output_norm.weight").SequenceEqual(block));
    }

    [Fact]
    public void Gqa_ContradictingTheKProjection_IsAnError()
    {
        string path = WriteLegacy(Stories(), GgmlLegacyFormat.Ggjt, 3, VocabSpelling.SentencePiece);
        using (var ok = GgmlLegacyFile.Open(path, gqa: 2)) Assert.Equal(4, ok.HeadCountKv);
        var e = Assert.Throws<ArgumentException>(() => GgmlLegacyFile.Open(path, gqa: 8));
        Assert.Contains("group-query factor 2", e.Message);
        Assert.Throws<ArgumentException>(() => GgmlLegacyFile.Open(path, gqa: 0));
    }

    [Theory]
    [InlineData(4096u, 256u, 32u, 1, 11008L, 32L)] // Llama 7B
    [InlineData(5120u, 256u, 40u, 1, 13824L, 40L)] // Llama 13B
    [InlineData(8192u, 4096u, 64u, 8, 24576L, 8L)] // Llama-2-70B by the n_mult rule alone (the real file's w1 says 28672)
    public void WithoutWeights_FeedForwardFromNMultAndKvHeadsFromGqa(uint embd, uint mult, uint heads, int gqa, long nFf, long kvHeads)
    {
        var w = new LegacyGgmlWriter { EmbeddingLength = embd, Mult = mult, HeadCount = heads, LayerCount = 1, RotaryDimensions = embd / heads };
        w.Vocab.Add(("x"u8.ToArray(), 0));
        using var file = Open(w, new GgmlLegacyOptions { Gqa = gqa });
        Assert.Equal(nFf, file.Metadata.GetInteger("llama.feed_forward_length"));
        Assert.Equal(kvHeads, file.Metadata.GetInteger("llama.attention.head_count_kv"));
    }

    [Fact]
    public void ConvertPyVocabulary_IsNormalizedToSentencePiecePieces()
    {
        var w = new LegacyGgmlWriter { Format = GgmlLegacyFormat.Ggjt, Version = 3 };
        byte[][] pieces = [" \u2047 "u8.ToArray(), [], [], .. Enumerable.Range(0, 256).Select(b => new[] { (byte)b }), " the"u8.ToArray(), "a b"u8.ToArray(), [], "<0x41>"u8.ToArray(), "é"u8.ToArray()];
        for (int i = 0; i < pieces.Length; i++) w.Vocab.Add((pieces[i], -i));
        using var file = Open(w);
        var tokens = file.Metadata.GetStringArray("tokenizer.ggml.tokens");
        var types = file.Metadata.GetIntArray("tokenizer.ggml.token_type");
        Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], tokens[..4]);
        Assert.Equal([2, 3, 3, 6], types[..4]);
        Assert.Equal("<0x20>", tokens[3 + 32]);
        Assert.Equal("<0xFF>", tokens[258]);
        Assert.All(types[3..259], t => Assert.Equal(LegacyTokenType.Byte, t));
        Assert.Equal(["\u2581the", "a\u2581b", "", "<0x41>", "é"], tokens[259..]);
        Assert.Equal([1, 1, 3, 6, 1], types[259..]);
        Assert.Equal(-260f, file.Metadata.GetFloatArray("tokenizer.ggml.scores")[260]);
        Assert.Equal(LegacyVocabularyStyle.ConvertPy, file.VocabularyStyle);
    }

    [Fact]
    public void TensorNames_MapBothWays()
    {
        (string Legacy, string Gguf)[] pairs =
        [
            ("tok_embeddings.weight", "token_embd.weight"), ("norm.weight", "output_norm.weight"), ("output.weight", "output.weight"),
            ("layers.0.attention.wq.weight", "blk.0.attn_q.weight"), ("layers.12.attention.wk.weight", "blk.12.attn_k.weight"),
            ("layers.3.attention.wv.weight", "blk.3.attn_v.weight"), ("layers.3.attention.wo.weight", "blk.3.attn_output.weight"),
            ("layers.79.attention_norm.weight", "blk.79.attn_norm.weight"), ("layers.1.feed_forward.w1.weight", "blk.1.ffn_gate.weight"),
            ("layers.1.feed_forward.w2.weight", "blk.1.ffn_down.weight"), ("layers.1.feed_forward.w3.weight", "blk.1.ffn_up.weight"),
            ("layers.1.ffn_norm.weight", "blk.1.ffn_norm.weight"), ("rope.freqs", "rope.freqs"), ("layers.x.attention.wq.weight", "layers.x.attention.wq.weight"),
        ];
        foreach (var (legacy, gguf) in pairs)
        {
            Assert.Equal(gguf, LegacyTensorNames.ToGguf(legacy));
            Assert.Equal(legacy, LegacyTensorNames.ToLegacy(gguf));
        }
    }

    [Fact]
    public void Loader_PicksTheFormatByMagic()
    {
        using (var g = ModelFileLoader.Open(Stories())) Assert.IsType<GgufFile>(g);
        using (var l = ModelFileLoader.Open(TestPaths.SharedFile("vocab", "ggml-vocab-llama-ggjt-v1.bin"))) Assert.IsType<GgmlLegacyFile>(l);
        string tiny = Path.Combine(Dir, "tiny.bin");
        File.WriteAllBytes(tiny, [0x6c, 0x6d]);
        Assert.Throws<GgufFormatException>(() => ModelFileLoader.Open(tiny));
        File.WriteAllBytes(tiny, [0x61, 0x6c, 0x67, 0x67, 1, 0, 0, 0]); // "ggla": a LoRA adapter
        Assert.Contains("LoRA adapter", Assert.Throws<GgufFormatException>(() => ModelFileLoader.Open(tiny)).Message);
    }

    private GgmlLegacyFile Open(LegacyGgmlWriter w, GgmlLegacyOptions? options = null)
    {
        string path = Path.Combine(Dir, $"written-{Guid.NewGuid():N}.bin");
        w.Write(path);
        return GgmlLegacyFile.Open(path, options ?? GgmlLegacyOptions.Default);
    }
}

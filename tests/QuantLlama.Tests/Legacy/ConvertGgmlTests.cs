using QuantLlama.Gguf;
using QuantLlama.Gguf.Legacy;
using QuantLlama.Tests.Oracle;
using QuantLlama.Tests.Tokenizers;
using QuantLlama.Tokenizers;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Legacy;

public sealed class ConvertGgmlTests : LegacyFileTestBase
{
    [Fact]
    public void GgjtV1Vocab_TokenizesTheLlamaSpmTestVectors()
    {
        using var legacy = GgmlLegacyFile.Open(TestPaths.SharedFile("vocab", "ggml-vocab-llama-ggjt-v1.bin"));
        var tokenizer = TokenizerFactory.FromMetadata(legacy.Metadata);
        Assert.Equal(1, tokenizer.BosId);
        Assert.Equal(2, tokenizer.EosId);
        var cases = VocabTestCases.Load("llama-spm");
        Assert.True(cases.Count > 30);
        foreach (var (text, ids) in cases)
            Assert.Equal(ids, tokenizer.Encode(text, addSpecial: false, parseSpecial: false));
    }

    [Theory]
    [InlineData(GgmlLegacyFormat.Ggjt, 3u)]
    [InlineData(GgmlLegacyFormat.Ggml, 0u)]
    public void Llama2VocabInConvertPySpelling_TokenizesTheLlamaSpmTestVectors(GgmlLegacyFormat format, uint version)
    {
        // The whole Llama 2 vocabulary as published GGML models spell it (convert.py, 2023); ggml files lose the scores.
        using var gguf = GgufFile.Open(VocabTestCases.VocabPath("llama-spm"));
        var tokens = gguf.Metadata.GetStringArray("tokenizer.ggml.tokens");
        var scores = gguf.Metadata.GetFloatArray("tokenizer.ggml.scores");
        var types = gguf.Metadata.GetIntArray("tokenizer.ggml.token_type");
        var writer = new LegacyGgmlWriter { Format = format, Version = version, EmbeddingLength = 4096, HeadCount = 32, LayerCount = 32, RotaryDimensions = 128 };
        for (int i = 0; i < tokens.Length; i++) writer.Vocab.Add((LegacyGgmlWriter.Spell(tokens[i], types[i], VocabSpelling.ConvertPy), scores[i]));
        string path = Path.Combine(Dir, "llama2-vocab.bin");
        writer.Write(path);

        using var legacy = GgmlLegacyFile.Open(path);
        Assert.Equal(LegacyVocabularyStyle.ConvertPy, legacy.VocabularyStyle);
        Assert.Equal(tokens, legacy.Metadata.GetStringArray("tokenizer.ggml.tokens"));
        Assert.Equal(types, legacy.Metadata.GetIntArray("tokenizer.ggml.token_type"));
        Assert.Equal(11008, legacy.Metadata.GetInteger("llama.feed_forward_length"));
        var tokenizer = TokenizerFactory.FromMetadata(legacy.Metadata);
        foreach (var (text, ids) in VocabTestCases.Load("llama-spm"))
            Assert.Equal(ids, tokenizer.Encode(text, addSpecial: false, parseSpecial: false));
    }

    [Theory]
    [InlineData(VocabSpelling.ConvertPy)]
    [InlineData(VocabSpelling.SentencePiece)]
    public void ConvertPySpelling_TokenizesAsTheGguf(VocabSpelling spelling)
    {
        string path = WriteLegacy(Stories(), GgmlLegacyFormat.Ggjt, 3, spelling);
        using var legacy = GgmlLegacyFile.Open(path);
        using var gguf = GgufFile.Open(Stories());
        var fromLegacy = TokenizerFactory.FromMetadata(legacy.Metadata);
        var fromGguf = TokenizerFactory.FromMetadata(gguf.Metadata);
        foreach (string text in new[] { "Once upon a time", " Lily's mom said, \"Let's go!\"\n\n  two spaces", "héllo wörld 🦙 ¿qué?" })
        {
            var ids = fromGguf.Encode(text, addSpecial: true, parseSpecial: false);
            Assert.Equal(ids, fromLegacy.Encode(text, addSpecial: true, parseSpecial: false));
            Assert.Equal(1, ids[0]);
        }
    }

    [Theory]
    [InlineData("", GgmlLegacyFormat.Ggml, 0u)]
    [InlineData("-Q8_0", GgmlLegacyFormat.Ggjt, 3u)]
    [InlineData("-Q4_0", GgmlLegacyFormat.Ggjt, 3u)]
    public void Converter_WritesTheSameTensorsAndVocabulary(string suffix, GgmlLegacyFormat format, uint version)
    {
        string legacyPath = WriteLegacy(Stories(suffix), format, version, VocabSpelling.ConvertPy);
        string output = Path.Combine(Dir, "converted.gguf");
        using (var legacy = GgmlLegacyFile.Open(legacyPath)) Assert.Equal(legacy.Tensors.Count, GgmlLegacyConverter.ToGguf(legacy, output));

        using var original = GgufFile.Open(Stories(suffix));
        using var converted = GgufFile.Open(output);
        Assert.Equal(original.Tensors.Select(t => t.Name), converted.Tensors.Select(t => t.Name));
        foreach (var expected in original.Tensors)
        {
            var actual = converted.GetTensor(expected.Name);
            Assert.Equal(expected.Type, actual.Type);
            Assert.Equal(expected.Dimensions, actual.Dimensions);
            Assert.True(original.GetTensorData(expected).SequenceEqual(converted.GetTensorData(actual)), expected.Name);
        }
        foreach (string key in new[] { "tokenizer.ggml.tokens", "tokenizer.ggml.token_type" })
            Assert.Equal(original.Metadata.GetArray(key).Items, converted.Metadata.GetArray(key).Items);
        Assert.Equal(4, converted.Metadata.GetInteger("llama.attention.head_count_kv"));
        Assert.Equal(172, converted.Metadata.GetInteger("llama.feed_forward_length"));
        Assert.Contains(format == GgmlLegacyFormat.Ggml ? "ggml (unversioned)" : "ggjt v3", converted.Metadata.GetString("general.description"));
    }

    [Fact]
    public void Cli_ConvertsAndReportsBadInput()
    {
        string legacyPath = WriteLegacy(Stories("-Q8_0"), GgmlLegacyFormat.Ggjt, 3, VocabSpelling.ConvertPy);
        string output = Path.Combine(Dir, "cli.gguf");
        var ok = CliRunner.Run(["convert-ggml", legacyPath, output, "--gqa", "2", "--name", "stories"]);
        Assert.True(ok.ExitCode == 0, ok.StdErr);
        Assert.Contains("ggjt v3", ok.StdErr);
        using (var converted = GgufFile.Open(output))
        {
            Assert.Equal("stories", converted.Metadata.GetString("general.name"));
            Assert.Equal(4096, converted.Metadata.GetInteger("llama.context_length"));
        }

        var wrongGqa = CliRunner.Run(["convert-ggml", legacyPath, output, "--gqa", "4"]);
        Assert.Equal(1, wrongGqa.ExitCode);
        Assert.StartsWith("error: ", wrongGqa.StdErr);
        Assert.Contains("group-query factor 2", wrongGqa.StdErr);

        string truncated = Path.Combine(Dir, "truncated.bin");
        File.WriteAllBytes(truncated, File.ReadAllBytes(legacyPath)[..5000]);
        var bad = CliRunner.Run(["convert-ggml", truncated, Path.Combine(Dir, "never.gguf")]);
        Assert.Equal(1, bad.ExitCode);
        Assert.StartsWith("error: ", bad.StdErr);
        Assert.Contains("truncated", bad.StdErr);
        Assert.DoesNotContain("   at ", bad.StdErr);
        Assert.False(File.Exists(Path.Combine(Dir, "never.gguf")));

        var old = WriteLegacy(Stories("-Q4_0"), GgmlLegacyFormat.Ggjt, 2, VocabSpelling.SentencePiece);
        var rejected = CliRunner.Run(["convert-ggml", old, Path.Combine(Dir, "never.gguf")]);
        Assert.Equal(1, rejected.ExitCode);
        Assert.Contains("PR #1508", rejected.StdErr);
    }

    [Theory]
    [InlineData("", GgmlLegacyFormat.Ggml, 0u)]
    [InlineData("-Q8_0", GgmlLegacyFormat.Ggjt, 3u)]
    public void ConvertedFile_LlamaCppGivesTheSameLogitsAsTheOriginal(string suffix, GgmlLegacyFormat format, uint version)
    {
        string legacyPath = WriteLegacy(Stories(suffix), format, version, VocabSpelling.ConvertPy);
        string output = Path.Combine(Dir, "for-llamacpp.gguf");
        // The stories260K GGUFs record RMS epsilon 1e-5, as this reader assumes for legacy files.
        using (var legacy = GgmlLegacyFile.Open(legacyPath)) GgmlLegacyConverter.ToGguf(legacy, output);

        using var original = LlamaCppModel.Load(Stories(suffix));
        using var converted = LlamaCppModel.Load(output);
        var prompt = original.Tokenize("Once upon a time");
        Assert.Equal(prompt, converted.Tokenize("Once upon a time"));
        var expected = original.LastLogits(prompt);
        var actual = converted.LastLogits(prompt);
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-4f);
        Assert.Equal(original.GenerateGreedy(prompt, 8), converted.GenerateGreedy(prompt, 8));
    }
}

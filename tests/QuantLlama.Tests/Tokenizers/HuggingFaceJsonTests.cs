using QuantLlama.Gguf;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Tokenizers;

public class HuggingFaceJsonTests
{

    /// <summary>Llama 3 as llama.cpp's converter would store it: a GGUF written and read back, then the llama-bpe vectors.</summary>
    [Fact]
    public void Llama3VocabularyWrittenToGgufMatchesLlamaBpeTestVectors()
    {
        var metadata = VocabTestCases.Llama3Metadata;
        Assert.Equal("gpt2", metadata.GetString("tokenizer.ggml.model"));
        Assert.Equal("llama-bpe", metadata.GetString("tokenizer.ggml.pre"));

        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = Path.Combine(dir, "llama3-vocab.gguf");
            var writer = new GgufWriter();
            writer.Set("general.architecture", "llama");
            foreach (var (key, value) in metadata.Entries) writer.Set(key, value);
            writer.Write(path);

            using var file = GgufFile.Open(path);
            var tok = new LlamaTokenizer(file.Metadata);
            Assert.Equal(128256, tok.VocabSize);
            Assert.Equal(128000, tok.BosId);
            Assert.Equal(128001, tok.EosId);
            Assert.True(tok.AddBos);
            Assert.Contains(128009, tok.EndOfGenerationIds); // <|eot_id|>
            Assert.Contains(128001, tok.EndOfGenerationIds);
            AssertVectors(tok, "llama-bpe");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Llama3TokenizerJsonGivesTheSameIdsAsTheGgufVocabulary()
    {
        AssertVectors(VocabTestCases.Llama3FromJson, "llama-bpe");
    }

    [Fact]
    public void Llama3ParsesSpecialTokensOnlyWhenAsked()
    {
        var tok = VocabTestCases.Llama3FromJson;
        Assert.Equal([128000, 128006, 882, 128007, 271, 6151, 128009], tok.Encode("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", true, true));
        var plain = tok.Encode("<|eot_id|>", false, false);
        Assert.DoesNotContain(128009, plain);
        Assert.True(plain.Count > 1);
    }

    [Fact]
    public void Llama2StyleTokenizerJsonIsSentencePieceWithByteFallback()
    {
        var tok = VocabTestCases.Llama2FromJson;
        Assert.Equal(LlamaTokenizer.ModelKind.SentencePiece, tok.Kind);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.True(tok.AddBos);
        Assert.True(tok.AddSpacePrefix);
        // this file (the npm package's "llama2") holds a 32000-token SentencePiece vocabulary: ▁ is 28705
        Assert.Equal([1, 22557, 1526], tok.Encode("Hello world", true, false));
        Assert.Equal([1, 28705, 22557, 28705, 1526], tok.Encode(" Hello  world", true, false));
        Assert.Equal(TokenAttributes.Byte, tok.GetAttributes(tok.TextToId("<0x0A>")));
        Assert.Equal([(byte)'\n'], tok.TokenToBytes(tok.TextToId("<0x0A>")));
    }

    [Fact]
    public void WithoutTokenizerConfigBosAndEosComeFromTheAddedTokens()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = Path.Combine(dir, "tokenizer.json");
            File.Copy(VocabTestCases.TokenizerJsonPath("llama2"), path);
            var metadata = HuggingFaceTokenizerJson.ToMetadata(path);
            Assert.Equal(1, metadata.GetInteger("tokenizer.ggml.bos_token_id"));
            Assert.Equal(2, metadata.GetInteger("tokenizer.ggml.eos_token_id"));
            Assert.False(metadata.ContainsKey("tokenizer.ggml.add_eos_token"));
            Assert.True(metadata.GetBool("tokenizer.ggml.add_bos_token")); // from the TemplateProcessing post-processor
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static void AssertVectors(LlamaTokenizer tok, string vocab)
    {
        var failures = new List<string>();
        foreach (var (text, expected) in VocabTestCases.Load(vocab))
        {
            var ids = tok.Encode(text, addSpecial: false, parseSpecial: false);
            if (!ids.SequenceEqual(expected))
                failures.Add($"'{text.Replace("\n", "\\n")}': expected [{string.Join(' ', expected)}] got [{string.Join(' ', ids)}]");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n" + string.Join("\n", failures));
    }
}

using System.Text;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Tokenizers;

/// <summary>Inputs that break naive tokenizers: a result, never a crash or a hang.</summary>
public class HostileInputTests
{
    public static TheoryData<string> Vocabularies => new() { "llama-spm", "gpt-2" };

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void InvalidUtf8BytesBecomeReplacementCharacters(string name)
    {
        var tok = VocabTestCases.Tokenizer(name);
        byte[] bytes = [0x41, 0xFF, 0xC3, 0x28, 0xE2, 0x82, 0xF0, 0x9F, 0x98, 0x41, 0xED, 0xA0, 0x80];
        var ids = tok.Encode(bytes, addSpecial: false, parseSpecial: false);
        Assert.NotEmpty(ids);
        Assert.Contains("\uFFFD", tok.Decode(ids));
        Assert.Equal(tok.Encode(Encoding.UTF8.GetString(bytes), false, false), ids);
    }

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void LoneSurrogatesAndNulBytesTokenize(string name)
    {
        var tok = VocabTestCases.Tokenizer(name);
        string text = "a\uD800b\uDC00c\0d\0\0" + "\uDBFF";
        var ids = tok.Encode(text, false, false);
        string decoded = tok.Decode(ids).TrimStart(' ');
        Assert.Equal("a\uFFFDb\uFFFDc\0d\0\0\uFFFD", decoded);
    }

    /// <summary>One long "word" (no spaces, one pre-tokenizer piece): merging must stay O(n log n), no recursion.</summary>
    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void HugeSingleWordTokenizes(string name)
    {
        var tok = VocabTestCases.Tokenizer(name);
        var sb = new StringBuilder(200_000);
        while (sb.Length < 200_000) sb.Append("ab");
        string word = sb.ToString();
        var ids = tok.Encode(word, false, false);
        Assert.InRange(ids.Count, 1, word.Length);
        Assert.Equal(word, tok.Decode(ids).TrimStart(' '));
    }

    [Fact]
    public void ManySpecialTokensParseInLinearTime()
    {
        var tok = VocabTestCases.Tokenizer("llama-spm");
        string text = string.Concat(Enumerable.Repeat("<s>x</s>", 20_000));
        var ids = tok.Encode(text, false, parseSpecial: true);
        Assert.Equal(20_000, ids.Count(id => id == tok.BosId));
        Assert.Equal(20_000, ids.Count(id => id == tok.EosId));
    }

    [Fact]
    public void BadMetadataGivesClearErrors()
    {
        var empty = new QuantLlama.Gguf.GgufMetadata("x.gguf", []);
        var e = Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromMetadata(empty));
        Assert.Contains("tokenizer.ggml.model", e.Message);
        var unknown = new QuantLlama.Gguf.GgufMetadata("x.gguf", [new("tokenizer.ggml.model", QuantLlama.Gguf.GgufValue.From("t5"))]);
        Assert.Contains("'t5'", Assert.Throws<NotSupportedException>(() => TokenizerFactory.FromMetadata(unknown)).Message);
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = Path.Combine(dir, "tokenizer.json");
            File.WriteAllText(path, "{ not json");
            Assert.Throws<InvalidDataException>(() => TokenizerFactory.FromHuggingFaceJson(path));
            File.WriteAllText(path, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
            Assert.Throws<NotSupportedException>(() => TokenizerFactory.FromHuggingFaceJson(path));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

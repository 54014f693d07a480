using System.Text;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Tokenizers;

public class DecodingTests
{
    public static TheoryData<string> Vocabularies => new() { "llama-spm", "phi-3", "gpt-2", "deepseek-coder", "starcoder" };

    /// <summary>decode(encode(s)) == s: byte-level BPE is lossless; SentencePiece adds only its dummy-prefix space.</summary>
    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void DecodeOfEncodeGivesTheTextBack(string name)
    {
        var tok = VocabTestCases.Tokenizer(name);
        var texts = VocabTestCases.Load(name).Select(c => c.Text).Concat(RandomText.Generate(seed: 99, count: 200)).ToList();
        foreach (var text in texts)
        {
            var ids = tok.Encode(text, addSpecial: false, parseSpecial: false);
            // SentencePiece: user-defined tokens start a new piece with its own prefix space; skip texts that hold one
            if (tok.Kind == LlamaTokenizer.ModelKind.SentencePiece &&
                ids.Any(id => (tok.GetAttributes(id) & TokenAttributes.UserDefined) != 0)) continue;
            string expected = tok.Kind == LlamaTokenizer.ModelKind.SentencePiece && text.Length > 0 ? " " + text : text;
            Assert.Equal(expected, tok.Decode(ids));
        }
    }

    [Fact]
    public void StreamingPrintsEachSplitCharacterOnceComplete()
    {
        var tok = VocabTestCases.Tokenizer("llama-spm");
        const string text = "Llamas 🦙 and 👨‍👩‍👧 say 漢字テスト and 𝔘𝔫𝔦!";
        var ids = tok.Encode(text, addSpecial: true, parseSpecial: false);
        Assert.Contains(ids, id => (tok.GetAttributes(id) & TokenAttributes.Byte) != 0); // the emoji really are byte tokens

        var decoder = new StreamingDecoder(tok) { SkipLeadingSpace = true };
        var pieces = ids.Select(decoder.Push).ToList();
        pieces.Add(decoder.Flush());
        Assert.Equal(text, string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        // the four byte tokens of 🦙 print nothing, nothing, nothing, then the whole character
        int llamaStart = ids.IndexOf(tok.TextToId("<0xF0>"));
        Assert.True(llamaStart > 0);
        Assert.Equal(["", "", "", "🦙"], pieces.GetRange(llamaStart, 4));
    }

    [Fact]
    public void StreamingByteLevelTokensOfOneCharacterPrintItOnce()
    {
        var tok = VocabTestCases.Tokenizer("gpt-2");
        const string text = "日本語 🦙🦙 ok";
        var ids = tok.Encode(text, false, false);
        var decoder = new StreamingDecoder(tok);
        var pieces = ids.Select(decoder.Push).ToList();
        Assert.Equal(text, string.Concat(pieces) + decoder.Flush());
        Assert.All(pieces, p => Assert.False(p.Contains('\uFFFD')));
        Assert.Equal(2, pieces.Count(p => p.Contains("🦙")) + pieces.Count(p => p.Contains("🦙🦙")));
    }

    [Fact]
    public void ControlTokensDecodeToNothingAndPiecesKeepTheirText()
    {
        var tok = VocabTestCases.Tokenizer("llama-spm");
        Assert.Empty(tok.TokenToBytes(tok.BosId));
        Assert.Empty(tok.TokenToBytes(tok.EosId));
        Assert.Equal("<s>", tok.TokenToPiece(tok.BosId));
        Assert.Equal("▁Hello", tok.TokenToPiece(15043));
        Assert.Equal(" Hello"u8.ToArray(), tok.TokenToBytes(15043));
        Assert.Equal([0x0A], tok.TokenToBytes(tok.TextToId("<0x0A>")));
        var gpt2 = VocabTestCases.Tokenizer("gpt-2");
        Assert.Equal(" Hello"u8.ToArray(), gpt2.TokenToBytes(gpt2.TextToId("ĠHello")));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenToBytes(tok.VocabSize));
    }

    [Fact]
    public void IncompleteSequenceAtTheEndFlushesAsReplacementCharacter()
    {
        var tok = VocabTestCases.Tokenizer("llama-spm");
        var decoder = new StreamingDecoder(tok);
        Assert.Equal("", decoder.Push(tok.TextToId("<0xF0>")));
        Assert.Equal("\uFFFD", decoder.Flush());
    }
}

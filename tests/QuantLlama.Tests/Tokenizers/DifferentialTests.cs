using System.Runtime.InteropServices;
using QuantLlama.Gguf;
using QuantLlama.Tests.Oracle;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Tokenizers;

/// <summary>Our tokenizers against the reference implementations on random text (fixed seeds) and the test vectors.</summary>
public class DifferentialTests
{
    public static TheoryData<string> Vocabularies => new() { "llama-spm", "phi-3", "gpt-2", "deepseek-coder", "starcoder" };

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void SameIdsAsLlamaCppOnRandomText(string name)
    {
        var ours = VocabTestCases.Tokenizer(name);
        using var reference = LlamaCppModel.LoadVocabOnly(VocabTestCases.VocabPath(name));
        var texts = RandomText.Generate(seed: name.Length * 7919, count: 300);
        texts.AddRange(VocabTestCases.Load(name).Select(c => c.Text));
        AssertSame(texts, t => reference.Tokenize(t, false, false), t => ours.Encode(t, false, false));
        // with BOS/EOS and special tokens parsed (chat templates)
        AssertSame(texts.Take(100), t => reference.Tokenize(t, true, true), t => ours.Encode(t, true, true));
    }

    [Fact]
    public void Llama3GgufFromTokenizerJsonSameIdsAsLlamaCpp()
    {
        var metadata = VocabTestCases.Llama3Metadata;
        string dir = TestPaths.NewTempDirectory();
        try
        {
            // llama.cpp wants the architecture's hyper-parameters even for a vocabulary-only load: borrow Llama 2's
            string path = Path.Combine(dir, "llama3-vocab.gguf");
            var writer = new GgufWriter();
            using (var spm = GgufFile.Open(VocabTestCases.VocabPath("llama-spm")))
                foreach (var (key, value) in spm.Metadata.Entries)
                    if (!key.StartsWith("tokenizer.", StringComparison.Ordinal)) writer.Set(key, value);
            writer.Set("llama.vocab_size", 128256u);
            foreach (var (key, value) in metadata.Entries) writer.Set(key, value);
            writer.Write(path);

            var ours = VocabTestCases.Llama3FromJson;
            using var reference = LlamaCppModel.LoadVocabOnly(path);
            var texts = RandomText.Generate(seed: 2024, count: 300);
            AssertSame(texts, t => reference.Tokenize(t, false, false), t => ours.Encode(t, false, false));
            AssertSame(texts.Take(100), t => reference.Tokenize(t, true, true), t => ours.Encode(t, true, true));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    public static TheoryData<string> TokenizerJsons => new() { "llama2", "llama3" };

    /// <summary>tokenizer.json through Hugging Face's own tokenizers library (which adds its BOS and parses added tokens).</summary>
    [Theory]
    [MemberData(nameof(TokenizerJsons))]
    public void TokenizerJsonSameIdsAsHuggingFaceTokenizers(string model)
    {
        Assert.SkipUnless(RuntimeInformation.ProcessArchitecture == Architecture.X64,
            "Tokenizers.DotNet's native library is packaged for linux-x64 only");
        string json = TestPaths.SharedFile("tokenizers", model, "tokenizer.json");
        var ours = model == "llama3" ? VocabTestCases.Llama3FromJson : VocabTestCases.Llama2FromJson;
        using var reference = new global::Tokenizers.DotNet.Tokenizer(json);
        var texts = RandomText.Generate(seed: model.GetHashCode(StringComparison.Ordinal) & 0xFFFF, count: 300);
        texts.AddRange(VocabTestCases.Load("llama-bpe").Select(c => c.Text));
        // HF adds BOS only through its post-processor: Llama 2 style has one, Llama 3's tokenizer.json does not
        bool hfAddsBos = model == "llama2";
        AssertSame(texts, t => reference.Encode(t).Select(i => (int)i).ToArray(), t => ours.Encode(t, hfAddsBos, true));
    }

    private static void AssertSame(IEnumerable<string> texts, Func<string, int[]> reference, Func<string, List<int>> ours)
    {
        var failures = new List<string>();
        int total = 0;
        foreach (var text in texts)
        {
            total++;
            var expected = reference(text);
            var actual = ours(text);
            if (!actual.SequenceEqual(expected))
                failures.Add($"'{Escape(text)}':\n  expected [{string.Join(' ', expected)}]\n  got      [{string.Join(' ', actual)}]");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {total} differ:\n" + string.Join("\n", failures.Take(15)));
    }

    private static string Escape(string s) => string.Concat(s.Select(c => c < 0x20 || c is '\u0085' or '\u00A0' ? $"\\x{(int)c:X2}" : c.ToString()));
}

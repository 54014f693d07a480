using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Tokenizers;

public class GgufVocabTests
{
    public static TheoryData<string> Vocabularies => new() { "llama-spm", "phi-3", "gpt-2", "deepseek-coder", "starcoder" };

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void EveryTestVectorGivesTheExpectedIds(string name)
    {
        var tok = VocabTestCases.Tokenizer(name);
        var failures = new List<string>();
        foreach (var (text, expected) in VocabTestCases.Load(name))
        {
            var ids = tok.Encode(text, addSpecial: false, parseSpecial: false);
            if (!ids.SequenceEqual(expected))
                failures.Add($"'{text.Replace("\n", "\\n")}': expected [{string.Join(' ', expected)}] got [{string.Join(' ', ids)}]");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n" + string.Join("\n", failures));
    }
}

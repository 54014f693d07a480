using System.Text;

namespace QuantLlama.Tests.Tokenizers;

/// <summary>Random strings for differential tests: mixed scripts, whitespace runs, digits, punctuation, emoji.</summary>
public static class RandomText
{
    private static readonly string[] Pieces =
    [
        "the", "Hello", "world", "I'm", "'s", "'LL", "don't", "x", "QuantLlama", "tokenizer", "a", "Z",
        "0", "7", "42", "1234567", "3.14159", "1,000", "2024-11-28",
        ".", ",", "!", "?", "...", "--", "==", "()", "[]", "{}", "<>", "<s>", "</s>", "<|eot_id|>", "@", "#", "$", "%", "^", "&", "*", "_", "\\", "/", "|", "~", "`", "\"", "'", ";", ":",
        " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00A0", "\u3000", "\u2003",
        "中文", "日本語", "한국어", "漢字テスト", "Привет", "мир", "Ελληνικά", "مرحبا", "שלום", "नमस्ते", "ไทย", "Việt", "naïve", "e\u0301", "ß", "Ǆ",
        "🦙", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "✅", "𝔘𝔫𝔦", "𐍈", "\u200B", "\uFEFF", "\u0000", "\u001F", "\u007F", "\u0085",
    ];

    public static List<string> Generate(int seed, int count, int maxPieces = 24)
    {
        var rng = new Random(seed);
        var result = new List<string>(count);
        var sb = new StringBuilder();
        for (int i = 0; i < count; i++)
        {
            sb.Clear();
            int pieces = rng.Next(1, maxPieces + 1);
            for (int p = 0; p < pieces; p++)
            {
                if (rng.Next(8) == 0) sb.Append((char)rng.Next(0x20, 0x7F)); // a random printable ASCII character
                else sb.Append(Pieces[rng.Next(Pieces.Length)]);
            }
            result.Add(sb.ToString());
        }
        return result;
    }
}

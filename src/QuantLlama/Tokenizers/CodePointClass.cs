using System.Globalization;

namespace QuantLlama.Tokenizers;

/// <summary>
/// The character classes llama.cpp's pre-tokenizers test (\p{L}, \p{N}, \p{P}, \p{S}, \p{M}, \s), per code point,
/// from .NET's Unicode tables. Whitespace is Unicode White_Space, as llama.cpp's table has it.
/// </summary>
[Flags]
internal enum CpFlags : ushort
{
    None = 0,
    Undefined = 1,
    Number = 2,
    Letter = 4,
    Separator = 8,
    Mark = 16,
    Punctuation = 32,
    Symbol = 64,
    Control = 128,
    Whitespace = 256,
}

internal static class CodePointClass
{
    private static readonly CpFlags[] Bmp = BuildBmp();

    public static CpFlags Of(int cp)
    {
        if ((uint)cp < 0x10000) return Bmp[cp];
        if (cp > 0x10FFFF) return CpFlags.Undefined;
        return FromCategory(CharUnicodeInfo.GetUnicodeCategory(cp));
    }

    public static bool IsLetter(int cp) => (Of(cp) & CpFlags.Letter) != 0;
    public static bool IsNumber(int cp) => (Of(cp) & CpFlags.Number) != 0;
    public static bool IsWhitespace(int cp) => (Of(cp) & CpFlags.Whitespace) != 0;
    public static bool IsPunctuation(int cp) => (Of(cp) & CpFlags.Punctuation) != 0;

    private static CpFlags[] BuildBmp()
    {
        var table = new CpFlags[0x10000];
        for (int cp = 0; cp < table.Length; cp++)
        {
            var f = FromCategory(CharUnicodeInfo.GetUnicodeCategory(cp));
            if (IsWhiteSpaceProperty(cp)) f |= CpFlags.Whitespace;
            table[cp] = f;
        }
        return table;
    }

    private static bool IsWhiteSpaceProperty(int cp) =>
        cp is >= 0x09 and <= 0x0D or 0x20 or 0x85 or 0xA0 or 0x1680 or >= 0x2000 and <= 0x200A
            or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    private static CpFlags FromCategory(UnicodeCategory c) => c switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CpFlags.Letter,
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CpFlags.Number,
        UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark => CpFlags.Mark,
        UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
            or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation => CpFlags.Punctuation,
        UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
            or UnicodeCategory.OtherSymbol => CpFlags.Symbol,
        UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => CpFlags.Separator,
        UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse => CpFlags.Control,
        _ => CpFlags.Undefined,
    };

    /// <summary>Lower-cases one code point (for llama3's case-insensitive contractions).</summary>
    public static int ToLower(int cp) => cp < 0x10000 ? char.ToLowerInvariant((char)cp) : cp;
}

/// <summary>GPT-2's byte-level alphabet: each byte maps to one printable code point, and back.</summary>
internal static class ByteLevel
{
    public static readonly char[] ByteToChar = Build();
    private static readonly Dictionary<char, byte> CharToByteMap = ByteToChar.Select((c, i) => (c, (byte)i)).ToDictionary(p => p.c, p => p.Item2);

    private static char[] Build()
    {
        var map = new char[256];
        var assigned = new bool[256];
        for (int b = 0x21; b <= 0x7E; b++) { map[b] = (char)b; assigned[b] = true; }
        for (int b = 0xA1; b <= 0xAC; b++) { map[b] = (char)b; assigned[b] = true; }
        for (int b = 0xAE; b <= 0xFF; b++) { map[b] = (char)b; assigned[b] = true; }
        int n = 0;
        for (int b = 0; b < 256; b++)
            if (!assigned[b]) map[b] = (char)(256 + n++);
        return map;
    }

    public static bool TryCharToByte(char c, out byte b) => CharToByteMap.TryGetValue(c, out b);
}

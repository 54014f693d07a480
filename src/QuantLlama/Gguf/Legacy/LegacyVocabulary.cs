using System.Text;

namespace QuantLlama.Gguf.Legacy;

/// <summary>How a legacy file spelled its SentencePiece vocabulary.</summary>
public enum LegacyVocabularyStyle
{
    /// <summary>SentencePiece's own pieces: <c>▁</c> for spaces, byte tokens as <c>&lt;0xNN&gt;</c>.</summary>
    SentencePiece,

    /// <summary>llama.cpp's 2023 convert.py: plain spaces, control tokens as empty strings, byte tokens as the raw
    /// byte, the unknown token as <c>" ⁇ "</c>. Most published GGML models were written this way.</summary>
    ConvertPy,
}

/// <summary>GGUF token types (llama.cpp's llama_token_type numbering).</summary>
public static class LegacyTokenType
{
    public const int Normal = 1;
    public const int Unknown = 2;
    public const int Control = 3;
    public const int UserDefined = 4;
    public const int Unused = 5;
    public const int Byte = 6;
}

/// <summary>
/// Turns a legacy vocabulary (raw piece bytes and, except in unversioned ggml files, scores) into the GGUF
/// tokenizer arrays a SentencePiece tokenizer expects: pieces spelled with <c>▁</c> and <c>&lt;0xNN&gt;</c>, and
/// token types. Both spellings found in the wild give the same result.
/// </summary>
public static class LegacyVocabulary
{
    public const int UnknownId = 0;
    public const int BosId = 1;
    public const int EosId = 2;

    /// <summary>Llama's SentencePiece vocabulary puts byte b at id 3 + b.</summary>
    private const int FirstByteTokenId = 3;

    private const char SpaceMarker = '\u2581'; // ▁

    /// <summary>Normalizes one token. <paramref name="score"/> is null when the file has no scores.</summary>
    public static (string Text, float Score, int Type) Normalize(int id, ReadOnlySpan<byte> piece, float? score)
    {
        string text;
        int type;
        // Ids 0-2 are unk/bos/eos in every llama vocabulary; convert.py wrote them as " ⁇ ", "" and "".
        if (id == UnknownId) (text, type) = ("<unk>", LegacyTokenType.Unknown);
        else if (id == BosId) (text, type) = ("<s>", LegacyTokenType.Control);
        else if (id == EosId) (text, type) = ("</s>", LegacyTokenType.Control);
        else if (piece.IsEmpty) (text, type) = ("", LegacyTokenType.Control);
        else if (TryParseByteToken(piece, out byte b)) (text, type) = (ByteTokenText(b), LegacyTokenType.Byte);
        // A single raw byte in the byte range, or any byte that is not UTF-8 by itself, is a byte token.
        else if (piece.Length == 1 && (id - FirstByteTokenId == piece[0] || piece[0] >= 0x80)) (text, type) = (ByteTokenText(piece[0]), LegacyTokenType.Byte);
        else
        {
            text = Decode(piece).Replace(' ', SpaceMarker);
            type = LegacyTokenType.Normal;
        }
        return (text, score ?? SynthesizedScore(id, text, type), type);
    }

    /// <summary>The score of a token in a file without scores (unversioned ggml).</summary>
    /// <remarks>
    /// Only the order of scores matters to a BPE tokenizer. SentencePiece lists learned pieces by decreasing score,
    /// so -id orders them; Llama's runs of spaces (▁, ▁▁, ...) are the exception, added with score -1e9 so that
    /// they never win a merge. With these two rules the order equals that of Llama's real scores.
    /// </remarks>
    public static float SynthesizedScore(int id, string text, int type)
    {
        if (type != LegacyTokenType.Normal) return 0f;
        return text.AsSpan().ContainsAnyExcept(SpaceMarker) ? -id : WhitespaceScore;
    }

    private const float WhitespaceScore = -1e9f;

    /// <summary>True when the pieces look like convert.py's spelling (empty control tokens, raw bytes, spaces).</summary>
    public static bool LooksLikeConvertPy(int id, ReadOnlySpan<byte> piece)
        => (id is BosId or EosId && piece.IsEmpty)
           || (id == UnknownId && piece.SequenceEqual(" \u2047 "u8))
           || (piece.Length == 1 && id - FirstByteTokenId == piece[0])
           || (id > EosId && piece.IndexOf((byte)' ') >= 0);

    public static string ByteTokenText(byte b) => $"<0x{b:X2}>";

    private static bool TryParseByteToken(ReadOnlySpan<byte> piece, out byte value)
    {
        value = 0;
        if (piece.Length != 6 || piece[0] != '<' || piece[1] != '0' || piece[2] != 'x' || piece[5] != '>') return false;
        int hi = HexDigit(piece[3]), lo = HexDigit(piece[4]);
        if (hi < 0 || lo < 0) return false;
        value = (byte)(hi * 16 + lo);
        return true;
    }

    private static int HexDigit(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        _ => -1,
    };

    // Invalid UTF-8 longer than one byte keeps what decodes (U+FFFD for the rest): a damaged piece must not stop
    // the model from loading. A lone invalid byte was already made a byte token.
    private static string Decode(ReadOnlySpan<byte> piece) => Encoding.UTF8.GetString(piece);
}

using System.Text;

namespace QuantLlama.Tokenizers;

/// <summary>
/// Turns generated ids into text as they come, holding back an incomplete UTF-8 sequence until its last byte
/// arrives, so a character split across byte tokens is printed once, complete.
/// </summary>
public sealed class StreamingDecoder(ITokenizer tokenizer)
{
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private readonly char[] _chars = new char[64];
    private bool _started;

    /// <summary>
    /// Drop one space at the very start of the text (the SentencePiece dummy prefix, as llama2.c and Hugging Face's
    /// decoders do after BOS). Off by default: llama.cpp prints pieces as they are.
    /// </summary>
    public bool SkipLeadingSpace { get; init; }

    /// <summary>The text that became complete with this token (possibly empty).</summary>
    public string Push(int id)
    {
        var bytes = tokenizer.TokenToBytes(id);
        var sb = new StringBuilder();
        int offset = 0;
        if (!_started && bytes.Length > 0)
        {
            _started = true;
            if (SkipLeadingSpace && bytes[0] == (byte)' ') offset = 1;
        }
        while (offset < bytes.Length)
        {
            // 16 bytes (plus up to 3 held back) never decode to more than 19 chars
            int take = Math.Min(16, bytes.Length - offset);
            int n = _utf8.GetChars(bytes, offset, take, _chars, 0, flush: false);
            sb.Append(_chars, 0, n);
            offset += take;
        }
        return sb.ToString();
    }

    /// <summary>Whatever incomplete bytes remain, as replacement characters.</summary>
    public string Flush()
    {
        int n = _utf8.GetChars([], 0, 0, _chars, 0, flush: true);
        return new string(_chars, 0, n);
    }
}

using System.Text;

namespace QuantLlama.Tokenizers;

public static class TokenizerExtensions
{
    /// <summary>The bytes the ids decode to (control tokens contribute nothing), as llama.cpp's token_to_piece gives them.</summary>
    public static byte[] DecodeToBytes(this ITokenizer tokenizer, IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids) bytes.AddRange(tokenizer.TokenToBytes(id));
        return bytes.ToArray();
    }

    /// <summary>The text the ids decode to; invalid UTF-8 (a sequence cut short) becomes U+FFFD.</summary>
    public static string Decode(this ITokenizer tokenizer, IEnumerable<int> ids) => Encoding.UTF8.GetString(tokenizer.DecodeToBytes(ids));
}

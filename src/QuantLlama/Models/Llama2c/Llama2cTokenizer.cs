using System.Buffers.Binary;
using System.Text;
using QuantLlama.Gguf;

namespace QuantLlama.Models.Llama2c;

/// <summary>
/// A llama2.c tokenizer file: int32 max_token_length, then for each token float32 score, int32 length and the
/// piece's UTF-8 bytes. The file does not record the token count; it is the checkpoint's vocab_size.
/// llama2.c's exporter wrote SentencePiece's '▁' as a space and BOS/EOS as "\n&lt;s&gt;\n" / "\n&lt;/s&gt;\n".
/// </summary>
public sealed class Llama2cTokenizer
{
    public int MaxTokenLength { get; }
    /// <summary>The pieces exactly as stored (UTF-8 decoded).</summary>
    public IReadOnlyList<string> Pieces { get; }
    public IReadOnlyList<float> Scores { get; }

    private Llama2cTokenizer(int maxTokenLength, string[] pieces, float[] scores)
    {
        MaxTokenLength = maxTokenLength;
        Pieces = pieces;
        Scores = scores;
    }

    public static Llama2cTokenizer Read(string path, int vocabSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        var info = MappedFile.Resolve(path);
        if (!info.Exists) throw new FileNotFoundException($"{path}: no such file", path);
        // Each token takes at least 8 bytes: a file this short cannot hold the vocabulary, so fail before reading it.
        if (info.Length < 4 + 8L * vocabSize)
            throw new GgufFormatException(path, Math.Min(info.Length, 4), $"the file has {info.Length} bytes, too few for {vocabSize} tokens (at least {4 + 8L * vocabSize}); the file is truncated or does not belong to this checkpoint");
        if (info.Length > 1L << 31) throw new GgufFormatException(path, 0, $"the file has {info.Length} bytes, too large for a llama2.c tokenizer");
        return Parse(File.ReadAllBytes(path), vocabSize, path);
    }

    public static Llama2cTokenizer Parse(byte[] data, int vocabSize, string fileName = "<memory>")
    {
        long position = 0;
        GgufFormatException Error(long at, string problem) => new(fileName, at, problem);
        int ReadInt32(string what)
        {
            if (data.Length - position < 4) throw Error(position, $"the file ends while reading {what}; the file is truncated");
            int v = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan((int)position));
            position += 4;
            return v;
        }
        int maxTokenLength = ReadInt32("max_token_length");
        if (maxTokenLength <= 0) throw Error(0, $"max_token_length {maxTokenLength} is not positive; not a llama2.c tokenizer file?");
        var pieces = new string[vocabSize];
        var scores = new float[vocabSize];
        for (int i = 0; i < vocabSize; i++)
        {
            scores[i] = BitConverter.Int32BitsToSingle(ReadInt32($"the score of token {i}"));
            long at = position;
            int length = ReadInt32($"the length of token {i}");
            if (length < 0 || length > data.Length - position)
                throw Error(at, $"token {i} has length {length}, but {data.Length - position} bytes are left" + (length < 0 ? "" : "; the file is truncated"));
            pieces[i] = Encoding.UTF8.GetString(data, (int)position, length);
            position += length;
        }
        if (position != data.Length)
            throw Error(position, $"{data.Length - position} bytes follow the {vocabSize} tokens; the tokenizer does not match the checkpoint's vocabulary size");
        return new Llama2cTokenizer(maxTokenLength, pieces, scores);
    }
}

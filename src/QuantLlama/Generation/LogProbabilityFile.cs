using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace QuantLlama.Generation;

/// <summary>
/// llama-perplexity's file of a reference model's log-probabilities (written by --kl-divergence-base, read by
/// --kl-divergence), byte for byte, so that either program reads the other's. Little-endian throughout:
/// the 8 bytes "_logits_"; int32 window size (n_ctx), vocabulary size and window count; the int32 tokens of every
/// window (window count x window size, the text's own tokens, no BOS substituted); then for each window, for each
/// scored position (the second half, see <see cref="Perplexity"/>) a row of <see cref="RowLength"/> uint16: two floats
/// (scale, smallest log-probability) and then per vocabulary entry log p quantized as
/// smallest + scale x value over the 16 nats below the top (anything lower is stored as 0).
/// </summary>
public sealed class LogProbabilityFile
{
    private static ReadOnlySpan<byte> Magic => "_logits_"u8;

    /// <summary>The windows' size in tokens.</summary>
    public int WindowSize { get; }
    public int VocabSize { get; }
    public int WindowCount { get; }

    /// <summary>[WindowCount x WindowSize] the text's tokens, window after window.</summary>
    public int[] Tokens { get; }

    public LogProbabilityFile(int windowSize, int vocabSize, int windowCount, int[] tokens)
    {
        if (windowSize < 2) throw new ArgumentOutOfRangeException(nameof(windowSize), "a window needs at least 2 tokens");
        if (tokens.Length != (long)windowSize * windowCount)
            throw new ArgumentException($"{windowCount} windows of {windowSize} need {windowSize * windowCount} tokens, not {tokens.Length}", nameof(tokens));
        (WindowSize, VocabSize, WindowCount, Tokens) = (windowSize, vocabSize, windowCount, tokens);
    }

    /// <summary>uint16 per scored position: 4 for the two floats, the vocabulary rounded up to even.</summary>
    public static int RowLength(int vocabSize) => 2 * ((vocabSize + 1) / 2) + 4;

    /// <summary>Positions scored per window: from the middle to the next-to-last.</summary>
    public static int ScoredPerWindow(int windowSize) => windowSize - 1 - windowSize / 2;

    /// <summary>The uint16 of one window's rows [ScoredPerWindow x RowLength].</summary>
    public int WindowLength => ScoredPerWindow(WindowSize) * RowLength(VocabSize);

    public void WriteHeader(Stream stream)
    {
        var header = new byte[Magic.Length + 12];
        Magic.CopyTo(header);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), WindowSize);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(12), VocabSize);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(16), WindowCount);
        stream.Write(header);
        stream.Write(MemoryMarshal.AsBytes(Tokens.AsSpan()));
    }

    /// <summary>Reads the header and tokens, leaving the stream at the first window's rows.</summary>
    public static LogProbabilityFile ReadHeader(Stream stream, string name)
    {
        Span<byte> header = stackalloc byte[20];
        if (stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length || !header[..8].SequenceEqual(Magic))
            throw new InvalidDataException($"{name} does not look like a file containing log-probabilities");
        int windowSize = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        int vocab = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        int windows = BinaryPrimitives.ReadInt32LittleEndian(header[16..]);
        if (windowSize < 2 || vocab < 1 || windows < 1 || (long)windowSize * windows > int.MaxValue / sizeof(int))
            throw new InvalidDataException($"{name}: a window size of {windowSize}, {vocab} vocabulary entries and {windows} windows cannot be right");
        var tokens = new int[windowSize * windows];
        var bytes = MemoryMarshal.AsBytes(tokens.AsSpan());
        if (stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false) < bytes.Length)
            throw new InvalidDataException($"{name}: failed reading the evaluation tokens");
        return new LogProbabilityFile(windowSize, vocab, windows, tokens);
    }

    /// <summary>Reads one window's rows into <paramref name="rows"/> [ScoredPerWindow x RowLength]; false at a short file.</summary>
    public bool ReadWindow(Stream stream, Span<ushort> rows)
    {
        var bytes = MemoryMarshal.AsBytes(rows[..WindowLength]);
        if (stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false) < bytes.Length) return false;
        return true;
    }

    /// <summary>Writes rows of uint16 (one window's, see <see cref="EncodeRow"/>).</summary>
    public static void WriteRows(Stream stream, ReadOnlySpan<ushort> rows) => stream.Write(MemoryMarshal.AsBytes(rows));

    /// <summary>
    /// Quantizes one position's log-softmax into <paramref name="row"/> (<see cref="RowLength"/> uint16) with
    /// llama-perplexity's float arithmetic, and returns the negative log-likelihood of <paramref name="token"/>.
    /// </summary>
    public static double EncodeRow(ReadOnlySpan<float> logits, int token, Span<ushort> row)
    {
        float max = logits[0], min = logits[0];
        for (int i = 1; i < logits.Length; i++)
        {
            max = Math.Max(max, logits[i]);
            min = Math.Min(min, logits[i]);
        }
        min = Math.Max(min, max - 16);
        double sumExp = 0;
        for (int i = 0; i < logits.Length; i++) sumExp += MathF.Exp(logits[i] - max);
        float logSumExp = (float)Math.Log(sumExp);
        float minLogProb = min - max - logSumExp;
        float scale = (max - min) / 65535f;
        var head = MemoryMarshal.Cast<ushort, float>(row[..4]);
        head[0] = scale;
        head[1] = minLogProb;
        var values = row[4..];
        values.Clear();
        if (scale != 0)
        {
            float inverseScale = 1 / scale;
            for (int i = 0; i < logits.Length; i++)
                if (logits[i] > min) values[i] = (ushort)MathF.Round(inverseScale * (logits[i] - min), MidpointRounding.ToEven);
        }
        return max + logSumExp - logits[token];
    }

    /// <summary>The stored log p of vocabulary entry <paramref name="index"/> in a row.</summary>
    public static float LogProbability(ReadOnlySpan<ushort> row, int index)
    {
        var head = MemoryMarshal.Cast<ushort, float>(row[..4]);
        return head[0] * row[4 + index] + head[1];
    }
}

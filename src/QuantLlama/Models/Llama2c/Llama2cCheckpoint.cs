using QuantLlama.Gguf;

namespace QuantLlama.Models.Llama2c;

/// <summary>The seven int32 header fields of a llama2.c checkpoint, validated.</summary>
public sealed record Llama2cConfig(int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int VocabSize, int SeqLen, bool SharedClassifier)
{
    public int HeadSize => Dim / Heads;
    public int KvDim => HeadSize * KvHeads;
}

/// <summary>
/// A llama2.c checkpoint (the legacy "version 0" export of run.c), memory-mapped: a header of seven int32
/// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier
/// is stored separately), then float32 arrays in run.c's order, each stacked over the layers. Weight matrices are
/// row-major [out][in], which is ggml's layout with dimensions [in, out].
/// </summary>
public sealed unsafe class Llama2cCheckpoint : IDisposable
{
    public const int HeaderBytes = 7 * sizeof(int);
    /// <summary>"ak42": the magic of llama2.c's newer export versions (1: float32, 2: int8), which have a 256-byte header.</summary>
    public const uint NewFormatMagic = 0x616b3432;

    private readonly MappedFile _file;
    private byte* _base;

    public string FileName { get; }
    public long FileSize { get; }
    public Llama2cConfig Config { get; }

    // Byte offsets of run.c's stacked arrays.
    private readonly long _tokenEmbedding, _rmsAtt, _wq, _wk, _wv, _wo, _rmsFfn, _w1, _w2, _w3, _rmsFinal, _wcls;

    private Llama2cCheckpoint(string path, MappedFile file)
    {
        FileName = path;
        FileSize = file.Length;
        _file = file;
        _base = file.Pointer;
        long size = file.Length;
        byte* data = file.Pointer;
        if (size < HeaderBytes) throw Error(size, $"the file has {size} bytes, less than the {HeaderBytes}-byte llama2.c header; the file is truncated or not a llama2.c checkpoint");
        var h = new ReadOnlySpan<int>(data, 7);
        if ((uint)h[0] == NewFormatMagic)
            throw Error(0, $"this is a llama2.c version {h[1]} export (magic \"ak42\"); only the legacy version 0 format "
                + "(export.py --version 0, the format of run.c and the tinyllamas .bin files) is supported");
        string[] names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
        for (int i = 0; i < 7; i++)
            if (h[i] == 0 || (h[i] < 0 && i != 5) || h[i] == int.MinValue)
                throw Error(i * 4, $"header field {names[i]} = {h[i]} is not a positive number; not a llama2.c checkpoint?");
        var c = new Llama2cConfig(h[0], h[1], h[2], h[3], h[4], Math.Abs(h[5]), h[6], SharedClassifier: h[5] > 0);
        if (c.Dim % c.Heads != 0) throw Error(0, $"dim {c.Dim} is not a multiple of n_heads {c.Heads}");
        if (c.HeadSize % 2 != 0) throw Error(12, $"the head size {c.HeadSize} (dim / n_heads) is odd; rotary embeddings need pairs");
        if (c.KvHeads > c.Heads || c.Heads % c.KvHeads != 0)
            throw Error(16, $"n_kv_heads {c.KvHeads} does not divide n_heads {c.Heads}");
        Config = c;

        // Sizes in floats; the header fields are int32, so products of two fit a long and the sums are checked.
        long dim = c.Dim, hidden = c.HiddenDim, layers = c.Layers, kvDim = c.KvDim, vocab = c.VocabSize;
        long offset = HeaderBytes;
        long Next(long floats)
        {
            long at = offset;
            offset = checked(offset + checked(floats * sizeof(float)));
            return at;
        }
        try
        {
            _tokenEmbedding = Next(vocab * dim);
            _rmsAtt = Next(layers * dim);
            _wq = Next(checked(layers * dim * dim));
            _wk = Next(checked(layers * dim * kvDim));
            _wv = Next(checked(layers * dim * kvDim));
            _wo = Next(checked(layers * dim * dim));
            _rmsFfn = Next(layers * dim);
            _w1 = Next(checked(layers * dim * hidden));
            _w2 = Next(checked(layers * hidden * dim));
            _w3 = Next(checked(layers * dim * hidden));
            _rmsFinal = Next(dim);
            Next((long)c.SeqLen * c.HeadSize); // the old freq_cis_real and freq_cis_imag tables, unused
            _wcls = c.SharedClassifier ? _tokenEmbedding : Next(vocab * dim);
        }
        catch (OverflowException)
        {
            throw Error(0, "the header's sizes overflow; not a llama2.c checkpoint");
        }
        if (offset != size)
            throw Error(Math.Min(offset, size), $"the header (dim {c.Dim}, hidden {c.HiddenDim}, {c.Layers} layers, vocab {c.VocabSize}, "
                + $"{(c.SharedClassifier ? "shared" : "separate")} classifier) implies {offset} bytes, the file has {size}"
                + (offset > size ? "; the file is truncated" : ""));
    }

    public static Llama2cCheckpoint Open(string path) => MappedFile.Open(path, file => new Llama2cCheckpoint(path, file));

    private GgufFormatException Error(long offset, string problem) => new(FileName, offset, problem);

    /// <summary>A named float32 array inside the file: its byte offset and its ggml dimensions ([0] = row length).</summary>
    public readonly record struct Region(long Offset, long[] Dimensions)
    {
        public long Bytes => Dimensions.Aggregate(1L, (a, b) => a * b) * sizeof(float);
    }

    private Region Layer(long baseOffset, int layer, long cols, long rows)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, Config.Layers);
        long bytes = cols * rows * sizeof(float);
        return new Region(baseOffset + layer * bytes, rows == 1 ? [cols] : [cols, rows]);
    }

    public Region TokenEmbedding => new(_tokenEmbedding, [Config.Dim, Config.VocabSize]);
    public Region AttentionNorm(int layer) => Layer(_rmsAtt, layer, Config.Dim, 1);
    public Region Wq(int layer) => Layer(_wq, layer, Config.Dim, Config.Dim);
    public Region Wk(int layer) => Layer(_wk, layer, Config.Dim, Config.KvDim);
    public Region Wv(int layer) => Layer(_wv, layer, Config.Dim, Config.KvDim);
    public Region Wo(int layer) => Layer(_wo, layer, Config.Dim, Config.Dim);
    public Region FfnNorm(int layer) => Layer(_rmsFfn, layer, Config.Dim, 1);
    /// <summary>The gate projection (llama2.c's w1).</summary>
    public Region W1(int layer) => Layer(_w1, layer, Config.Dim, Config.HiddenDim);
    /// <summary>The down projection (llama2.c's w2).</summary>
    public Region W2(int layer) => Layer(_w2, layer, Config.HiddenDim, Config.Dim);
    /// <summary>The up projection (llama2.c's w3).</summary>
    public Region W3(int layer) => Layer(_w3, layer, Config.Dim, Config.HiddenDim);
    public Region FinalNorm => new(_rmsFinal, [Config.Dim]);
    /// <summary>The classifier; the token embedding itself when shared.</summary>
    public Region Classifier => new(_wcls, [Config.Dim, Config.VocabSize]);

    /// <summary>A region's bytes, in place in the mapping.</summary>
    public ReadOnlySpan<byte> Bytes(Region region)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (region.Offset < 0 || region.Bytes > FileSize - region.Offset) throw new ArgumentOutOfRangeException(nameof(region));
        if (region.Bytes > int.MaxValue) throw new NotSupportedException($"a {region.Bytes}-byte array; use CopyTo");
        return new ReadOnlySpan<byte>(_base + region.Offset, (int)region.Bytes);
    }

    /// <summary>Copies a region of any size to a stream in chunks.</summary>
    public void CopyTo(Region region, Stream destination)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (region.Offset < 0 || region.Bytes > FileSize - region.Offset) throw new ArgumentOutOfRangeException(nameof(region));
        const int Chunk = 1 << 24;
        for (long done = 0; done < region.Bytes; done += Chunk)
            destination.Write(new ReadOnlySpan<byte>(_base + region.Offset + done, (int)Math.Min(Chunk, region.Bytes - done)));
    }

    public void Dispose()
    {
        _base = null;
        _file.Dispose();
    }
}

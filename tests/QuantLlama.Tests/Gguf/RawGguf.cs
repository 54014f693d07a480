using System.Text;

namespace QuantLlama.Tests.Gguf;

/// <summary>
/// Builds GGUF images byte by byte, so tests can write exactly the damage they want (wrong counts, bad types,
/// impossible offsets) where the real writer would refuse. <see cref="Mark"/> records offsets to assert on.
/// </summary>
public sealed class RawGguf
{
    private readonly MemoryStream _stream = new();
    private readonly BinaryWriter _w;
    private readonly Dictionary<string, long> _marks = [];

    /// <summary>Counts and lengths are 32-bit in version 1, 64-bit after.</summary>
    public bool Wide { get; }

    public RawGguf(uint version = 3, uint magic = 0x46554747, bool header = true)
    {
        _w = new BinaryWriter(_stream, Encoding.UTF8, leaveOpen: true);
        Wide = version >= 2;
        if (header)
        {
            U32(magic);
            U32(version);
        }
    }

    public long Position => _stream.Position;
    public RawGguf Mark(string name) { _marks[name] = _stream.Position; return this; }
    public long At(string name) => _marks[name];

    public RawGguf U8(byte v) { _w.Write(v); return this; }
    public RawGguf U32(uint v) { _w.Write(v); return this; }
    public RawGguf U64(ulong v) { _w.Write(v); return this; }
    public RawGguf Count(ulong n) { if (Wide) _w.Write(n); else _w.Write(checked((uint)n)); return this; }
    public RawGguf Bytes(ReadOnlySpan<byte> b) { _w.Write(b); return this; }
    public RawGguf Zeros(long n) { for (long i = 0; i < n; i++) _w.Write((byte)0); return this; }

    public RawGguf Str(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        Count((ulong)b.Length);
        _w.Write(b);
        return this;
    }

    /// <summary>The two counts after the version.</summary>
    public RawGguf Counts(ulong tensors, ulong metadata) => Count(tensors).Count(metadata);

    /// <summary>A metadata entry whose value is a uint32.</summary>
    public RawGguf KvU32(string key, uint value) => Str(key).U32(4).U32(value);

    public RawGguf KvString(string key, string value) => Str(key).U32(8).Str(value);

    /// <summary>A tensor info: name, dims, ggml type, offset.</summary>
    public RawGguf Tensor(string name, ulong[] dims, uint type, ulong offset)
    {
        Str(name).U32((uint)dims.Length);
        foreach (var d in dims) Count(d);
        return U32(type).U64(offset);
    }

    /// <summary>Zero padding up to the next multiple of <paramref name="alignment"/>.</summary>
    public RawGguf Align(int alignment = 32)
    {
        while (_stream.Position % alignment != 0) _w.Write((byte)0);
        return this;
    }

    public byte[] ToArray()
    {
        _w.Flush();
        return _stream.ToArray();
    }
}

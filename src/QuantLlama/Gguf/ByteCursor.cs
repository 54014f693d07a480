using System.Runtime.CompilerServices;

namespace QuantLlama.Gguf;

/// <summary>
/// A bounds-checked reading position in a file image: reading past the end is a <see cref="GgufFormatException"/>
/// that names the file, the offset and what was being read. Shared by the GGUF and legacy ggml parsers.
/// </summary>
internal unsafe class ByteCursor
{
    private readonly byte* _data;
    private readonly string _fileName;

    public long Position;

    public ByteCursor(byte* data, long length, string fileName)
    {
        _data = data;
        Length = length;
        _fileName = fileName;
    }

    /// <summary>The first byte of the image.</summary>
    protected byte* Data => _data;
    public long Length { get; }
    public long Remaining => Length - Position;

    public GgufFormatException Error(long offset, string problem) => new(_fileName, offset, problem);

    /// <summary>Returns a pointer to the next <paramref name="bytes"/> bytes and moves past them.</summary>
    public byte* Take(long bytes, string what)
    {
        if (bytes > Remaining)
            throw Error(Position, $"the file ends while reading {what} ({bytes} bytes needed, {Remaining} left); the file is truncated");
        byte* p = _data + Position;
        Position += bytes;
        return p;
    }

    public void SkipTo(long position, string what) => Take(position - Position, what);

    // Unaligned reads: fields follow variable-length strings and names.
    public uint U32(string what) => Unsafe.ReadUnaligned<uint>(Take(4, what));
    public ulong U64(string what) => Unsafe.ReadUnaligned<ulong>(Take(8, what));
    public float F32(string what) => Unsafe.ReadUnaligned<float>(Take(4, what));
}

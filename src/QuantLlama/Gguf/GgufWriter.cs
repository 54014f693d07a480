using System.Text;
using QuantLlama.Tensors;

namespace QuantLlama.Gguf;

/// <summary>
/// Writes GGUF files (version 3 by default; 1 and 2 for tests) that llama.cpp loads: metadata in insertion order,
/// tensor infos, then each tensor's bytes aligned to <c>general.alignment</c>. The file is written under a
/// temporary name and renamed at the end, so a failed write never leaves a half file under the final name.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<KeyValuePair<string, GgufValue>> _metadata = [];
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    public uint Version { get; }
    public int Alignment { get; private set; } = GgufFile.DefaultAlignment;
    public int TensorCount => _tensors.Count;

    private sealed record PendingTensor(string Name, long[] Dimensions, GgmlType Type, long ByteSize, Action<Stream> WriteData);

    public GgufWriter(uint version = 3)
    {
        if (version is < 1 or > 3) throw new ArgumentOutOfRangeException(nameof(version), "GGUF versions are 1, 2 and 3");
        Version = version;
    }

    /// <summary>Adds or replaces a metadata entry (replacing keeps its original position).</summary>
    public GgufWriter Set(string key, GgufValue value)
    {
        if (key == "general.alignment")
        {
            if (!value.IsInteger) throw new ArgumentException("general.alignment must be an integer");
            long a = value.Value is ulong u ? (long)Math.Min(u, 1UL << 32) : Convert.ToInt64(value.Value);
            if (a <= 0 || a > 1 << 20 || (a & (a - 1)) != 0) throw new ArgumentException("general.alignment must be a power of two up to 2^20");
            Alignment = (int)a;
            // llama.cpp reads this key only as a uint32 (and aborts on any other type).
            value = GgufValue.From((uint)a);
        }
        int i = _metadata.FindIndex(kv => kv.Key == key);
        if (i >= 0) _metadata[i] = new(key, value);
        else _metadata.Add(new(key, value));
        return this;
    }

    public GgufWriter Set(string key, string value) => Set(key, GgufValue.From(value));
    public GgufWriter Set(string key, uint value) => Set(key, GgufValue.From(value));
    public GgufWriter Set(string key, int value) => Set(key, GgufValue.From(value));
    public GgufWriter Set(string key, float value) => Set(key, GgufValue.From(value));
    public GgufWriter Set(string key, bool value) => Set(key, GgufValue.From(value));
    public GgufWriter Set(string key, string[] value) => Set(key, GgufValue.FromArray(value));
    public GgufWriter Set(string key, float[] value) => Set(key, GgufValue.FromArray(value));
    public GgufWriter Set(string key, int[] value) => Set(key, GgufValue.FromArray(value));

    /// <summary>Copies every metadata entry of an open file (e.g. when re-quantizing it).</summary>
    public GgufWriter CopyMetadataFrom(IModelFile source)
    {
        foreach (var kv in source.Metadata.Entries) Set(kv.Key, kv.Value);
        return this;
    }

    /// <summary>Adds a tensor whose bytes are already in memory.</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dimensions, ReadOnlyMemory<byte> data)
    {
        long expected = ExpectedBytes(name, type, dimensions);
        if (data.Length != expected)
            throw new ArgumentException($"tensor '{name}' has {data.Length} bytes, its shape and type need {expected}");
        return Add(name, dimensions, type, expected, s => s.Write(data.Span));
    }

    /// <summary>Adds F32 data.</summary>
    public GgufWriter AddTensor(string name, long[] dimensions, float[] data)
        => AddTensor(name, GgmlType.F32, dimensions, System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()).ToArray());

    /// <summary>Adds a tensor whose bytes are produced while the file is written (large models, streaming quantization).</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dimensions, Action<Stream> writeData)
        => Add(name, dimensions, type, ExpectedBytes(name, type, dimensions), writeData);

    private GgufWriter Add(string name, long[] dimensions, GgmlType type, long bytes, Action<Stream> writeData)
    {
        if (!_tensorNames.Add(name)) throw new ArgumentException($"tensor '{name}' added twice");
        _tensors.Add(new PendingTensor(name, (long[])dimensions.Clone(), type, bytes, writeData));
        return this;
    }

    private static long ExpectedBytes(string name, GgmlType type, long[] dimensions)
    {
        if (dimensions.Length is 0 or > 4) throw new ArgumentException($"tensor '{name}' needs 1 to 4 dimensions");
        long n = 1;
        foreach (var d in dimensions)
        {
            if (d <= 0) throw new ArgumentException($"tensor '{name}' has a non-positive dimension");
            n = checked(n * d);
        }
        if (dimensions[0] % GgmlTypeInfo.BlockSize(type) != 0)
            throw new ArgumentException($"tensor '{name}' rows of {dimensions[0]} do not divide into {type} blocks");
        return GgmlTypeInfo.RowBytes(type, n);
    }

    /// <summary>Writes the file: to PATH.tmp first, then renamed over PATH.</summary>
    public void Write(string path)
    {
        string temp = path + ".tmp";
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                WriteTo(stream);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Writes the whole file to a stream.</summary>
    public void WriteTo(Stream stream)
    {
        var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(Version);
        WriteCount(w, _tensors.Count);
        WriteCount(w, _metadata.Count);
        foreach (var (key, value) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)value.Type);
            WriteValue(w, value.Type, value.Value);
        }

        long offset = 0;
        var offsets = new long[_tensors.Count];
        for (int i = 0; i < _tensors.Count; i++)
        {
            offsets[i] = offset;
            offset = GgufFile.AlignUp(offset + _tensors[i].ByteSize, Alignment);
        }
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            WriteString(w, t.Name);
            w.Write((uint)t.Dimensions.Length);
            foreach (var d in t.Dimensions) WriteCount(w, d);
            w.Write((uint)t.Type);
            w.Write((ulong)offsets[i]);
        }
        w.Flush();

        long headerEnd = stream.Position;
        WritePadding(stream, GgufFile.AlignUp(headerEnd, Alignment) - headerEnd);
        long dataStart = stream.Position;
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            WritePadding(stream, dataStart + offsets[i] - stream.Position);
            long before = stream.Position;
            t.WriteData(stream);
            long written = stream.Position - before;
            if (written != t.ByteSize)
                throw new InvalidOperationException($"tensor '{t.Name}' wrote {written} bytes, expected {t.ByteSize}");
        }
        // Pad the last tensor too, as ggml does, so the data section is a multiple of the alignment.
        WritePadding(stream, GgufFile.AlignUp(stream.Position - dataStart, Alignment) - (stream.Position - dataStart));
        stream.Flush();
    }

    private static void WritePadding(Stream stream, long bytes)
    {
        for (long i = 0; i < bytes; i++) stream.WriteByte(0);
    }

    private void WriteCount(BinaryWriter w, long n)
    {
        if (Version == 1) w.Write(checked((uint)n));
        else w.Write((ulong)n);
    }

    private void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        WriteCount(w, bytes.Length);
        w.Write(bytes);
    }

    private void WriteValue(BinaryWriter w, GgufValueType type, object value)
    {
        switch (value)
        {
            case byte v: w.Write(v); break;
            case sbyte v: w.Write(v); break;
            case ushort v: w.Write(v); break;
            case short v: w.Write(v); break;
            case uint v: w.Write(v); break;
            case int v: w.Write(v); break;
            case float v: w.Write(v); break;
            case bool v: w.Write((byte)(v ? 1 : 0)); break;
            case string v: WriteString(w, v); break;
            case ulong v: w.Write(v); break;
            case long v: w.Write(v); break;
            case double v: w.Write(v); break;
            case GgufArray a:
                w.Write((uint)a.ElementType);
                WriteCount(w, a.Count);
                foreach (var item in a.Items) WriteValue(w, a.ElementType, item!);
                break;
            default: throw new ArgumentException($"cannot write a {type} value of {value.GetType().Name}");
        }
    }
}

using System.Runtime.InteropServices;
using System.Text;
using QuantLlama.Tensors;

namespace QuantLlama.Gguf;

/// <summary>
/// A GGUF file (versions 1 to 3), memory-mapped: metadata and tensor infos are parsed at open,
/// tensor bytes stay in the page cache and are handed out as spans or pointers into the mapping.
/// Every count, length and offset read from the file is checked against the file's size before use,
/// so a truncated or hostile file gives a <see cref="GgufFormatException"/>, never a crash or a huge allocation.
/// </summary>
public sealed unsafe class GgufFile : IModelFile
{
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian uint32
    public const int DefaultAlignment = 32;
    private const int MaxDimensions = 4;
    private const int MaxArrayNesting = 8;
    private const long MaxAlignment = 1 << 20;
    /// <summary>Longest string or array .NET can hold (Array.MaxLength); longer ones are rejected, not truncated.</summary>
    private const long MaxItems = 0x7FFFFFC7;

    private readonly MappedFile? _file;
    private byte* _base;
    private readonly long _length;
    private readonly Dictionary<string, GgufValue> _metadata;
    private readonly GgufMetadata _metadataView;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName;

    public string FileName { get; }
    public uint Version { get; }
    public string FormatDescription => $"GGUF v{Version}";
    public long Alignment { get; }
    /// <summary>Absolute file offset where tensor data starts.</summary>
    public long DataOffset { get; }
    public long FileSize => _length;
    /// <summary>Metadata in file order, with typed accessors.</summary>
    public GgufMetadata Metadata => _metadataView;
    /// <summary>Tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Opens and memory-maps a GGUF file. Nothing of the tensor data is read.</summary>
    public static GgufFile Open(string path)
        => MappedFile.Open(path, file => new GgufFile(path, file.Pointer, file.Length, file));

    /// <summary>Parses a GGUF image already in memory (tests, embedded files). The memory must outlive the object.</summary>
    public static GgufFile FromMemory(byte* data, long length, string name = "<memory>")
    {
        if (data == null && length != 0) throw new ArgumentNullException(nameof(data));
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return new(name, data, length, null);
    }

    private GgufFile(string fileName, byte* data, long length, MappedFile? file)
    {
        FileName = fileName;
        _base = data;
        _length = length;
        _file = file;
        try
        {
            var r = new Cursor(this);
            uint magic = r.U32("magic");
            if (magic != Magic)
                throw Error(0, $"not a GGUF file (magic 0x{magic:X8}, expected 0x{Magic:X8} \"GGUF\")");
            Version = r.U32("version");
            if (Version is < 1 or > 3)
                throw Error(4, (Version & 0xFFFF) == 0 && Version != 0
                    ? $"unsupported GGUF version {Version} (a big-endian file? only little-endian files are supported)"
                    : $"unsupported GGUF version {Version} (1, 2 and 3 are supported)");
            r.Wide = Version >= 2;
            long tensorCountAt = r.Position;
            long tensorCount = r.Count("tensor count");
            long kvCount = r.Count("metadata count");
            // Every metadata entry takes at least 13 bytes (key length, type, one-byte value) and every tensor info at
            // least 24 (name length, dimension count, type, offset); 9 and 20 with version 1's 32-bit lengths.
            long minEntryBytes = r.Wide ? 13 : 9, minTensorBytes = r.Wide ? 24 : 20;
            if (kvCount > r.Remaining / minEntryBytes) throw Error(tensorCountAt + (r.Wide ? 8 : 4), $"metadata count {kvCount} is larger than the file can hold");
            if (tensorCount > (r.Remaining - kvCount * minEntryBytes) / minTensorBytes) throw Error(tensorCountAt, $"tensor count {tensorCount} is larger than the file can hold");

            // Capacities are capped: the counts are only plausible, not yet proven by the entries that follow.
            var list = new List<KeyValuePair<string, GgufValue>>(InitialCapacity(kvCount));
            _metadata = new Dictionary<string, GgufValue>(InitialCapacity(kvCount), StringComparer.Ordinal);
            long alignmentAt = 0;
            for (long i = 0; i < kvCount; i++)
            {
                long at = r.Position;
                string key = r.String("metadata key");
                var type = r.ValueType($"'{key}'");
                var value = r.Value(type, key, 0);
                if (!_metadata.TryAdd(key, value)) throw Error(at, $"duplicate metadata key '{key}'");
                if (key == "general.alignment") alignmentAt = at;
                list.Add(new(key, value));
            }
            _metadataView = new GgufMetadata(fileName, list);

            long alignment = DefaultAlignment;
            if (_metadata.TryGetValue("general.alignment", out var alignValue))
            {
                if (!alignValue.IsInteger) throw Error(alignmentAt, $"general.alignment has type {alignValue.Type}, expected an integer");
                bool valid = alignValue.Value is ulong u ? u is > 0 and <= MaxAlignment : Convert.ToInt64(alignValue.Value) is > 0 and <= MaxAlignment;
                if (valid) alignment = Convert.ToInt64(alignValue.Value);
                if (!valid || (alignment & (alignment - 1)) != 0)
                    throw Error(alignmentAt, $"general.alignment {alignValue} is not a power of two between 1 and {MaxAlignment}");
            }
            Alignment = alignment;

            var tensors = new List<GgufTensorInfo>(InitialCapacity(tensorCount));
            _tensorsByName = new Dictionary<string, GgufTensorInfo>(InitialCapacity(tensorCount), StringComparer.Ordinal);
            var infoOffsets = new List<long>(InitialCapacity(tensorCount));
            for (long i = 0; i < tensorCount; i++)
            {
                long at = r.Position;
                var t = r.TensorInfo();
                if (!_tensorsByName.TryAdd(t.Name, t)) throw Error(at, $"duplicate tensor name '{t.Name}'");
                tensors.Add(t);
                infoOffsets.Add(at);
            }
            Tensors = tensors;

            DataOffset = AlignUp(r.Position, alignment);
            long dataSize = _length - DataOffset;
            if (tensorCount > 0 && dataSize < 0) throw Error(r.Position, "the file ends before its tensor data section");
            CheckTensorPlacement(tensors, infoOffsets, dataSize);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private void CheckTensorPlacement(List<GgufTensorInfo> tensors, List<long> infoOffsets, long dataSize)
    {
        var order = Enumerable.Range(0, tensors.Count).OrderBy(i => tensors[i].Offset).ToArray();
        long previousEnd = 0;
        string? previousName = null;
        foreach (int i in order)
        {
            var t = tensors[i];
            if (t.Offset % Alignment != 0)
                throw Error(infoOffsets[i], $"tensor '{t.Name}' offset {t.Offset} is not aligned to {Alignment} bytes");
            if (t.Offset > dataSize || t.ByteSize > dataSize - t.Offset)
                throw Error(infoOffsets[i], $"tensor '{t.Name}' data ({t.ByteSize} bytes at data offset {t.Offset}) lies past the end of the file ({dataSize} data bytes); the file is truncated");
            if (t.Offset < previousEnd)
                throw Error(infoOffsets[i], $"tensor '{t.Name}' overlaps tensor '{previousName}'");
            previousEnd = t.Offset + t.ByteSize;
            previousName = t.Name;
        }
    }

    private static int InitialCapacity(long count) => (int)Math.Min(count, 4096);

    internal static long AlignUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;

    private GgufFormatException Error(long offset, string problem) => new(FileName, offset, problem);

    // ---- tensors ---------------------------------------------------------------------------------------------------

    public GgufTensorInfo? FindTensor(string name) => _tensorsByName.GetValueOrDefault(name);

    public GgufTensorInfo GetTensor(string name) => IModelFile.RequireTensor(this, name);

    /// <summary>A pointer to a tensor's bytes inside the mapping; valid until the file is disposed.</summary>
    public byte* GetTensorPointer(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        return _base + DataOffset + tensor.Offset;
    }

    /// <summary>A tensor's bytes as a span into the mapping (tensors over 2 GB: use <see cref="GetTensorPointer"/>).</summary>
    public ReadOnlySpan<byte> GetTensorData(GgufTensorInfo tensor) => IModelFile.TensorSpan(this, tensor);

    public ReadOnlySpan<byte> GetTensorData(string name) => GetTensorData(GetTensor(name));

    void IModelFile.ReleasePages(byte* start, long bytes) => _file?.ReleasePages(start, bytes);

    public void Dispose()
    {
        _base = null;
        _file?.Dispose();
    }

    // ---- the parser ------------------------------------------------------------------------------------------------

    /// <summary>The GGUF reader: <see cref="ByteCursor"/> plus GGUF's strings, values, arrays and tensor infos.</summary>
    private sealed class Cursor(GgufFile file) : ByteCursor(file._base, file._length, file.FileName)
    {
        /// <summary>Counts and lengths are 64-bit from version 2 on, 32-bit in version 1.</summary>
        public bool Wide = true;

        /// <summary>A count or length: u32 in v1, u64 after; never beyond what the file can hold.</summary>
        public long Count(string what)
        {
            long at = Position;
            ulong n = Wide ? U64(what) : U32(what);
            if (n > (ulong)Length)
                throw Error(at, $"{what} {n} is larger than the file ({Length} bytes)");
            return (long)n;
        }

        public string String(string what)
        {
            long at = Position;
            long length = Count($"{what} length");
            if (length > Remaining)
                throw Error(at, $"{what} length {length} runs past the end of the file ({Remaining} bytes left)");
            if (length > MaxItems)
                throw Error(at, $"{what} length {length} is longer than a string can be");
            byte* p = Take(length, what);
            return Encoding.UTF8.GetString(p, (int)length);
        }

        /// <summary>An array's string element: the fast path of <see cref="String"/>, which it defers to for errors.</summary>
        private string ElementString(string key, int index)
        {
            int lengthBytes = Wide ? 8 : 4;
            if (Remaining >= lengthBytes)
            {
                byte* p = Data + Position;
                ulong length = Wide ? *(ulong*)p : *(uint*)p;
                if (length <= (ulong)(Remaining - lengthBytes) && length <= MaxItems)
                {
                    Position += lengthBytes + (long)length;
                    return Encoding.UTF8.GetString(p + lengthBytes, (int)length);
                }
            }
            return String($"element {index} of '{key}'"); // throws the precise error
        }

        public GgufValueType ValueType(string what)
        {
            long at = Position;
            uint t = U32(what);
            if (t > (uint)GgufValueType.Float64) throw Error(at, $"invalid GGUF type {t} for {what}");
            return (GgufValueType)t;
        }

        public GgufValue Value(GgufValueType type, string key, int depth)
        {
            string what = $"'{key}'";
            return type switch
            {
                GgufValueType.UInt8 => GgufValue.From(*Take(1, what)),
                GgufValueType.Int8 => GgufValue.From(*(sbyte*)Take(1, what)),
                GgufValueType.UInt16 => GgufValue.From(*(ushort*)Take(2, what)),
                GgufValueType.Int16 => GgufValue.From(*(short*)Take(2, what)),
                GgufValueType.UInt32 => GgufValue.From(U32(what)),
                GgufValueType.Int32 => GgufValue.From((int)U32(what)),
                GgufValueType.Float32 => GgufValue.From(*(float*)Take(4, what)),
                GgufValueType.Bool => Bool(what),
                GgufValueType.String => GgufValue.From(String(what)),
                GgufValueType.UInt64 => GgufValue.From(U64(what)),
                GgufValueType.Int64 => GgufValue.From((long)U64(what)),
                GgufValueType.Float64 => GgufValue.From(*(double*)Take(8, what)),
                GgufValueType.Array => GgufValue.From(Array(key, depth)),
                _ => throw Error(Position, $"invalid GGUF type {(uint)type} for {what}"),
            };
        }

        private GgufValue Bool(string what)
        {
            long at = Position;
            byte b = *Take(1, what);
            if (b > 1) throw Error(at, $"{what} is a bool with value {b} (only 0 and 1 are valid)");
            return GgufValue.From(b != 0);
        }

        private GgufArray Array(string key, int depth)
        {
            if (depth >= MaxArrayNesting) throw Error(Position, $"'{key}' nests arrays more than {MaxArrayNesting} deep");
            var elementType = ValueType($"array element type of '{key}'");
            long at = Position;
            long count = Count($"array length of '{key}'");
            long minElementBytes = elementType switch
            {
                GgufValueType.String => Wide ? 8 : 4,
                GgufValueType.Array => 4 + (Wide ? 8 : 4),
                _ => Marshal.SizeOf(GgufValue.ClrTypeOf(elementType) == typeof(bool) ? typeof(byte) : GgufValue.ClrTypeOf(elementType)),
            };
            if (count > Remaining / minElementBytes)
                throw Error(at, $"array '{key}' claims {count} {elementType} elements, more than the {Remaining} bytes left can hold");
            if (count > MaxItems)
                throw Error(at, $"array '{key}' has {count} elements, more than an array can hold");
            int n = (int)count;
            switch (elementType)
            {
                case GgufValueType.String:
                {
                    // Grown as the strings prove present: a count of empty-looking strings must not allocate up front.
                    var items = new List<string>(InitialCapacity(n));
                    for (int i = 0; i < n; i++) items.Add(ElementString(key, i));
                    return new GgufArray(elementType, items.ToArray());
                }
                case GgufValueType.Array:
                {
                    var items = new List<GgufArray>(InitialCapacity(n));
                    // Each element is a whole array value: its own element type, length and items.
                    for (int i = 0; i < n; i++) items.Add(Array(key, depth + 1));
                    return new GgufArray(elementType, items.ToArray());
                }
                case GgufValueType.Bool:
                {
                    var items = new bool[n];
                    for (int i = 0; i < n; i++)
                    {
                        byte v = Remaining >= 1 ? Data[Position] : (byte)2;
                        // The element's description is only built for the error (vocabularies have 10^5 elements).
                        if (v > 1) Bool($"element {i} of '{key}'");
                        items[i] = v != 0;
                        Position++;
                    }
                    return new GgufArray(elementType, items);
                }
                default:
                {
                    var clr = GgufValue.ClrTypeOf(elementType);
                    var items = System.Array.CreateInstance(clr, n);
                    long bytes = (long)n * minElementBytes;
                    byte* src = Take(bytes, $"array '{key}'");
                    var handle = GCHandle.Alloc(items, GCHandleType.Pinned);
                    try { Buffer.MemoryCopy(src, (void*)handle.AddrOfPinnedObject(), bytes, bytes); }
                    finally { handle.Free(); }
                    return new GgufArray(elementType, items);
                }
            }
        }

        public GgufTensorInfo TensorInfo()
        {
            string name = String("tensor name");
            long dimsAt = Position;
            uint nDims = U32($"dimension count of tensor '{name}'");
            if (nDims > MaxDimensions) throw Error(dimsAt, $"tensor '{name}' has {nDims} dimensions (at most {MaxDimensions})");
            var dims = new long[nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++)
            {
                long dAt = Position;
                ulong n = Wide ? U64($"dimension {d} of '{name}'") : U32($"dimension {d} of '{name}'");
                if (n > long.MaxValue) throw Error(dAt, $"tensor '{name}' dimension {d} = {n} is negative or too large");
                dims[d] = (long)n;
                if (n != 0 && elements > long.MaxValue / (long)n)
                    throw Error(dAt, $"tensor '{name}' has more elements than a 64-bit count can hold");
                elements *= (long)n;
            }
            long typeAt = Position;
            uint rawType = U32($"type of tensor '{name}'");
            if (!GgmlTypeInfo.IsKnown(rawType)) throw Error(typeAt, $"tensor '{name}' has unknown ggml type {rawType}");
            var type = (GgmlType)rawType;
            int blockSize = GgmlTypeInfo.BlockSize(type);
            if (nDims > 0 && dims[0] % blockSize != 0)
                throw Error(dimsAt, $"tensor '{name}' row length {dims[0]} is not a multiple of the {type} block size {blockSize}");
            long blocks = elements / blockSize;
            int typeSize = GgmlTypeInfo.TypeSize(type);
            if (blocks > long.MaxValue / typeSize) throw Error(dimsAt, $"tensor '{name}' byte size overflows");
            long offsetAt = Position;
            ulong offset = U64($"offset of tensor '{name}'");
            if (offset > (ulong)Length) throw Error(offsetAt, $"tensor '{name}' offset {offset} lies past the end of the file");
            return new GgufTensorInfo(name, dims, type, (long)offset, blocks * typeSize);
        }
    }
}

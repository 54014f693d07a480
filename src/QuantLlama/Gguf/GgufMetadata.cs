namespace QuantLlama.Gguf;

/// <summary>
/// A model file's metadata, in file order, with typed accessors that name the file and key in their errors.
/// Shared by GGUF files and the legacy GGML files (whose header is presented under GGUF's key names).
/// </summary>
public sealed class GgufMetadata : IReadOnlyDictionary<string, GgufValue>
{
    private readonly Dictionary<string, GgufValue> _byKey;

    public string FileName { get; }

    /// <summary>Entries in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Entries { get; }

    public GgufMetadata(string fileName, IReadOnlyList<KeyValuePair<string, GgufValue>> entries)
    {
        FileName = fileName;
        Entries = entries;
        _byKey = new Dictionary<string, GgufValue>(entries.Count, StringComparer.Ordinal);
        foreach (var (k, v) in entries) _byKey[k] = v;
    }

    public bool ContainsKey(string key) => _byKey.ContainsKey(key);

    public GgufValue GetValue(string key) => _byKey.TryGetValue(key, out var v)
        ? v
        : throw new KeyNotFoundException($"{FileName}: metadata key '{key}' is missing");

    public string GetString(string key) => Expect(key, GgufValueType.String) is string s ? s : "";

    public string? GetStringOrNull(string key) => ContainsKey(key) ? GetString(key) : null;

    public bool GetBool(string key) => (bool)Expect(key, GgufValueType.Bool);

    public bool GetBool(string key, bool fallback) => ContainsKey(key) ? GetBool(key) : fallback;

    /// <summary>Any integer type, range-checked into a long (writers disagree on u32 versus i32 and u64).</summary>
    public long GetInteger(string key)
    {
        var v = GetValue(key);
        if (!v.IsInteger) throw MistypedKey(key, v, "an integer");
        if (v.Value is ulong u && u > long.MaxValue) throw new FormatException($"{FileName}: metadata '{key}' = {u} is too large");
        return Convert.ToInt64(v.Value);
    }

    public long GetInteger(string key, long fallback) => ContainsKey(key) ? GetInteger(key) : fallback;

    /// <summary>A float32 or float64 value.</summary>
    public double GetFloat(string key)
    {
        var v = GetValue(key);
        return v.Value switch
        {
            float f => f,
            double d => d,
            _ => throw MistypedKey(key, v, "a float"),
        };
    }

    public double GetFloat(string key, double fallback) => ContainsKey(key) ? GetFloat(key) : fallback;

    public GgufArray GetArray(string key) => (GgufArray)Expect(key, GgufValueType.Array);

    public GgufArray? GetArrayOrNull(string key) => ContainsKey(key) ? GetArray(key) : null;

    public string[] GetStringArray(string key) => TypedArray<string>(key, GgufValueType.String);

    public float[] GetFloatArray(string key) => TypedArray<float>(key, GgufValueType.Float32);

    /// <summary>An array of any integer type, as ints (token types, token ids).</summary>
    public int[] GetIntArray(string key)
    {
        var a = GetArray(key);
        // Switch on the declared type, not the CLR array: the runtime lets a uint[] pass as an int[] (and ulong[] as long[]).
        return a.ElementType switch
        {
            GgufValueType.Int32 => (int[])a.Items,
            GgufValueType.UInt32 => ToInts(key, (uint[])a.Items, x => x),
            GgufValueType.UInt8 => Array.ConvertAll((byte[])a.Items, x => (int)x),
            GgufValueType.Int8 => Array.ConvertAll((sbyte[])a.Items, x => (int)x),
            GgufValueType.Int16 => Array.ConvertAll((short[])a.Items, x => (int)x),
            GgufValueType.UInt16 => Array.ConvertAll((ushort[])a.Items, x => (int)x),
            GgufValueType.Int64 => ToInts(key, (long[])a.Items, x => x),
            GgufValueType.UInt64 => ToInts(key, (ulong[])a.Items, x => x > long.MaxValue ? long.MaxValue : (long)x),
            _ => throw new FormatException($"{FileName}: metadata '{key}' is an array of {a.ElementType}, expected integers"),
        };
    }

    private int[] ToInts<T>(string key, T[] items, Func<T, long> widen)
    {
        var result = new int[items.Length];
        for (int i = 0; i < items.Length; i++)
        {
            long v = widen(items[i]);
            if (v is < int.MinValue or > int.MaxValue)
                throw new FormatException($"{FileName}: metadata '{key}' element {i} = {items[i]} does not fit a 32-bit integer");
            result[i] = (int)v;
        }
        return result;
    }

    private T[] TypedArray<T>(string key, GgufValueType elementType)
    {
        var a = GetArray(key);
        if (a.ElementType != elementType)
            throw new FormatException($"{FileName}: metadata '{key}' is an array of {a.ElementType}, expected {elementType}");
        return (T[])a.Items;
    }

    private object Expect(string key, GgufValueType type)
    {
        var v = GetValue(key);
        if (v.Type != type) throw MistypedKey(key, v, type.ToString());
        return v.Value;
    }

    private FormatException MistypedKey(string key, GgufValue v, string expected)
        => new($"{FileName}: metadata '{key}' has type {v.Type}, expected {expected}");

    public GgufValue this[string key] => GetValue(key);
    public IEnumerable<string> Keys => Entries.Select(e => e.Key);
    public IEnumerable<GgufValue> Values => Entries.Select(e => e.Value);
    public int Count => Entries.Count;
    public bool TryGetValue(string key, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out GgufValue value) => _byKey.TryGetValue(key, out value);
    public IEnumerator<KeyValuePair<string, GgufValue>> GetEnumerator() => Entries.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

using System.Globalization;

namespace QuantLlama.Gguf;

/// <summary>Metadata value types as numbered by the GGUF specification.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// A typed GGUF array. <see cref="Items"/> is a typed CLR array matching <see cref="ElementType"/>:
/// byte[], sbyte[], ushort[], short[], uint[], int[], float[], bool[], string[], GgufArray[], ulong[], long[], double[].
/// </summary>
public sealed class GgufArray
{
    public GgufValueType ElementType { get; }
    public Array Items { get; }
    public int Count => Items.Length;

    public GgufArray(GgufValueType elementType, Array items)
    {
        if (GgufValue.ClrTypeOf(elementType) != items.GetType().GetElementType())
            throw new ArgumentException($"a {elementType} array cannot hold {items.GetType().Name}");
        ElementType = elementType;
        Items = items;
    }

    /// <summary>The items as T[]; T must be exactly the element type's CLR type (a uint array is not an int array).</summary>
    public T[] As<T>() => Items.GetType().GetElementType() == typeof(T)
        ? (T[])Items
        : throw new InvalidCastException($"array of {ElementType} is not an array of {typeof(T).Name}");
}

/// <summary>One metadata value: its GGUF type and the CLR value (arrays as <see cref="GgufArray"/>).</summary>
public sealed class GgufValue
{
    public GgufValueType Type { get; }
    public object Value { get; }

    public GgufValue(GgufValueType type, object value)
    {
        var expected = ClrTypeOf(type);
        if (value.GetType() != expected)
            throw new ArgumentException($"a {type} value cannot be a {value.GetType().Name}");
        Type = type;
        Value = value;
    }

    public static GgufValue From(string v) => new(GgufValueType.String, v);
    public static GgufValue From(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue From(int v) => new(GgufValueType.Int32, v);
    public static GgufValue From(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue From(long v) => new(GgufValueType.Int64, v);
    public static GgufValue From(float v) => new(GgufValueType.Float32, v);
    public static GgufValue From(double v) => new(GgufValueType.Float64, v);
    public static GgufValue From(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue From(byte v) => new(GgufValueType.UInt8, v);
    public static GgufValue From(sbyte v) => new(GgufValueType.Int8, v);
    public static GgufValue From(ushort v) => new(GgufValueType.UInt16, v);
    public static GgufValue From(short v) => new(GgufValueType.Int16, v);
    public static GgufValue From(GgufArray v) => new(GgufValueType.Array, v);
    public static GgufValue FromArray(string[] v) => From(new GgufArray(GgufValueType.String, v));
    public static GgufValue FromArray(float[] v) => From(new GgufArray(GgufValueType.Float32, v));
    public static GgufValue FromArray(int[] v) => From(new GgufArray(GgufValueType.Int32, v));
    public static GgufValue FromArray(uint[] v) => From(new GgufArray(GgufValueType.UInt32, v));

    public bool IsInteger => Type is GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.UInt16
        or GgufValueType.Int16 or GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.UInt64 or GgufValueType.Int64;

    /// <summary>The CLR type that holds values of a GGUF type.</summary>
    public static Type ClrTypeOf(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 => typeof(byte),
        GgufValueType.Int8 => typeof(sbyte),
        GgufValueType.UInt16 => typeof(ushort),
        GgufValueType.Int16 => typeof(short),
        GgufValueType.UInt32 => typeof(uint),
        GgufValueType.Int32 => typeof(int),
        GgufValueType.Float32 => typeof(float),
        GgufValueType.Bool => typeof(bool),
        GgufValueType.String => typeof(string),
        GgufValueType.Array => typeof(GgufArray),
        GgufValueType.UInt64 => typeof(ulong),
        GgufValueType.Int64 => typeof(long),
        GgufValueType.Float64 => typeof(double),
        _ => throw new ArgumentOutOfRangeException(nameof(type), $"invalid GGUF type {(uint)type}"),
    };

    public override string ToString() => Value switch
    {
        string s => s,
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        GgufArray a => $"[{a.ElementType} x {a.Count}]",
        _ => Convert.ToString(Value, CultureInfo.InvariantCulture) ?? "",
    };
}

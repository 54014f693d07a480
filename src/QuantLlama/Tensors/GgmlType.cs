namespace QuantLlama.Tensors;

/// <summary>Tensor element types, numbered exactly as ggml numbers them in GGUF and GGML files.</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// <summary>
/// Block geometry of every ggml type: how many elements one block holds and how many bytes it takes, as each
/// format declares it (<see cref="Quants.QuantFormats"/>). The single source of row sizes for the file readers,
/// the writer and the kernels.
/// </summary>
public static class GgmlTypeInfo
{
    /// <summary>Elements per block for the k-quants and most i-quants (ggml's QK_K).</summary>
    public const int QK_K = 256;

    /// <summary>(BlockSize, TypeSize) by type number; (0, 0) for numbers ggml does not define.</summary>
    private static readonly (int BlockSize, int TypeSize)[] Geometry = BuildGeometry();

    private static (int, int)[] BuildGeometry()
    {
        var g = new (int, int)[Quants.QuantFormats.Count];
        foreach (var f in Quants.QuantFormats.All) g[(int)f.Type] = (f.BlockSize, f.BlockBytes);
        return g;
    }

    /// <summary>True for the type numbers ggml defines (removed and future numbers are not).</summary>
    public static bool IsKnown(uint type) => type < Geometry.Length && Geometry[type].BlockSize != 0;

    public static int BlockSize(GgmlType type) => Checked(type).BlockSize;

    public static int TypeSize(GgmlType type) => Checked(type).TypeSize;

    /// <summary>Bytes taken by <paramref name="elements"/> values; the count must be a whole number of blocks.</summary>
    public static long RowBytes(GgmlType type, long elements)
    {
        var (blockSize, typeSize) = Checked(type);
        if (elements % blockSize != 0)
            throw new ArgumentException($"{elements} elements is not a whole number of {type} blocks of {blockSize}");
        return elements / blockSize * typeSize;
    }

    public static string Name(GgmlType type) => type.ToString();

    /// <summary>Parses a type name as llama.cpp prints it (case-insensitive, e.g. "q4_k" or "Q4_K").</summary>
    public static bool TryParse(string name, out GgmlType type)
    {
        foreach (var t in Enum.GetValues<GgmlType>())
        {
            if (string.Equals(t.ToString(), name, StringComparison.OrdinalIgnoreCase))
            {
                type = t;
                return true;
            }
        }
        type = default;
        return false;
    }

    private static (int BlockSize, int TypeSize) Checked(GgmlType type)
    {
        if (!IsKnown((uint)type))
            throw new ArgumentOutOfRangeException(nameof(type), $"unknown ggml type {(uint)type}");
        return Geometry[(int)type];
    }
}

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
/// Block geometry of every ggml type: how many elements one block holds and how many bytes it takes.
/// The single source of truth for row sizes, used by the file readers, the writer and the kernels.
/// </summary>
public static class GgmlTypeInfo
{
    /// <summary>Elements per block for the k-quants (ggml's QK_K).</summary>
    public const int QK_K = 256;

    private static readonly (int BlockSize, int TypeSize)[] Geometry = BuildGeometry();

    private static (int, int)[] BuildGeometry()
    {
        var g = new (int, int)[40];
        void Set(GgmlType t, int blockSize, int typeSize) => g[(int)t] = (blockSize, typeSize);
        Set(GgmlType.F32, 1, 4);
        Set(GgmlType.F16, 1, 2);
        Set(GgmlType.BF16, 1, 2);
        Set(GgmlType.Q4_0, 32, 2 + 16);
        Set(GgmlType.Q4_1, 32, 2 + 2 + 16);
        Set(GgmlType.Q5_0, 32, 2 + 4 + 16);
        Set(GgmlType.Q5_1, 32, 2 + 2 + 4 + 16);
        Set(GgmlType.Q8_0, 32, 2 + 32);
        Set(GgmlType.Q8_1, 32, 2 + 2 + 32);
        Set(GgmlType.Q2_K, QK_K, 16 + 64 + 2 + 2);
        Set(GgmlType.Q3_K, QK_K, 32 + 64 + 12 + 2);
        Set(GgmlType.Q4_K, QK_K, 2 + 2 + 12 + 128);
        Set(GgmlType.Q5_K, QK_K, 2 + 2 + 12 + 32 + 128);
        Set(GgmlType.Q6_K, QK_K, 128 + 64 + 16 + 2);
        Set(GgmlType.Q8_K, QK_K, 4 + 256 + 32);
        Set(GgmlType.IQ2_XXS, QK_K, 2 + 64);
        Set(GgmlType.IQ2_XS, QK_K, 2 + 64 + 8);
        Set(GgmlType.IQ3_XXS, QK_K, 2 + 96);
        Set(GgmlType.IQ1_S, QK_K, 2 + 32 + 16);
        Set(GgmlType.IQ4_NL, 32, 2 + 16);
        Set(GgmlType.IQ3_S, QK_K, 2 + 64 + 32 + 8 + 4);
        Set(GgmlType.IQ2_S, QK_K, 2 + 64 + 16);
        Set(GgmlType.IQ4_XS, QK_K, 2 + 2 + 4 + 128);
        Set(GgmlType.I8, 1, 1);
        Set(GgmlType.I16, 1, 2);
        Set(GgmlType.I32, 1, 4);
        Set(GgmlType.I64, 1, 8);
        Set(GgmlType.F64, 1, 8);
        Set(GgmlType.IQ1_M, QK_K, 32 + 16 + 8);
        Set(GgmlType.TQ1_0, QK_K, 2 + 48 + 4);
        Set(GgmlType.TQ2_0, QK_K, 2 + 64);
        Set(GgmlType.MXFP4, 32, 1 + 16);
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

using QuantLlama.Tensors;

namespace QuantLlama.Gguf;

/// <summary>
/// A tensor's description from the file header. <see cref="Dimensions"/> is in ggml order:
/// Dimensions[0] is the row length (contiguous), Dimensions[1] the number of rows, and so on.
/// <see cref="Offset"/> is relative to the start of the data section.
/// </summary>
public sealed record GgufTensorInfo(string Name, long[] Dimensions, GgmlType Type, long Offset, long ByteSize)
{
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Dimensions) n *= d;
            return n;
        }
    }

    /// <summary>Row length (ne[0]).</summary>
    public long Columns => Dimensions.Length > 0 ? Dimensions[0] : 1;

    /// <summary>Number of rows: the product of all dimensions but the first.</summary>
    public long Rows => Dimensions.Length == 0 ? 1 : ElementCount / Math.Max(1, Dimensions[0]);

    public string ShapeText => "[" + string.Join(", ", Dimensions) + "]";
}

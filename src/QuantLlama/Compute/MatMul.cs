using QuantLlama.Tensors;

namespace QuantLlama.Compute;

/// <summary>
/// Products of a weight matrix stored in any supported ggml type with f32 activations.
/// Weights are [rows x cols] in ggml order: each of the <c>rows</c> rows holds <c>cols</c> values,
/// taking <see cref="GgmlTypeInfo.RowBytes"/> bytes; the pointer points into the memory-mapped file.
/// </summary>
public static unsafe class MatMul
{
    /// <summary>y[r] = dot(W[r], x) for every row r.</summary>
    public static void MatVec(GgmlType type, byte* weights, int rows, int cols, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length < cols || y.Length < rows) throw new ArgumentException("activation or output too short");
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        for (int r = 0; r < rows; r++)
            y[r] = ScalarDot(type, weights + r * rowBytes, x[..cols]);
    }

    /// <summary>Y[i, r] = dot(W[r], X[i]) for n activation rows X (row-major n x cols) into Y (row-major n x rows).</summary>
    public static void MatMat(GgmlType type, byte* weights, int rows, int cols, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        for (int i = 0; i < n; i++)
            MatVec(type, weights, rows, cols, x.Slice(i * cols, cols), y.Slice(i * rows, rows));
    }

    private static float ScalarDot(GgmlType type, byte* row, ReadOnlySpan<float> x)
    {
        float sum = 0;
        switch (type)
        {
            case GgmlType.F32:
                for (int i = 0; i < x.Length; i++) sum += ((float*)row)[i] * x[i];
                return sum;
            case GgmlType.F16:
                for (int i = 0; i < x.Length; i++) sum += (float)((Half*)row)[i] * x[i];
                return sum;
            default:
                throw new NotSupportedException($"matrix products over {type} weights are not implemented");
        }
    }
}

using System.Runtime.Intrinsics;

namespace QuantLlama.Compute;

/// <summary>
/// The forward pass's element-wise and per-row kernels, each as ggml computes it, so a row's bits depend only on
/// that row (never on the rows batched beside it).
/// </summary>
internal static unsafe class RowKernels
{
    /// <summary>y += w * x.</summary>
    public static void ScaleAdd(float w, float* x, float* y, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var wv = Vector256.Create(w);
            for (; i <= n - 8; i += 8)
                Vector256.Store(Vector256.Load(y + i) + wv * Vector256.Load(x + i), y + i);
        }
        for (; i < n; i++) y[i] += w * x[i];
    }

    /// <summary>Values in a batch's rows from which its gates spread over the worker pool.</summary>
    private const long ParallelValues = 1 << 14;

    /// <summary>What a row kernel's items (rows, or blocks of rows) read and write.</summary>
    private struct Rows
    {
        public float* X, Weight, Y;
        public int Count, Width;
        public float Eps;
    }

    /// <summary>
    /// y = x / rms(x) * weight for n rows of dim values (x and y may be the same buffer), as ggml does: each square
    /// rounded to f32, then summed in order in double. On the calling thread: its rows are in this core's cache (the
    /// residual add just wrote them); spread over the pool, the other core took about twice as long over its rows.
    /// </summary>
    internal static void RmsNorm(float* x, float* weight, float* y, int n, int dim, float eps)
    {
        var rows = new Rows { X = x, Weight = weight, Y = y, Count = n, Width = dim, Eps = eps };
        for (int b = 0; b < (n + 3) / 4; b++) RmsNormBlock(rows, b);
    }

    /// <summary>Rows 4·block.. of <see cref="RmsNorm"/>.</summary>
    private static void RmsNormBlock(in Rows rows, int block)
    {
        int dim = rows.Width, i = 4 * block, end = Math.Min(i + 4, rows.Count);
        float* x = rows.X, weight = rows.Weight, y = rows.Y;
        float eps = rows.Eps;
        if (end - i == 4)
        {
            // A row's sum is one chain of dependent additions; four rows side by side keep four chains in flight.
            float* x0 = x + (long)i * dim, x1 = x0 + dim, x2 = x1 + dim, x3 = x2 + dim;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int j = 0; j < dim; j++)
            {
                s0 += x0[j] * x0[j];
                s1 += x1[j] * x1[j];
                s2 += x2[j] * x2[j];
                s3 += x3[j] * x3[j];
            }
            float* yi = y + (long)i * dim;
            ScaleRow(x0, weight, yi, dim, s0, eps);
            ScaleRow(x1, weight, yi + dim, dim, s1, eps);
            ScaleRow(x2, weight, yi + 2L * dim, dim, s2, eps);
            ScaleRow(x3, weight, yi + 3L * dim, dim, s3, eps);
            return;
        }
        for (; i < end; i++)
        {
            float* xi = x + (long)i * dim;
            double sum = 0;
            for (int j = 0; j < dim; j++) sum += xi[j] * xi[j];
            ScaleRow(xi, weight, y + (long)i * dim, dim, sum, eps);
        }
    }

    /// <summary>y = x / rms(x) * weight for one row whose sum of squares is <paramref name="sum"/>.</summary>
    private static void ScaleRow(float* x, float* weight, float* y, int dim, double sum, float eps)
    {
        float scale = 1f / MathF.Sqrt((float)(sum / dim) + eps);
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var s = Vector256.Create(scale);
            for (; j <= dim - 8; j += 8) Vector256.Store(Vector256.Load(x + j) * s * Vector256.Load(weight + j), y + j);
        }
        for (; j < dim; j++) y[j] = x[j] * scale * weight[j];
    }

    /// <summary>
    /// gate = silu(gate) * up for n rows of width values, in place, as ggml's swiglu: its vectorised exp, and row by
    /// row, so a row's last values take the scalar tail whatever the batch; a batch's rows spread over the worker pool.
    /// </summary>
    internal static void SwiGlu(float* gate, float* up, int n, int width)
    {
        var rows = new Rows { X = gate, Y = up, Count = n, Width = width };
        if (n > 1 && (long)n * width >= ParallelValues) WorkerPool.Run(n, &SwiGluRow, &rows);
        else for (int r = 0; r < n; r++) SwiGluRow(&rows, r);
    }

    /// <summary>Row r of <see cref="SwiGlu"/> (gate in X, up in Y).</summary>
    private static void SwiGluRow(void* context, int r)
    {
        var rows = (Rows*)context;
        int width = rows->Width;
        float* g = rows->X + (long)r * width, u = rows->Y + (long)r * width;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= width - 8; i += 8)
                Vector256.Store(VectorMath.Silu(Vector256.Load(g + i)) * Vector256.Load(u + i), g + i);
        for (; i < width; i++) g[i] = g[i] / (1f + MathF.Exp(-g[i])) * u[i];
    }

    /// <summary>
    /// gate = gelu(gate) * up for n rows of width values, in place, as ggml's geglu on a CPU: a gate at or below −10
    /// gives 0, at or above 10 itself, and between them is rounded to f16 and looked up in <see cref="GeluTable"/>.
    /// </summary>
    internal static void GeGlu(float* gate, float* up, int n, int width)
    {
        var table = GeluTable;
        long count = (long)n * width;
        for (long i = 0; i < count; i++)
        {
            float x = gate[i];
            gate[i] = x <= -10f ? 0f : x >= 10f ? x * up[i] : table[BitConverter.HalfToUInt16Bits((Half)x)] * up[i];
        }
    }

    /// <summary>
    /// [65536] GELU (tanh approximation) of every f16 value, computed in f32 and rounded to f16, as ggml's
    /// ggml_table_gelu_f16: 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))), filled once on first use.
    /// </summary>
    internal static float[] GeluTable => _geluTable ??= BuildGeluTable();

    private static float[]? _geluTable;

    private static float[] BuildGeluTable()
    {
        const float sqrt2OverPi = 0.79788456080286535587989211986876f, coefA = 0.044715f;
        var table = new float[1 << 16];
        for (int i = 0; i < table.Length; i++)
        {
            float x = (float)BitConverter.UInt16BitsToHalf((ushort)i);
            // ggml's build contracts 1 + a·x·x into one fused multiply-add.
            float gelu = 0.5f * x * (1.0f + MathF.Tanh(sqrt2OverPi * x * MathF.FusedMultiplyAdd(coefA * x, x, 1.0f)));
            table[i] = (float)(Half)gelu;
        }
        return table;
    }

    /// <summary>x = cap · tanh(x / cap) over count values (ggml's scale by 1/cap, tanh, scale by cap).</summary>
    internal static void SoftCap(float* x, long count, float cap)
    {
        float inverse = 1f / cap;
        for (long i = 0; i < count; i++) x[i] = MathF.Tanh(x[i] * inverse) * cap;
    }

    /// <summary>x *= factor over count values.</summary>
    internal static void Scale(float* x, long count, float factor)
    {
        for (long i = 0; i < count; i++) x[i] *= factor;
    }

    /// <summary>x += y over count values.</summary>
    internal static void Add(float* x, float* y, long count)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= count - 8; i += 8) Vector256.Store(Vector256.Load(x + i) + Vector256.Load(y + i), x + i);
        for (; i < count; i++) x[i] += y[i];
    }

    /// <summary>
    /// Mixtral's router for one row: the <paramref name="used"/> largest of <paramref name="experts"/> logits (the
    /// first of equals), and their weights, a softmax over the chosen logits alone.
    /// </summary>
    internal static void SelectExperts(float* logits, int experts, int used, int* ids, float* weights)
    {
        for (int k = 0; k < used; k++)
        {
            int best = -1;
            for (int e = 0; e < experts; e++)
            {
                bool taken = false;
                for (int j = 0; j < k; j++) taken |= ids[j] == e;
                if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
            }
            ids[k] = best;
        }
        float max = logits[ids[0]];
        float sum = 0;
        for (int k = 0; k < used; k++) sum += weights[k] = MathF.Exp(logits[ids[k]] - max);
        for (int k = 0; k < used; k++) weights[k] /= sum;
    }
}

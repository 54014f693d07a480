using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Compute;

/// <summary>
/// Products of a weight matrix stored in any supported ggml type with f32 activations.
/// Weights are [rows x cols] in ggml order: each of the <c>rows</c> rows holds <c>cols</c> values,
/// taking <see cref="GgmlTypeInfo.RowBytes"/> bytes; the pointer points into the memory-mapped file.
/// </summary>
/// <remarks>
/// As ggml does: each activation row is quantized once per call to the weight type's partner (Q8_0 for
/// Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, F16 for F16, BF16 for BF16, F32 for F32), then every output is one row
/// dot. Rows are split into chunks spread over <see cref="WorkerPool"/>; each output element is computed by
/// exactly one kernel call, so results do not depend on the thread count. MatMat walks activation rows in
/// tiles of 4 per weight row (one weight load serves 4 dots) and gives the same bits as MatVec per row.
/// </remarks>
public static unsafe class MatMul
{
    /// <summary>Below this many multiply-adds a product runs on the calling thread alone.</summary>
    private const long ParallelThreshold = 1 << 17;

    private const int Tile = 4;

    [ThreadStatic] private static byte[]? _scratch;

    private struct Job
    {
        public TypeKernel Kernel;
        public byte* Weights;
        public long WeightRowBytes;
        public byte* Activation;
        public long ActivationRowBytes;
        public float* X;
        public float* Y;
        public int Rows;
        public int Cols;
        public int N;
        public int RowsPerChunk;
        public bool UseDot4;
    }

    /// <summary>y[r] = dot(W[r], x) for every row r.</summary>
    public static void MatVec(GgmlType type, byte* weights, int rows, int cols, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length < cols || y.Length < rows) throw new ArgumentException("activation or output too short");
        MatMat(type, weights, rows, cols, x, 1, y);
    }

    /// <summary>Y[i, r] = dot(W[r], X[i]) for n activation rows X (row-major n x cols) into Y (row-major n x rows).</summary>
    public static void MatMat(GgmlType type, byte* weights, int rows, int cols, ReadOnlySpan<float> x, int n, Span<float> y)
    {
        if (rows < 0 || cols < 0 || n < 0) throw new ArgumentOutOfRangeException(nameof(rows), "negative matrix size");
        if ((long)n * cols > x.Length || (long)n * rows > y.Length) throw new ArgumentException("activation or output too short");
        if (rows == 0 || n == 0) return;
        var kernel = QuantKernels.Get(type);
        long weightRowBytes = GgmlTypeInfo.RowBytes(type, cols);
        long activationRowBytes = GgmlTypeInfo.RowBytes(kernel.ActivationType, cols);
        bool parallel = (long)rows * cols * n >= ParallelThreshold && WorkerPool.ThreadCount > 1;

        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            var job = new Job
            {
                Kernel = kernel, Weights = weights, WeightRowBytes = weightRowBytes,
                ActivationRowBytes = activationRowBytes, X = xp, Y = yp, Rows = rows, Cols = cols, N = n,
                UseDot4 = n >= Tile && kernel.Dot4Avx2 != null && Kernels.Path == KernelPath.Avx2,
            };
            if (kernel.ActivationType == GgmlType.F32)
            {
                job.Activation = (byte*)xp; // f32 weights take the activation as it is
            }
            else
            {
                job.Activation = Scratch(activationRowBytes * n);
                if (parallel && n >= 8) WorkerPool.Run(n, &QuantizeActivationRow, &job);
                else for (int i = 0; i < n; i++) QuantizeActivationRow(&job, i);
            }

            if (!parallel)
            {
                job.RowsPerChunk = rows;
                RunChunk(&job, 0);
                return;
            }
            // Enough chunks for load balance, each big enough that claiming it costs little.
            int chunks = Math.Min(rows, WorkerPool.ThreadCount * 4);
            job.RowsPerChunk = (rows + chunks - 1) / chunks;
            chunks = (rows + job.RowsPerChunk - 1) / job.RowsPerChunk;
            WorkerPool.Run(chunks, &RunChunk, &job);
        }
    }

    private static void QuantizeActivationRow(void* context, int i)
    {
        var job = (Job*)context;
        job->Kernel.QuantizeActivation(job->X + (long)i * job->Cols, job->Activation + i * job->ActivationRowBytes, job->Cols);
    }

    private static void RunChunk(void* context, int chunk)
    {
        var job = (Job*)context;
        int r0 = chunk * job->RowsPerChunk;
        int r1 = Math.Min(job->Rows, r0 + job->RowsPerChunk);
        int n = job->N, cols = job->Cols, rows = job->Rows;
        var dot = job->Kernel.Dot;
        long aBytes = job->ActivationRowBytes;
        int i = 0;
        if (job->UseDot4)
        {
            var dot4 = job->Kernel.Dot4Avx2;
            for (; i + Tile <= n; i += Tile)
            {
                byte* a = job->Activation + i * aBytes;
                float* y = job->Y + (long)i * rows;
                for (int r = r0; r < r1; r++)
                    dot4(job->Weights + r * job->WeightRowBytes, a, (nint)aBytes, cols, y + r, rows);
            }
        }
        for (; i < n; i++)
        {
            byte* a = job->Activation + i * aBytes;
            float* y = job->Y + (long)i * rows;
            for (int r = r0; r < r1; r++)
                y[r] = dot(job->Weights + r * job->WeightRowBytes, a, cols);
        }
    }

    /// <summary>The calling thread's activation buffer, grown (pinned) when too small; never shrinks.</summary>
    private static byte* Scratch(long bytes)
    {
        var buffer = _scratch;
        if (buffer == null || buffer.Length < bytes)
        {
            long size = Math.Max(bytes, 4096);
            if (size > Array.MaxLength) throw new ArgumentException("activation too large");
            buffer = _scratch = GC.AllocateUninitializedArray<byte>((int)size, pinned: true);
        }
        return (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
    }
}

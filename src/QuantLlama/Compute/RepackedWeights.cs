using System.Runtime.InteropServices;
using QuantLlama.Quants;
using QuantLlama.Quants.Tiles;
using QuantLlama.Tensors;

namespace QuantLlama.Compute;

/// <summary>
/// Copies of weight matrices repacked in groups of 8 rows (<see cref="Q4_0RowGroups"/>) for products on the AVX-512
/// path (prompts, conversations decoding together, single rows), in native memory. The repacked products give the
/// same bits as the row dot over the mapped weights, so a result never depends on which ran.
/// </summary>
internal static unsafe class RepackedWeights
{
    /// <summary>True when a matrix of this type and shape has a repacked form on the current path.</summary>
    public static bool Supported(GgmlType type, int rows, int cols)
        => Kernels.UseAvx512 && type == GgmlType.Q4_0 && rows > 0 && rows % Q4_0RowGroups.Rows == 0 && Q4_0RowGroups.Fits(cols);

    /// <summary>Bytes of the repacked copy of a matrix (<see cref="Supported"/>).</summary>
    public static long Bytes(int rows, int cols) => rows / Q4_0RowGroups.Rows * Q4_0RowGroups.GroupBytes(cols);

    /// <summary>The repacked copy of [rows x cols] Q4_0 weights, in 64-byte aligned native memory freed by <see cref="Free"/>.</summary>
    public static byte* Create(byte* weights, int rows, int cols)
    {
        var job = new RepackJob
        {
            Weights = weights, RowBytes = GgmlTypeInfo.RowBytes(GgmlType.Q4_0, cols), Cols = cols,
            GroupBytes = Q4_0RowGroups.GroupBytes(cols),
            Groups = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes(rows, cols), 64),
        };
        WorkerPool.Run(rows / Q4_0RowGroups.Rows, &RepackGroup, &job);
        return job.Groups;
    }

    public static void Free(byte* groups) => NativeMemory.AlignedFree(groups);

    /// <summary>True when every product has repacked weights usable for rows of <paramref name="cols"/> values on the current path.</summary>
    internal static bool AllRepacked(MatMul.Product* products, int count, int cols)
    {
        if (!Kernels.UseAvx512 || !Q4_0RowGroups.Fits(cols)) return false;
        for (int p = 0; p < count; p++)
            if (products[p].RowGroups == null || products[p].Type != GgmlType.Q4_0 || products[p].Rows % Q4_0RowGroups.Rows != 0) return false;
        return true;
    }

    private struct RepackJob
    {
        public byte* Weights;
        public long RowBytes;
        public int Cols;
        public long GroupBytes;
        public byte* Groups;
    }

    private static void RepackGroup(void* context, int g)
    {
        var job = (RepackJob*)context;
        Q4_0RowGroups.Repack(job->Weights + (long)g * Q4_0RowGroups.Rows * job->RowBytes, job->RowBytes, job->Cols, job->Groups + g * job->GroupBytes);
    }
}

using System.Runtime.InteropServices;
using QuantLlama.Quants;
using QuantLlama.Quants.Tiles;
using QuantLlama.Tensors;

namespace QuantLlama.Compute;

/// <summary>
/// Copies of weight matrices repacked in groups of 8 rows (<see cref="Q4_0RowGroups"/>, <see cref="Q4KRowGroups"/>)
/// for products over 8 or more activation rows (prompts) on the AVX-512 path, in native memory; Q4_K's copy also
/// serves 1 to 7 rows (<see cref="Kernel.DotRows"/>), Q4_0's leaves them to the mapped weights. The repacked
/// products give the same bits as the row dot, so a result never depends on which ran.
/// </summary>
internal static unsafe class RepackedWeights
{
    /// <summary>Weight rows per repacked group, for every type.</summary>
    internal const int GroupRows = 8;

    /// <summary>A type's repacked kernel: its activation tile and its product of 8 weight rows x 8 activation rows.</summary>
    internal readonly struct Kernel
    {
        /// <summary>(rows, stride, n, tile): 8 activation rows of the type's activation form into one tile.</summary>
        public delegate*<byte*, nint, int, byte*, void> PackActivationTile { get; init; }
        /// <summary>(n): bytes of one activation tile.</summary>
        public delegate*<int, long> PackedTileBytes { get; init; }
        /// <summary>(group, tile, n, y, yStride, activationRows).</summary>
        public delegate*<byte*, byte*, int, float*, nint, int, void> Dot8x8 { get; init; }
        /// <summary>(rows, rowBytes, n, group): 8 rows of the type into one group.</summary>
        public delegate*<byte*, long, int, byte*, void> Repack { get; init; }
        /// <summary>(n): bytes of one group of rows of n values.</summary>
        public delegate*<int, long> GroupBytes { get; init; }
        /// <summary>(n): whether rows of n values can be repacked.</summary>
        public delegate*<int, bool> Fits { get; init; }
        /// <summary>(rows, stride, n, tile, count): 1 to 8 activation rows into one tile, for <see cref="DotRows"/>; null for a type without.</summary>
        public delegate*<byte*, nint, int, byte*, int, void> PackActivationRows { get; init; }
        /// <summary>(group, tile, n, y, yStride, activationRows): 8 weight rows x 1 to 8 activation rows (generation, small batches).</summary>
        public delegate*<byte*, byte*, int, float*, nint, int, void> DotRows { get; init; }
    }

    /// <summary>The repacked kernel of <paramref name="type"/>, or a default one (no pointers) for a type without.</summary>
    internal static Kernel For(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => new Kernel
        {
            PackActivationTile = &Q4_0RowGroups.PackActivationTile, PackedTileBytes = &Q8Products.PackedTileBytes,
            Dot8x8 = &Q4_0RowGroups.Dot8x8, Repack = &Q4_0RowGroups.Repack, GroupBytes = &Q4_0RowGroups.GroupBytes, Fits = &Q4_0RowGroups.Fits,
        },
        GgmlType.Q4_K => new Kernel
        {
            PackActivationTile = &Q4KRowGroups.PackActivationTile, PackedTileBytes = &Q4KRowGroups.PackedTileBytes,
            Dot8x8 = &Q4KRowGroups.Dot8x8, Repack = &Q4KRowGroups.Repack, GroupBytes = &Q4KRowGroups.GroupBytes, Fits = &Q4KRowGroups.Fits,
            PackActivationRows = &Q4KRowGroups.PackActivationRows, DotRows = &Q4KRowGroups.DotRows,
        },
        _ => default,
    };

    /// <summary>True when a matrix of this type and shape has a repacked form on the current path.</summary>
    public static bool Supported(GgmlType type, int rows, int cols)
    {
        var kernel = For(type);
        return Kernels.UseAvx512 && kernel.Fits != null && rows > 0 && rows % GroupRows == 0 && kernel.Fits(cols);
    }

    /// <summary>Bytes of one repacked group of 8 rows of <paramref name="cols"/> values (<see cref="Supported"/>).</summary>
    public static long GroupBytes(GgmlType type, int cols) => For(type).GroupBytes(cols);

    /// <summary>Bytes of the repacked copy of a matrix (<see cref="Supported"/>).</summary>
    public static long Bytes(GgmlType type, int rows, int cols) => rows / GroupRows * GroupBytes(type, cols);

    /// <summary>The repacked copy of [rows x cols] weights, in 64-byte aligned native memory freed by <see cref="Free"/>.</summary>
    public static byte* Create(GgmlType type, byte* weights, int rows, int cols)
    {
        var job = new RepackJob
        {
            Weights = weights, RowBytes = GgmlTypeInfo.RowBytes(type, cols), Cols = cols, Repack = For(type).Repack,
            GroupBytes = GroupBytes(type, cols),
            Groups = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes(type, rows, cols), 64),
        };
        WorkerPool.Run(rows / GroupRows, &RepackGroup, &job);
        return job.Groups;
    }

    public static void Free(byte* groups) => NativeMemory.AlignedFree(groups);

    /// <summary>True when a product has repacked weights of <paramref name="type"/> usable for rows of <paramref name="cols"/> values.</summary>
    internal static bool Usable(in MatMul.Product product, GgmlType type, int cols)
        => product.RowGroups != null && product.Type == type && product.Rows % GroupRows == 0 && Supported(type, GroupRows, cols);

    /// <summary>True when every product has repacked weights of one type usable for rows of <paramref name="cols"/> values on the current path.</summary>
    internal static bool AllRepacked(MatMul.Product* products, int count, int cols)
    {
        for (int p = 0; p < count; p++)
            if (!Usable(products[p], products[0].Type, cols)) return false;
        return true;
    }

    /// <summary>True when every product has repacked weights of one type whose kernel also runs 1 to 7 activation rows.</summary>
    internal static bool AllRepackedForFewRows(MatMul.Product* products, int count, int cols)
        => For(products[0].Type).DotRows != null && AllRepacked(products, count, cols);

    private struct RepackJob
    {
        public byte* Weights;
        public long RowBytes;
        public int Cols;
        public delegate*<byte*, long, int, byte*, void> Repack;
        public long GroupBytes;
        public byte* Groups;
    }

    private static void RepackGroup(void* context, int g)
    {
        var job = (RepackJob*)context;
        job->Repack(job->Weights + (long)g * GroupRows * job->RowBytes, job->RowBytes, job->Cols, job->Groups + g * job->GroupBytes);
    }
}

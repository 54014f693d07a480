using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants;
using QuantLlama.Quants.Tiles;
using QuantLlama.Tensors;

namespace QuantLlama.Compute;

/// <summary>
/// Copies of weight matrices repacked in groups of 8 rows (<see cref="Q4_0RowGroups"/>, <see cref="Q8_0RowGroups"/>)
/// for products over 8 or more activation rows (prompts) on the AVX-512 path, in native memory; the mapped weights
/// still serve single rows and generation. The repacked products give the same bits as the row dot, so a result
/// never depends on which ran.
/// </summary>
internal static unsafe class RepackedWeights
{
    /// <summary>Rows per repacked group, for every type.</summary>
    public const int GroupRows = 8;

    /// <summary>One type's repacked layout and kernels.</summary>
    internal readonly struct Layout
    {
        /// <summary>(rows, rowBytes, n, group): 8 rows of the file's blocks into one repacked group.</summary>
        public delegate*<byte*, long, int, byte*, void> Repack { get; init; }
        /// <summary>(n): bytes of one repacked group of 8 rows.</summary>
        public delegate*<int, long> GroupBytes { get; init; }
        /// <summary>(rows, stride, n, tile): 8 activation rows into the tile form <see cref="Dot8x8"/> reads.</summary>
        public delegate*<byte*, nint, int, byte*, void> PackActivationTile { get; init; }
        /// <summary>(n): bytes of one activation tile.</summary>
        public delegate*<int, long> TileBytes { get; init; }
        /// <summary>(group, tile, n, y, yStride, activationRows): 8 weight rows x 8 activation rows.</summary>
        public delegate*<byte*, byte*, int, float*, nint, int, void> Dot8x8 { get; init; }
    }

    /// <summary>The repacked layout of a type for rows of <paramref name="cols"/> values on this CPU, or null.</summary>
    internal static Layout? For(GgmlType type, int cols) => type switch
    {
        GgmlType.Q4_0 when Q4_0RowGroups.Fits(cols) => new Layout
        {
            Repack = &Q4_0RowGroups.Repack, GroupBytes = &Q4_0RowGroups.GroupBytes,
            PackActivationTile = &Q4_0RowGroups.PackActivationTile, TileBytes = &Q8Products.PackedTileBytes, Dot8x8 = &Q4_0RowGroups.Dot8x8,
        },
        GgmlType.Q8_0 when Q8_0RowGroups.Fits(cols) && AvxVnni.IsSupported => new Layout
        {
            Repack = &Q8_0RowGroups.Repack, GroupBytes = &Q8_0RowGroups.GroupBytes,
            PackActivationTile = &Q8_0RowGroups.PackActivationTile, TileBytes = &Q8_0RowGroups.TileBytes, Dot8x8 = &Q8_0RowGroups.Dot8x8,
        },
        _ => null,
    };

    /// <summary>True when a matrix of this type and shape has a repacked form on the current path.</summary>
    public static bool Supported(GgmlType type, int rows, int cols)
        => Kernels.UseAvx512 && rows > 0 && rows % GroupRows == 0 && For(type, cols) != null;

    /// <summary>Bytes of the repacked copy of a matrix (<see cref="Supported"/>).</summary>
    public static long Bytes(GgmlType type, int rows, int cols) => rows / GroupRows * For(type, cols)!.Value.GroupBytes(cols);

    /// <summary>The repacked copy of [rows x cols] weights, in 64-byte aligned native memory freed by <see cref="Free"/>.</summary>
    public static byte* Create(GgmlType type, byte* weights, int rows, int cols)
    {
        var layout = For(type, cols)!.Value;
        var job = new RepackJob
        {
            Repack = layout.Repack, Weights = weights, RowBytes = GgmlTypeInfo.RowBytes(type, cols), Cols = cols,
            GroupBytes = layout.GroupBytes(cols),
            Groups = Allocate(Bytes(type, rows, cols)),
        };
        WorkerPool.Run(rows / GroupRows, &RepackGroup, &job);
        return job.Groups;
    }

    public static void Free(byte* groups) => NativeMemory.AlignedFree(groups);

    private const int HugePageBytes = 2 << 20;

    /// <summary>
    /// Memory for a repacked copy (freed by <see cref="Free"/>): 64-byte aligned, and on Linux in 2 MiB pages where
    /// the kernel grants them. The copy is written once at load; in 4 KiB pages its page faults cost several times
    /// the copying itself (one fault per 4 KiB: 1.5 s of a 1 GiB Q8_0 copy).
    /// </summary>
    internal static byte* Allocate(long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes < HugePageBytes) return (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        var p = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, HugePageBytes);
        // The whole 2 MiB pages only (the tail keeps 4 KiB pages, so no memory past the copy is touched); a refusal
        // leaves 4 KiB pages.
        _ = madvise(p, (nuint)(bytes & ~(long)(HugePageBytes - 1)), MadviseHugePage);
        return p;
    }

    private const int MadviseHugePage = 14; // MADV_HUGEPAGE

    [DllImport("libc", SetLastError = false)]
    private static extern int madvise(void* address, nuint length, int advice);

    /// <summary>
    /// The layout every product's repacked weights share, usable for rows of <paramref name="cols"/> values on the
    /// current path, or null when one product has none or another type.
    /// </summary>
    internal static Layout? AllRepacked(MatMul.Product* products, int count, int cols)
    {
        if (!Kernels.UseAvx512) return null;
        var type = products[0].Type;
        for (int p = 0; p < count; p++)
            if (products[p].RowGroups == null || products[p].Type != type || products[p].Rows % GroupRows != 0) return null;
        return For(type, cols);
    }

    private struct RepackJob
    {
        public delegate*<byte*, long, int, byte*, void> Repack;
        public byte* Weights;
        public long RowBytes;
        public int Cols;
        public long GroupBytes;
        public byte* Groups;
    }

    private static void RepackGroup(void* context, int g)
    {
        var job = (RepackJob*)context;
        job->Repack(job->Weights + (long)g * GroupRows * job->RowBytes, job->RowBytes, job->Cols, job->Groups + g * job->GroupBytes);
    }
}

using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants;
using QuantLlama.Quants.Tiles;
using QuantLlama.Tensors;

namespace QuantLlama.Compute;

/// <summary>
/// Copies of weight matrices repacked in groups of 8 rows (<see cref="Q4_0RowGroups"/>, <see cref="Q4KRowGroups"/>,
/// <see cref="Q8_0RowGroups"/>) on the AVX-512 path, in native memory: products over them run 8 weight rows x 1 to 8 activation rows per call
/// (prompts' tiles of 8, a few conversations decoding together, generation's single row). Each type's kernel gives
/// the row dot's bits, so a result never depends on which ran or how the rows were batched.
/// </summary>
internal static unsafe class RepackedWeights
{
    /// <summary>Weight rows per repacked group, for every type.</summary>
    internal const int GroupRows = 8;

    /// <summary>A type's repacked layout and its kernel over 8 weight rows x 1 to 8 activation rows.</summary>
    internal readonly struct Kernel
    {
        /// <summary>(rows, rowBytes, n, group): 8 rows of the file's blocks into one group.</summary>
        public delegate*<byte*, long, int, byte*, void> Repack { get; init; }
        /// <summary>(n): bytes of one group of rows of n values.</summary>
        public delegate*<int, long> GroupBytes { get; init; }
        /// <summary>(n): whether rows of n values can be repacked.</summary>
        public delegate*<int, bool> Fits { get; init; }
        /// <summary>(n): bytes of one activation tile (8 rows).</summary>
        public delegate*<int, long> TileBytes { get; init; }
        /// <summary>(rows, stride, n, tile, count): 1 to 8 activation rows into one tile.</summary>
        public delegate*<byte*, nint, int, byte*, int, void> PackActivationRows { get; init; }
        /// <summary>(group, tile, n, y, yStride, activationRows): one group against the tile's 1 to 8 rows.</summary>
        public delegate*<byte*, byte*, int, float*, nint, int, void> Dot { get; init; }
    }

    /// <summary>The repacked kernel of <paramref name="type"/>, or a default one (no pointers) for a type without.</summary>
    internal static Kernel For(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => new Kernel
        {
            Repack = &Q4_0RowGroups.Repack, GroupBytes = &Q4_0RowGroups.GroupBytes, Fits = &Q4_0RowGroups.Fits,
            TileBytes = &Q8Products.PackedTileBytes, PackActivationRows = &Q4_0RowGroups.PackActivationRows, Dot = &Q4_0RowGroups.DotRows,
        },
        GgmlType.Q4_K => new Kernel
        {
            Repack = &Q4KRowGroups.Repack, GroupBytes = &Q4KRowGroups.GroupBytes, Fits = &Q4KRowGroups.Fits,
            TileBytes = &Q4KRowGroups.PackedTileBytes, PackActivationRows = &Q4KRowGroups.PackActivationRows, Dot = &Q4KRowGroups.DotRows,
        },
        GgmlType.Q8_0 when AvxVnni.IsSupported => new Kernel
        {
            Repack = &Q8_0RowGroups.Repack, GroupBytes = &Q8_0RowGroups.GroupBytes, Fits = &Q8_0RowGroups.Fits,
            TileBytes = &Q8_0RowGroups.TileBytes, PackActivationRows = &Q8_0RowGroups.PackActivationRows, Dot = &Q8_0RowGroups.DotRows,
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
        // The whole 2 MiB pages only (the tail keeps 4 KiB pages, so no memory past the copy is touched); a refusal,
        // or a C library without madvise, leaves 4 KiB pages.
        try
        {
            _ = madvise(p, (nuint)(bytes & ~(long)(HugePageBytes - 1)), MadviseHugePage);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
        return p;
    }

    private const int MadviseHugePage = 14; // MADV_HUGEPAGE

    [DllImport("libc", SetLastError = false)]
    private static extern int madvise(void* address, nuint length, int advice);

    /// <summary>True when a product has repacked weights of <paramref name="type"/> usable for rows of <paramref name="cols"/> values.</summary>
    internal static bool Usable(in MatMul.Product product, GgmlType type, int cols)
        => product.RowGroups != null && product.Type == type && product.Rows % GroupRows == 0 && Supported(type, GroupRows, cols);

    /// <summary>
    /// The kernel when every product has repacked weights of one type usable for activation rows of
    /// <paramref name="cols"/> values on the current path, else null.
    /// </summary>
    internal static Kernel? AllRepacked(MatMul.Product* products, int count, int cols)
    {
        for (int p = 0; p < count; p++)
            if (!Usable(products[p], products[0].Type, cols)) return null;
        return For(products[0].Type);
    }

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

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QuantLlama.Quants;
using QuantLlama.Quants.Tiles;
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
/// tiles of 8 (where the type has an 8-row kernel), then 4, per weight row (one weight decode serves 8 or 4 dots)
/// and gives the same bits as MatVec per row (F32 matrices of a multiple of 4 rows sum each row in tinyBLAS's order,
/// as llama.cpp's prompts do, see <see cref="TypeKernel.DotOverRowQuads"/>). For Q4_0, Q8_0 and Q4_K the 8 activation rows are first packed into
/// one tile with a row per vector lane (see <see cref="Quants.Q8Products"/> and <see cref="Quants.KQuants.Q4_K.Dot8Packed"/>).
/// Products that carry a repacked copy of their weights (<see cref="Product.RowGroups"/>, <see cref="RepackedWeights"/>)
/// run 8 weight rows x up to 8 activation rows per call over it instead, generation's single row included, with the
/// same bits. Without one, Q4_0 runs
/// 2 to 4 activation rows through a quad tile that decodes each weight block once for all of them
/// (<see cref="Quants.Tiles.Q4_0QuadTiles"/>).
/// </remarks>
public static unsafe class MatMul
{
    /// <summary>Below this many multiply-adds a product runs on the calling thread alone.</summary>
    private const long ParallelThreshold = 1 << 17;

    private const int Tile = 4;
    private const int WideTile = 8;

    /// <summary>
    /// From this many rows a packed 8-row tile with zero rows is faster than one row dot per row: the tile costs
    /// 3.5 to 6 row dots (2048 x 2048, one thread, against 95–100 µs per row: Q4_0 AVX2 400 µs, AVX-VNNI 350 µs,
    /// AVX-512 330 µs; Q8_0 AVX2 570 µs, AVX-512 440 µs). At 4 rows only Q4_0 and AVX-512's Q4_K would gain.
    /// </summary>
    private const int MinPaddedRows = 5;

    /// <summary>
    /// From this many activation rows products whose weights all have a repacked copy run over it (8 weight rows x up
    /// to 8 activation rows per call, the last tile holding the rows left). 1: a single row reads the copy at least as
    /// fast as the row dot reads the mapped weights (2048 x 2048 from memory, 2 threads: Q4_0 about 45 µs against 60),
    /// and the copied matrices' pages leave the mapping at load, so every product reads the copy. Settable for
    /// benchmarks comparing the two.
    /// </summary>
    internal static int MinRepackedRows = 1;

    /// <summary>
    /// From this many rows (and below <see cref="MinPaddedRows"/>) a type with quad tiles (<see cref="TypeKernel.Dot4PackedAvx2"/>)
    /// runs them: one weight decode for up to 4 activation rows.
    /// </summary>
    private const int MinQuadRows = 2;

    /// <summary>False: batched products use only the 4-row tiles (for benchmarks comparing the two).</summary>
    internal static bool WideTiles = true;

    [ThreadStatic] private static byte[]? _scratch;
    [ThreadStatic] private static byte[]? _tileScratch;
    [ThreadStatic] private static byte[]? _paddedScratch;

    /// <summary>One weight matrix of a group of products that share an activation (Q/K/V, gate/up).</summary>
    internal struct Product
    {
        public GgmlType Type;
        public byte* Weights;
        public int Rows;
        /// <summary>Output, n x Rows row-major.</summary>
        public float* Y;
        /// <summary>The same weights repacked in groups of 8 rows for prompts (<see cref="RepackedWeights"/>), or null.</summary>
        public byte* RowGroups;

        public Product(GgmlType type, byte* weights, int rows, float* y, byte* rowGroups = null)
        {
            Type = type;
            Weights = weights;
            Rows = rows;
            Y = y;
            RowGroups = rowGroups;
        }
    }

    private struct Part
    {
        public TypeKernel Kernel;
        public byte* Weights;
        public long WeightRowBytes;
        public float* Y;
        public int Rows;
        /// <summary>Index of this matrix's first row among the group's concatenated rows.</summary>
        public int FirstRow;
        public bool UseDot4;
        public bool UseDot8;
        /// <summary>8-row tiles over activation tiles packed by the kernel's PackActivationTile.</summary>
        public bool UseDot8Packed;
        /// <summary>Quad tiles (up to 4 rows each) over activation quads packed by the kernel's PackActivationQuad.</summary>
        public bool UseDot4Packed;
        /// <summary>The type's public row dot, for single rows and tile remainders.</summary>
        public delegate*<byte*, byte*, int, float> Dot;
        /// <summary>Repacked weights (8 weight rows x up to 8 activation rows per call) in place of the packed tiles, or null.</summary>
        public byte* RowGroups;
        public long RowGroupBytes;
        /// <summary>The repacked kernel over <see cref="RowGroups"/> (<see cref="RepackedWeights.Kernel.Dot"/>).</summary>
        public delegate*<byte*, byte*, int, float*, nint, int, void> RowGroupDot;
    }

    private struct Job
    {
        public Part* Parts;
        public int PartCount;
        public TypeKernel ActivationKernel;
        public byte* Activation;
        public long ActivationRowBytes;
        public float* X;
        public int TotalRows;
        public int Cols;
        public int N;
        public int RowsPerChunk;
        /// <summary>Activation rows 8i..8i+7 packed as one tile at PackedTiles + i * PackedTileBytes, when a part uses packed tiles.</summary>
        public byte* PackedTiles;
        public long PackedTileBytes;
        public delegate*<byte*, nint, int, byte*, void> Packer;
        /// <summary>The repacked kernel's packer of 1 to 8 activation rows into one tile, when the parts are repacked.</summary>
        public delegate*<byte*, nint, int, byte*, int, void> RowsPacker;
        /// <summary>Activation rows 4i..4i+3 (zero rows past N) packed as one quad at PackedQuads + i * PackedQuadBytes, when a part uses quad tiles.</summary>
        public byte* PackedQuads;
        public long PackedQuadBytes;
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
        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            var product = new Product(type, weights, rows, yp);
            Group(&product, 1, cols, xp, n);
        }
    }

    /// <summary>
    /// Several products over the same activation X (n x cols): the activation is quantized once per distinct
    /// partner type (once in all for Q/K/V or gate/up of one type family) and all rows go out in one dispatch to the
    /// worker pool, so a layer costs a few synchronisations instead of one per matrix. Each output element is the
    /// same kernel call as in <see cref="MatMat"/>, so results are bit-identical.
    /// </summary>
    internal static void Group(Product* products, int count, int cols, float* x, int n)
    {
        if (count <= 0 || n <= 0) return;
        var first = QuantKernels.Get(products[0].Type);
        // Repacked weights (every product's, of one type) take every activation row count, generation's single row included.
        var repacked = n >= MinRepackedRows && WideTiles && TilesOn(Kernels.Path) ? RepackedWeights.AllRepacked(products, count, cols) : null;
        if (n >= MinPaddedRows && n < WideTile && WideTiles && TilesOn(Kernels.Path) && repacked == null && PackedTilesForAll(products, count))
        {
            PaddedToOneTile(products, count, cols, x, n);
            return;
        }
        bool shared = true;
        for (int p = 1; p < count; p++)
            shared &= QuantKernels.Get(products[p].Type).SharesActivationWith(first);
        if (!shared)
        {
            for (int p = 0; p < count; p++) Group(products + p, 1, cols, x, n);
            return;
        }
        if (n >= MinRepackedRows && WideTiles && TilesOn(Kernels.Path) && SplitRepacked(products, count, cols, x, n)) return;
        const int MaxParts = 4;
        if (count > MaxParts)
        {
            Group(products, MaxParts, cols, x, n);
            Group(products + MaxParts, count - MaxParts, cols, x, n);
            return;
        }

        Part* parts = stackalloc Part[MaxParts];
        int totalRows = 0;
        bool dot4Path = n >= Tile && TilesOn(Kernels.Path) && repacked == null;
        bool dot8Path = n >= WideTile && TilesOn(Kernels.Path) && WideTiles && repacked == null;
        bool quadPath = n >= MinQuadRows && n < MinPaddedRows && TilesOn(Kernels.Path) && WideTiles && repacked == null;
        TypeKernel packer = default, quadPacker = default; // the first part's with packed tiles or quads, if any (see below)
        for (int p = 0; p < count; p++)
        {
            var kernel = QuantKernels.Get(products[p].Type).OnCurrentPath();
            parts[p] = new Part
            {
                Kernel = kernel, Weights = products[p].Weights, WeightRowBytes = GgmlTypeInfo.RowBytes(kernel.WeightType, cols),
                Y = products[p].Y, Rows = products[p].Rows, FirstRow = totalRows, UseDot4 = dot4Path && kernel.Dot4Avx2 != null,
                UseDot8 = dot8Path && kernel.Dot8Avx2 != null,
                UseDot8Packed = dot8Path && kernel.Dot8PackedAvx2 != null,
                UseDot4Packed = quadPath && kernel.Dot4PackedAvx2 != null,
                // By the matrix's shape alone, never the batch's, so a row's bits do not depend on its batch.
                Dot = products[p].Rows % 4 == 0 && kernel.DotOverRowQuads != null ? kernel.DotOverRowQuads : kernel.Dot,
            };
            if (parts[p].UseDot8Packed && packer.PackActivationTile == null) packer = kernel;
            if (parts[p].UseDot4Packed && quadPacker.PackActivationQuad == null) quadPacker = kernel;
            totalRows += products[p].Rows;
        }
        if (totalRows == 0) return;
        if (repacked is { } groups)
        {
            // Every part has repacked weights of one type: tiles of 8 activation rows, the last one of the rows left,
            // in that type's one tile form for them all.
            for (int p = 0; p < count; p++)
            {
                parts[p].RowGroups = products[p].RowGroups;
                parts[p].RowGroupBytes = groups.GroupBytes(cols);
                parts[p].RowGroupDot = groups.Dot;
            }
        }
        long activationRowBytes = first.ActivationRowBytes(cols);
        bool parallel = (long)totalRows * cols * n >= ParallelThreshold && WorkerPool.ThreadCount > 1;
        var job = new Job
        {
            Parts = parts, PartCount = count, ActivationKernel = first, ActivationRowBytes = activationRowBytes,
            X = x, TotalRows = totalRows, Cols = cols, N = n,
        };
        if (first.ActivationType == GgmlType.F32)
        {
            job.Activation = (byte*)x; // f32 weights take the activation as it is
        }
        else
        {
            job.Activation = Scratch(ref _scratch, activationRowBytes * n);
            if (parallel && n >= 8) WorkerPool.Run(n, &QuantizeActivationRow, &job);
            else for (int i = 0; i < n; i++) QuantizeActivationRow(&job, i);
            if (repacked is { } tileForm)
            {
                job.RowsPacker = tileForm.PackActivationRows;
                job.PackedTileBytes = tileForm.TileBytes(cols); // 8 rows; the last tile may hold fewer
                int tiles = (n + WideTile - 1) / WideTile;
                job.PackedTiles = Scratch(ref _tileScratch, job.PackedTileBytes * tiles);
                if (parallel && tiles >= 2) WorkerPool.Run(tiles, &PackRepackedTile, &job);
                else for (int t = 0; t < tiles; t++) PackRepackedTile(&job, t);
            }
            else if (packer.PackActivationTile != null)
            {
                // Packed kernels over one activation form read one tile form (Q8Products' for Q4_0/Q8_0, Q4_K's for Q8_K),
                // so the first one's packer serves the whole group.
                job.Packer = packer.PackActivationTile;
                job.PackedTileBytes = packer.PackedTileBytes(cols);
                int tiles = n / WideTile;
                job.PackedTiles = Scratch(ref _tileScratch, job.PackedTileBytes * tiles);
                if (parallel && tiles >= 2) WorkerPool.Run(tiles, &PackActivationTile, &job);
                else for (int t = 0; t < tiles; t++) PackActivationTile(&job, t);
            }
            if (quadPacker.PackActivationQuad != null)
            {
                int quads = (n + 3) / 4;
                job.PackedQuadBytes = quadPacker.PackedQuadBytes(cols);
                job.PackedQuads = Scratch(ref _tileScratch, job.PackedQuadBytes * quads);
                for (int q = 0; q < quads; q++)
                    quadPacker.PackActivationQuad(job.Activation + 4L * q * activationRowBytes, (nint)activationRowBytes,
                        Math.Min(4, n - 4 * q), cols, job.PackedQuads + q * job.PackedQuadBytes);
            }
        }

        if (!parallel)
        {
            job.RowsPerChunk = totalRows;
            RunChunk(&job, 0);
            return;
        }
        // Enough chunks for load balance (a busy machine stalls threads unevenly), each big enough that claiming it
        // costs little; chunk edges on multiples of 8 rows.
        int chunks = Math.Min((totalRows + 7) / 8, WorkerPool.ThreadCount * 8);
        job.RowsPerChunk = ((totalRows + chunks - 1) / chunks + 7) & ~7;
        chunks = (totalRows + job.RowsPerChunk - 1) / job.RowsPerChunk;
        WorkerPool.Run(chunks, &RunChunk, &job);
    }

    /// <summary>
    /// A group where some matrices have repacked weights and others not (Q4_K_M's Q and K beside a Q6_K V) reads two
    /// activation tile forms: it runs as two groups, the repacked matrices of the first one's type, then the rest.
    /// False (nothing run) when the group is all or none of one repacked type.
    /// </summary>
    private static bool SplitRepacked(Product* products, int count, int cols, float* x, int n)
    {
        if (count < 2) return false;
        int first = 0;
        while (first < count && !RepackedWeights.Usable(products[first], products[first].Type, cols)) first++;
        if (first == count) return false;
        var type = products[first].Type;
        var split = stackalloc Product[count];
        int repacked = 0;
        for (int p = 0; p < count; p++)
            if (RepackedWeights.Usable(products[p], type, cols)) split[repacked++] = products[p];
        if (repacked == count) return false;
        int rest = repacked;
        for (int p = 0; p < count; p++)
            if (!RepackedWeights.Usable(products[p], type, cols)) split[rest++] = products[p];
        Group(split, repacked, cols, x, n);
        Group(split + repacked, count - repacked, cols, x, n);
        return true;
    }

    private static bool PackedTilesForAll(Product* products, int count)
    {
        for (int p = 0; p < count; p++)
            if (QuantKernels.Get(products[p].Type).Dot8PackedAvx2 == null) return false;
        return true;
    }

    /// <summary>
    /// 5 to 7 activation rows (a few conversations decoding together) over weights with packed 8-row tiles: the rows
    /// are padded with zero rows to one tile, so each weight block is decoded once for all of them instead of once
    /// per row; the padding's outputs are dropped. Each real row's result is the tile kernel's, which is the row
    /// dot's to the bit, so padding changes no bits.
    /// </summary>
    private static void PaddedToOneTile(Product* products, int count, int cols, float* x, int n)
    {
        long xBytes = (long)WideTile * cols * sizeof(float);
        long yFloats = 0;
        for (int p = 0; p < count; p++) yFloats += (long)WideTile * products[p].Rows;
        byte* scratch = Scratch(ref _paddedScratch, xBytes + yFloats * sizeof(float));
        float* px = (float*)scratch;
        Buffer.MemoryCopy(x, px, xBytes, (long)n * cols * sizeof(float));
        new Span<float>(px + (long)n * cols, (WideTile - n) * cols).Clear();
        var padded = stackalloc Product[count];
        float* py = (float*)(scratch + xBytes);
        for (int p = 0; p < count; p++)
        {
            padded[p] = products[p] with { Y = py };
            py += (long)WideTile * products[p].Rows;
        }
        Group(padded, count, cols, px, WideTile);
        for (int p = 0; p < count; p++)
        {
            long bytes = (long)n * products[p].Rows * sizeof(float);
            Buffer.MemoryCopy(padded[p].Y, products[p].Y, bytes, bytes);
        }
    }

    /// <summary>
    /// Tiles run on both x86 paths. The types with tiles have one row dot for both (the AVX2 one); the AVX-512 path
    /// runs 512-bit packed tiles for Q4_0 and Q4_K and the AVX2 tiles for the rest (<see cref="TypeKernel.OnCurrentPath"/>),
    /// all with that row dot's arithmetic, so a batch, single rows and the public row dot give the same bits.
    /// </summary>
    internal static bool TilesOn(KernelPath path) => path is KernelPath.Avx2 or KernelPath.Avx512;

    private static void QuantizeActivationRow(void* context, int i)
    {
        var job = (Job*)context;
        job->ActivationKernel.QuantizeActivation(job->X + (long)i * job->Cols, job->Activation + i * job->ActivationRowBytes, job->Cols);
    }

    private static void PackActivationTile(void* context, int tile)
    {
        var job = (Job*)context;
        job->Packer(job->Activation + (long)tile * WideTile * job->ActivationRowBytes, (nint)job->ActivationRowBytes, job->Cols,
            job->PackedTiles + tile * job->PackedTileBytes);
    }

    private static void PackRepackedTile(void* context, int tile)
    {
        var job = (Job*)context;
        job->RowsPacker(job->Activation + (long)tile * WideTile * job->ActivationRowBytes, (nint)job->ActivationRowBytes, job->Cols,
            job->PackedTiles + tile * job->PackedTileBytes, Math.Min(WideTile, job->N - tile * WideTile));
    }

    private static void RunChunk(void* context, int chunk)
    {
        var job = (Job*)context;
        int g0 = chunk * job->RowsPerChunk;
        int g1 = Math.Min(job->TotalRows, g0 + job->RowsPerChunk);
        for (int p = 0; p < job->PartCount; p++)
        {
            var part = job->Parts + p;
            int r0 = Math.Max(g0 - part->FirstRow, 0);
            int r1 = Math.Min(g1 - part->FirstRow, part->Rows);
            if (r0 < r1) RunRows(job, part, r0, r1);
        }
    }

    /// <summary>
    /// Weight bytes per pass over the activation tiles in a batched product. A chunk
    /// of a large matrix (gate/up: 700 rows per chunk on 2 threads) does not fit in L2, so each of the 64 tiles of a
    /// 512-row batch would fetch it again from L3; a 64 KiB block stays in L2 while all tiles pass over it, and the
    /// activation (about 1 MiB) is fetched once per block instead.
    /// </summary>
    internal const long RowBlockBytes = 64 * 1024;

    private static void RunRows(Job* job, Part* part, int r0, int r1)
    {
        if (job->N >= Tile)
        {
            // A block of weight rows small enough to stay in L2 while every activation tile passes over it (whole
            // groups of 8 rows for repacked weights).
            int block = (int)Math.Max(8, RowBlockBytes / part->WeightRowBytes);
            if (part->RowGroups != null) block &= ~7;
            for (int rb = r0; rb < r1; rb += block) RunRowBlock(job, part, rb, Math.Min(r1, rb + block));
        }
        else RunRowBlock(job, part, r0, r1);
    }

    private static void RunRowBlock(Job* job, Part* part, int r0, int r1)
    {
        int n = job->N, cols = job->Cols, rows = part->Rows;
        var dot = part->Dot;
        long aBytes = job->ActivationRowBytes, wBytes = part->WeightRowBytes;
        byte* weights = part->Weights;
        int i = 0;
        if (part->RowGroups != null)
        {
            // r0 and r1 are multiples of 8: chunk and block edges are, and so is every repacked part's row count.
            for (; i < n; i += WideTile)
            {
                byte* tile = job->PackedTiles + (i / WideTile) * job->PackedTileBytes;
                float* y = part->Y + (long)i * rows;
                int count = Math.Min(WideTile, n - i);
                for (int r = r0; r < r1; r += RepackedWeights.GroupRows)
                    part->RowGroupDot(part->RowGroups + (r / RepackedWeights.GroupRows) * part->RowGroupBytes, tile, cols, y + r, rows, count);
            }
        }
        else if (part->UseDot4Packed)
        {
            var dot4 = part->Kernel.Dot4PackedAvx2;
            for (; i < n; i += 4)
            {
                byte* quad = job->PackedQuads + (i / 4) * job->PackedQuadBytes;
                float* y = part->Y + (long)i * rows;
                int count = Math.Min(4, n - i);
                for (int r = r0; r < r1; r++)
                    dot4(weights + r * wBytes, quad, cols, y + r, rows, count);
            }
        }
        else if (part->UseDot8Packed)
        {
            var dot8 = part->Kernel.Dot8PackedAvx2;
            for (; i + WideTile <= n; i += WideTile)
            {
                byte* tile = job->PackedTiles + (i / WideTile) * job->PackedTileBytes;
                float* y = part->Y + (long)i * rows;
                for (int r = r0; r < r1; r++)
                    dot8(weights + r * wBytes, tile, cols, y + r, rows);
            }
        }
        if (part->UseDot8) i = RunTiles(part->Kernel.Dot8Avx2, WideTile, job, part, r0, r1, i);
        if (part->UseDot4) i = RunTiles(part->Kernel.Dot4Avx2, Tile, job, part, r0, r1, i);
        for (; i < n; i++)
        {
            byte* a = job->Activation + i * aBytes;
            float* y = part->Y + (long)i * rows;
            for (int r = r0; r < r1; r++) y[r] = dot(weights + r * wBytes, a, cols);
        }
    }

    /// <summary>Activation rows from <paramref name="i"/> in tiles of <paramref name="tileRows"/> against rows r0..r1; returns the first row left.</summary>
    private static int RunTiles(delegate*<byte*, byte*, nint, int, float*, nint, void> tile, int tileRows, Job* job, Part* part, int r0, int r1, int i)
    {
        long aBytes = job->ActivationRowBytes, wBytes = part->WeightRowBytes;
        int rows = part->Rows;
        for (; i + tileRows <= job->N; i += tileRows)
        {
            byte* a = job->Activation + i * aBytes;
            float* y = part->Y + (long)i * rows;
            for (int r = r0; r < r1; r++)
                tile(part->Weights + r * wBytes, a, (nint)aBytes, job->Cols, y + r, rows);
        }
        return i;
    }

    /// <summary>One of the calling thread's activation buffers, grown (pinned) when too small; never shrinks.</summary>
    private static byte* Scratch(ref byte[]? slot, long bytes)
    {
        var buffer = slot;
        if (buffer == null || buffer.Length < bytes)
        {
            long size = Math.Max(bytes, 4096);
            if (size > Array.MaxLength) throw new ArgumentException("activation too large");
            buffer = slot = GC.AllocateUninitializedArray<byte>((int)size, pinned: true);
        }
        return (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
    }
}

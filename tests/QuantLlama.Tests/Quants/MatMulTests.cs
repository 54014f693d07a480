using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// MatVec/MatMat over every type against the dequantize-then-float reference (double sums), within the error
/// the activation's quantization to the partner type can cause; MatMat equal to MatVec bit for bit; results
/// independent of the thread count.
/// </summary>
[Collection("KernelSettings")]
public class MatMulTests
{
    public static readonly TheoryData<GgmlType> WeightTypes = new()
    {
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q8_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
    };

    private static bool IsKQuant(GgmlType type) => GgmlTypeInfo.BlockSize(type) == GgmlTypeInfo.QK_K;

    [Theory]
    [MemberData(nameof(WeightTypes))]
    public unsafe void MatVecEqualsDequantizedReferenceWithinActivationError(GgmlType type)
    {
        var kernel = QuantKernels.Get(type);
        var shapes = IsKQuant(type) ? new[] { (37, 256), (300, 512), (5, 256), (160, 1024) } : new[] { (37, 256), (300, 96), (5, 32), (160, 1024) };
        foreach (var (rows, cols) in shapes)
        {
            var wf = TestRows.Random(rows * cols, 1);
            var w = new byte[GgmlTypeInfo.RowBytes(type, cols) * rows];
            Quantizer.QuantizeRow(type, wf, w);
            var deq = new float[rows * cols];
            Dequantizer.DequantizeRow(type, w, deq);
            var x = TestRows.Random(cols, 2);
            var y = new float[rows];
            fixed (byte* wp = w) MatMul.MatVec(type, wp, rows, cols, x, y);
            for (int r = 0; r < rows; r++)
            {
                var wr = deq.AsSpan(r * cols, cols);
                double exact = 0, absSum = 0, bound = 0;
                for (int i = 0; i < cols; i++) { exact += (double)wr[i] * x[i]; absSum += Math.Abs((double)wr[i] * x[i]); }
                bound = ActivationErrorBound(kernel.ActivationType, wr, x) + (cols + 16) * Math.Pow(2, -23) * absSum * 2;
                Assert.True(Math.Abs(y[r] - exact) <= bound, $"{type} {rows}x{cols} row {r}: {y[r]:R} vs {exact:R} (tolerance {bound:R})");
            }
        }
    }

    /// <summary>
    /// Largest change the activation's rounding can make to the dot: Q8 blocks round each value to within
    /// half a step (amax/127)/2 and store the step as fp16 (relative error 2^-11 on up to 127 steps);
    /// F16 and BF16 round each value relatively by 2^-11 and 2^-8.
    /// </summary>
    private static double ActivationErrorBound(GgmlType activation, ReadOnlySpan<float> w, float[] x)
    {
        double bound = 0;
        switch (activation)
        {
            case GgmlType.F32: return 0;
            case GgmlType.F16:
            case GgmlType.BF16:
                double rel = activation == GgmlType.F16 ? Math.Pow(2, -11) : Math.Pow(2, -8);
                for (int i = 0; i < x.Length; i++) bound += Math.Abs(w[i] * (double)x[i]) * rel;
                return bound * 1.01 + 1e-30;
            default:
                // Q8_0/Q8_1 blocks of 32; Q8_K blocks of 256 (its scale is an f32, so the fp16 term only adds slack).
                int block = activation == GgmlType.Q8_K ? GgmlTypeInfo.QK_K : 32;
                for (int b = 0; b < x.Length / block; b++)
                {
                    double amax = 0, wabs = 0;
                    for (int i = b * block; i < b * block + block; i++) { amax = Math.Max(amax, Math.Abs(x[i])); wabs += Math.Abs(w[i]); }
                    double step = amax / 127;
                    bound += wabs * (step / 2 + 127 * step * Math.Pow(2, -11));
                }
                return bound * 1.01 + 1e-30;
        }
    }

    [Theory]
    [MemberData(nameof(WeightTypes))]
    public void MatMatEqualsMatVecBitForBitOnEveryPath(GgmlType type)
    {
        // 11 rows: one packed tile and a remainder; 6: padded to one tile where the type has packed tiles; 3: row dots.
        foreach (int n in new[] { 11, 6, 3 }) MatMatEqualsMatVec(type, n);
    }

    private static unsafe void MatMatEqualsMatVec(GgmlType type, int n)
    {
        const int rows = 70;
        // Float types get a row length with a tail after their 16-value loops.
        int cols = IsKQuant(type) ? 512 : GgmlTypeInfo.BlockSize(type) == 1 ? 330 : 320;
        var w = new byte[GgmlTypeInfo.RowBytes(type, cols) * rows];
        Quantizer.QuantizeRow(type, TestRows.Random(rows * cols, 3), w);
        var x = TestRows.Random(n * cols, 4);
        var saved = Kernels.Path;
        try
        {
            foreach (var path in Kernels.Supported)
            {
                Kernels.Path = path;
                var y = new float[n * rows];
                fixed (byte* wp = w)
                {
                    MatMul.MatMat(type, wp, rows, cols, x, n, y);
                    for (int i = 0; i < n; i++)
                    {
                        var yi = new float[rows];
                        MatMul.MatVec(type, wp, rows, cols, x.AsSpan(i * cols, cols), yi);
                        for (int r = 0; r < rows; r++)
                            Assert.True(BitConverter.SingleToInt32Bits(yi[r]) == BitConverter.SingleToInt32Bits(y[i * rows + r]),
                                $"{type} {path} activation {i} row {r}: MatVec {yi[r]:R}, MatMat {y[i * rows + r]:R}");
                    }
                }
            }
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    /// <summary>
    /// Weights that end exactly where an inaccessible page begins, as the last tensor of a mapped file may: every
    /// kernel (row dots, tiles) must read no byte past the weights, and the row dots' requests for the weights 2 KiB
    /// ahead (<see cref="X86Simd.PrefetchWeights"/>) must not fault there. A read of the guard page kills the test run;
    /// the results must equal those over a managed copy of the same bytes, bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(WeightTypes))]
    public unsafe void KernelsReadNothingPastTheWeights(GgmlType type)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "the guard page below uses Linux mmap/mprotect");
        int cols = IsKQuant(type) ? 512 : 96;
        const int rows = 11, n = 9;
        long bytes = GgmlTypeInfo.RowBytes(type, cols) * rows;
        var w = new byte[bytes];
        Quantizer.QuantizeRow(type, TestRows.Random(rows * cols, 31), w);
        var x = TestRows.Random(n * cols, 32);
        const long page = 4096;
        long dataPages = (bytes + page - 1) / page;
        nint map = GuardPage.mmap(0, (nuint)((dataPages + 1) * page), 3 /* read, write */, 0x22 /* private, anonymous */, -1, 0);
        Assert.NotEqual(-1, (long)map);
        try
        {
            Assert.Equal(0, GuardPage.mprotect(map + (nint)(dataPages * page), (nuint)page, 0 /* none */));
            byte* atEnd = (byte*)map + dataPages * page - bytes;
            w.AsSpan().CopyTo(new Span<byte>(atEnd, (int)bytes));
            var expectedVec = new float[rows];
            var expectedMat = new float[n * rows];
            fixed (byte* wp = w)
            {
                MatMul.MatVec(type, wp, rows, cols, x.AsSpan(0, cols), expectedVec);
                MatMul.MatMat(type, wp, rows, cols, x, n, expectedMat);
            }
            var y = new float[rows];
            var yMat = new float[n * rows];
            MatMul.MatVec(type, atEnd, rows, cols, x.AsSpan(0, cols), y);
            MatMul.MatMat(type, atEnd, rows, cols, x, n, yMat);
            Assert.Equal(expectedVec, y);
            Assert.Equal(expectedMat, yMat);
        }
        finally
        {
            GuardPage.munmap(map, (nuint)((dataPages + 1) * page));
        }
    }

    private static class GuardPage
    {
        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
        public static extern nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);
        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
        public static extern int mprotect(nint addr, nuint length, int prot);
        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
        public static extern int munmap(nint addr, nuint length);
    }

    public static readonly TheoryData<GgmlType> TiledTypes = new() { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K };

    /// <summary>
    /// Batch sizes around the tile heights (8-row tiles, then 4-row tiles, then single rows), block counts that are
    /// odd or not a multiple of 8 (the kernels' accumulator splits and tails), long rows, matrices larger than
    /// one block of rows (<see cref="MatMul.RowBlockBytes"/>) and the thread split: every output equals MatVec on its
    /// row bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(TiledTypes))]
    public unsafe void MatMatTilesEqualMatVecForEveryBatchSize(GgmlType type)
    {
        bool k = IsKQuant(type);
        foreach (var (rows, cols) in k ? new[] { (13, 256), (7, 2304), (300, 512), (5, 5632) } : new[] { (13, 96), (7, 2080), (300, 1024) })
        {
            var w = new byte[GgmlTypeInfo.RowBytes(type, cols) * rows];
            Quantizer.QuantizeRow(type, TestRows.Random(rows * cols, 7), w);
            foreach (int n in new[] { 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 23 })
            {
                var x = TestRows.Random(n * cols, 8 + n);
                var y = new float[n * rows];
                var yi = new float[rows];
                fixed (byte* wp = w)
                {
                    MatMul.MatMat(type, wp, rows, cols, x, n, y);
                    for (int i = 0; i < n; i++)
                    {
                        MatMul.MatVec(type, wp, rows, cols, x.AsSpan(i * cols, cols), yi);
                        for (int r = 0; r < rows; r++)
                            Assert.True(BitConverter.SingleToInt32Bits(yi[r]) == BitConverter.SingleToInt32Bits(y[i * rows + r]),
                                $"{type} {rows}x{cols} n={n} activation {i} row {r}: MatVec {yi[r]:R}, MatMat {y[i * rows + r]:R}");
                    }
                }
            }
        }
    }

    /// <summary>
    /// Each of Q4_0's packed tiles (AVX2, AVX-VNNI, AVX-512) gives every activation row the AVX2 row dot's bits, for
    /// block counts with every tail length. Called directly: MatMul runs only the fastest tile the CPU has, so on a
    /// CPU with AVX-VNNI or AVX-512 it never reaches the plain AVX2 one.
    /// </summary>
    [Fact]
    public unsafe void Q4_0TilesGiveTheRowDotsBitsForEveryTail()
    {
        Assert.SkipUnless(Kernels.IsSupported(KernelPath.Avx2), "needs AVX2");
        var rng = new Random(23);
        int checkedTiles = 0;
        foreach (int nb in new[] { 1, 2, 3, 7, 8, 9, 14, 16, 23 })
        {
            int n = nb * Q4_0.BlockSize, activationBytes = (int)Q8Products.ActivationRowBytes(n);
            var w = new byte[nb * Q4_0.BlockBytes];
            Q4_0.Quantize(Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(), w);
            var activations = new byte[8 * activationBytes]; // [row][Q8_0 blocks | scales | sums]
            var tile = new byte[Q8Products.PackedTileBytes(n)];
            fixed (byte* wp = w, ap = activations, tp = tile)
            {
                for (int r = 0; r < 8; r++)
                {
                    fixed (float* xp = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray())
                        Q8Products.QuantizeActivation(xp, ap + r * activationBytes, n);
                }
                var expected = new float[8];
                for (int r = 0; r < 8; r++)
                {
                    byte* row = ap + r * activationBytes;
                    expected[r] = Q4_0.DotAvx2(wp, row, Q8Products.BlockInfo(row, n), n);
                }
                CheckTile("AVX2", &Q8Products.PackActivationTile, &Q4_0.Dot8PackedAvx2, wp, ap, activationBytes, tp, n, expected);
                if (System.Runtime.Intrinsics.X86.AvxVnni.IsSupported)
                    CheckTile("AVX-VNNI", &Q8Products.PackActivationTile, &Q4_0.Dot8PackedAvxVnni, wp, ap, activationBytes, tp, n, expected);
                if (Kernels.IsSupported(KernelPath.Avx512))
                    CheckTile("AVX-512", &Q4_0.PackActivationTileAvx512, &Q4_0.Dot8PackedAvx512, wp, ap, activationBytes, tp, n, expected);
            }
        }
        Assert.True(checkedTiles >= 9);

        void CheckTile(string name, delegate*<byte*, nint, int, byte*, void> pack, delegate*<byte*, byte*, int, float*, nint, void> dot,
            byte* w, byte* activations, int activationBytes, byte* tile, int n, float[] expected)
        {
            float* results = stackalloc float[8];
            pack(activations, activationBytes, n, tile);
            dot(w, tile, n, results, 1);
            for (int r = 0; r < 8; r++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[r]) == BitConverter.SingleToInt32Bits(results[r]),
                    $"{name} tile, {n / Q4_0.BlockSize} blocks, row {r}: {results[r]:R}, row dot {expected[r]:R}");
            checkedTiles++;
        }
    }

    /// <summary>The types whose tiles add in int16 over a packed activation (Q6_K's add in 32 bits).</summary>
    public static readonly TheoryData<GgmlType> PackedTileTypes = new() { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K };

    /// <summary>
    /// The tiles' integer sums at their limits: every weight quant at its largest magnitude (Q4_0 and Q4_K nibbles
    /// 15, Q4_K scales and mins 63, Q8_0 quants -128) against activations that quantize to the extreme (-1 gives
    /// Q8_0's -127 and Q8_K's -128). Q4_0's and Q4_K's tiles add 8 groups of pair sums in int16 (8 · 2 · 15 · 128 =
    /// 30720 for Q4_K), and Q8_0's pairs reach 2 · 128 · 127. Any overflow or saturation would show as a difference
    /// from the scalar path, whose sums are plain ints; MatMat must also equal MatVec to the bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(PackedTileTypes))]
    public unsafe void TilesKeepExactSumsAtExtremeQuants(GgmlType type)
    {
        const int rows = 9, n = 9;
        int cols = IsKQuant(type) ? 512 : 256;
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        var w = new byte[rowBytes * rows];
        int blockBytes = (int)GgmlTypeInfo.RowBytes(type, GgmlTypeInfo.BlockSize(type));
        for (int b = 0; b < w.Length / blockBytes; b++)
        {
            var block = w.AsSpan(b * blockBytes, blockBytes);
            block.Fill(type == GgmlType.Q8_0 ? (byte)0x80 : (byte)0xFF); // quants (and Q4_K's 12 scale bytes: 63 each)
            BitConverter.TryWriteBytes(block, (Half)(0.25 + 0.125 * (b % 3)));          // d
            if (type == GgmlType.Q4_K) BitConverter.TryWriteBytes(block[2..], (Half)0.5); // dmin
        }
        var x = new float[n * cols];
        Array.Fill(x, -1f);
        for (int i = 0; i < n; i++) x[i * cols + i] = -0.999f; // rows differ a little
        var y = new float[n * rows];
        var reference = new float[rows];
        var saved = Kernels.Path;
        try
        {
            fixed (byte* wp = w)
            {
                MatMul.MatMat(type, wp, rows, cols, x, n, y);
                for (int i = 0; i < n; i++)
                {
                    var yi = new float[rows];
                    MatMul.MatVec(type, wp, rows, cols, x.AsSpan(i * cols, cols), yi);
                    Kernels.Path = KernelPath.Scalar;
                    MatMul.MatVec(type, wp, rows, cols, x.AsSpan(i * cols, cols), reference);
                    Kernels.Path = saved;
                    for (int r = 0; r < rows; r++)
                    {
                        Assert.Equal(BitConverter.SingleToInt32Bits(yi[r]), BitConverter.SingleToInt32Bits(y[i * rows + r]));
                        Assert.True(Math.Abs(y[i * rows + r] - reference[r]) <= 1e-5 * Math.Abs(reference[r]),
                            $"{type} activation {i} row {r}: {y[i * rows + r]:R}, scalar path {reference[r]:R}");
                    }
                }
            }
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    [Fact]
    public unsafe void ResultsDoNotDependOnThreadCount()
    {
        const int rows = 512, cols = 512, n = 6;
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q4_0, cols) * rows];
        Quantizer.QuantizeRow(GgmlType.Q4_0, TestRows.Random(rows * cols, 5), w);
        var x = TestRows.Random(n * cols, 6);
        int saved = WorkerPool.ThreadCount;
        try
        {
            float[]? first = null;
            foreach (int threads in new[] { 1, 2, 3, 8 })
            {
                WorkerPool.SetThreadCount(threads);
                Assert.Equal(threads, WorkerPool.ThreadCount);
                var y = new float[n * rows];
                fixed (byte* wp = w) MatMul.MatMat(GgmlType.Q4_0, wp, rows, cols, x, n, y);
                if (first == null) first = y;
                else Assert.Equal(first, y);
            }
        }
        finally
        {
            WorkerPool.SetThreadCount(saved);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => WorkerPool.SetThreadCount(0));
    }

    [Fact]
    public unsafe void BadArgumentsThrowClearly()
    {
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, 64) * 2];
        fixed (byte* wp = w)
        {
            var p = wp;
            Assert.Throws<ArgumentException>(() => MatMul.MatVec(GgmlType.Q8_0, p, 2, 64, new float[10], new float[2]));
            Assert.Throws<ArgumentException>(() => MatMul.MatVec(GgmlType.Q8_0, p, 2, 48, new float[48], new float[2]));
            Assert.Throws<NotSupportedException>(() => MatMul.MatVec(GgmlType.MXFP4, p, 1, 256, new float[256], new float[1]));
        }
    }

    [Fact]
    public unsafe void ConcurrentCallersGetCorrectResults()
    {
        const int rows = 256, cols = 512;
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, cols) * rows];
        Quantizer.QuantizeRow(GgmlType.Q8_0, TestRows.Random(rows * cols, 8), w);
        var x = TestRows.Random(cols, 9);
        var expected = new float[rows];
        fixed (byte* wp = w) MatMul.MatVec(GgmlType.Q8_0, wp, rows, cols, x, expected);
        Parallel.For(0, 8, _ =>
        {
            var y = new float[rows];
            for (int k = 0; k < 20; k++)
            {
                fixed (byte* wp = w) MatMul.MatVec(GgmlType.Q8_0, wp, rows, cols, x, y);
                Assert.Equal(expected, y);
            }
        });
    }

    /// <summary>
    /// Tiles serve both x86 SIMD paths (the AVX-512 path runs its own 512-bit packed tiles for Q4_0, Q8_0 and Q4_K);
    /// the bitwise tests of the products against the row dot run on every path this CPU supports.
    /// </summary>
    [Fact]
    public void AvxTilesServeBothX86Paths()
    {
        Assert.True(MatMul.TilesOn(KernelPath.Avx2));
        Assert.True(MatMul.TilesOn(KernelPath.Avx512));
        Assert.False(MatMul.TilesOn(KernelPath.Scalar));
        Assert.False(MatMul.TilesOn(KernelPath.AdvSimd));
    }
}

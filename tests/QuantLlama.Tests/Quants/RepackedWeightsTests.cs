using System.Runtime.InteropServices;
using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Q4_0, Q4_K and Q8_0 weights repacked in groups of 8 rows (the AVX-512 prompt kernels): every product over them equals
/// the row dot on the mapped weights bit for bit, for any batch size, block count and group of matrices, and at the
/// integer sums' limits.
/// </summary>
[Collection("KernelSettings")]
public class RepackedWeightsTests
{
    private static void RequireAvx512()
    {
        Assert.SkipUnless(Kernels.IsSupported(KernelPath.Avx512), "the repacked kernel runs on the AVX-512 path; this CPU has no AVX-512");
    }

    [Theory]
    [InlineData(64, 8)]
    [InlineData(64, 23)]
    [InlineData(320, 9)]  // 5 pairs: passes of 2, 1, 1 and 1 pairs
    [InlineData(448, 16)] // 7 pairs
    [InlineData(2048, 43)]
    [InlineData(64, 1)]   // one row: the passes side by side, one pair left after no whole quad
    [InlineData(384, 1)]  // 6 pairs: one quad, then two pairs left
    [InlineData(448, 1)]  // 7 pairs: one quad, then three pairs left
    [InlineData(2304, 1)] // 36 pairs: quads only, prefetches within the group and past it
    [InlineData(64, 2)]
    [InlineData(192, 3)]  // 3 pairs: passes of 1, 1, 1 and 0 pairs
    [InlineData(320, 4)]
    [InlineData(448, 5)]
    [InlineData(576, 6)]  // 9 pairs
    [InlineData(2048, 7)]
    [InlineData(704, 10)] // 11 pairs; a tile of 8 rows and one of 2
    [InlineData(2048, 13)]
    public void GroupEqualsRowDotBitForBit(int cols, int n)
    {
        RequireAvx512();
        int[] rows = [24, 8, 16];
        var random = new Random(cols + n);
        var weights = rows.Select(r => Quantized(random, r, cols)).ToArray();
        AssertGroupEqualsRowDot([GgmlType.Q4_0, GgmlType.Q4_0, GgmlType.Q4_0], weights, rows, [true, true, true], cols, RandomActivation(random, n, cols), n);
    }

    /// <summary>Q8_0: one row (generation), a few (conversations decoding together), tiles of 8 and the rows left.</summary>
    [Theory]
    [InlineData(64, 1)]   // the one-row pass over 2 blocks: every stream's prefetch in the next group
    [InlineData(2304, 1)] // 72 blocks: prefetches in the group and past it
    [InlineData(96, 2)]   // two rows: the passes side by side, as for one
    [InlineData(2304, 2)] // 72 blocks: prefetches in the group and past it
    [InlineData(96, 3)]   // the four-row pass, one row of it zeros
    [InlineData(128, 5)]  // the eight-row pass, three rows of it zeros
    [InlineData(32, 8)]   // one block
    [InlineData(96, 23)]  // 3 blocks
    [InlineData(224, 10)] // 7 blocks; a tile of 8 rows and one of 2
    [InlineData(160, 12)] // a tile of 4 rows (the second half of the tile skipped)
    [InlineData(256, 9)]  // a tile of 1 row: the one-row pass
    [InlineData(2048, 43)]
    public void Q8_0GroupEqualsRowDotBitForBit(int cols, int n)
    {
        RequireQ8_0Kernel();
        int[] rows = [24, 8, 16];
        var random = new Random(cols + n);
        var weights = rows.Select(r => Quantized(random, r, cols, GgmlType.Q8_0)).ToArray();
        AssertGroupEqualsRowDot([GgmlType.Q8_0, GgmlType.Q8_0, GgmlType.Q8_0], weights, rows, [true, true, true], cols, RandomActivation(random, n, cols), n);
    }

    /// <summary>
    /// Q8_0 quants -128 and ±127 against activations quantized to ±127 (the quantizer's range), every sign mix: the
    /// unsigned activations (y + 128 up to 255) and the -128 · Σ w start keep each group's sum exact, in each pass
    /// (one and two rows side by side, four and eight rows), in full tiles and in a shorter last tile.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(9)]
    [InlineData(10)]
    [InlineData(3)]
    [InlineData(8)]
    [InlineData(13)]
    public void ExtremeQ8_0QuantsKeepExactSums(int n)
    {
        RequireQ8_0Kernel();
        const int rows = 16, cols = 96;
        sbyte[] extremes = [-128, 127, -127, -128, 127, 127, -127, -127];
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, cols) * rows];
        for (int b = 0; b < w.Length / Q8_0.BlockBytes; b++)
        {
            var block = w.AsSpan(b * Q8_0.BlockBytes, Q8_0.BlockBytes);
            BitConverter.TryWriteBytes(block, (Half)(0.25 + 0.125 * (b % 3)));
            for (int k = 0; k < 32; k++) block[2 + k] = (byte)extremes[(k + b) % extremes.Length];
        }
        var x = new float[n * cols];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < cols; k++) x[i * cols + k] = i % 3 == 0 ? -1f : ((k * 7 + i) % 5 < 2 ? -1f : 1f);
        AssertGroupEqualsRowDot([GgmlType.Q8_0], [w], [rows], [true], cols, x, n);
    }

    [Theory]
    [InlineData(256, 8)]
    [InlineData(256, 43)]
    [InlineData(512, 9)]   // one row past a tile: run as a row dot
    [InlineData(768, 10)]  // two rows past a tile: one more tile padded with zero rows
    [InlineData(1792, 16)] // 7 blocks: fewer than the 8 chains
    [InlineData(2304, 23)] // 9 blocks: chain 0 twice
    [InlineData(4096, 31)] // 16 blocks
    [InlineData(2048, 43)]
    public void Q4KGroupEqualsRowDotBitForBit(int cols, int n)
    {
        RequireAvx512();
        int[] rows = [24, 8, 16];
        var random = new Random(cols + n);
        // Random bytes: every pattern of packed 6-bit scales and mins, every nibble.
        var weights = rows.Select(r => RandomQ4K(random, r, cols)).ToArray();
        AssertGroupEqualsRowDot([GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q4_K], weights, rows, [true, true, true], cols, RandomActivation(random, n, cols), n);
    }

    /// <summary>1 to 7 activation rows (generation, a few conversations) run the repacked Q4_K kernel for that many rows.</summary>
    [Theory]
    [InlineData(256, 1)]
    [InlineData(2048, 1)]
    [InlineData(2304, 1)] // 9 blocks: chain 0 twice
    [InlineData(1792, 2)] // 7 blocks: fewer than the 8 chains
    [InlineData(768, 3)]
    [InlineData(4096, 4)]
    [InlineData(2304, 5)]
    [InlineData(512, 6)]
    [InlineData(2048, 7)]
    public void Q4KFewRowsEqualRowDotBitForBit(int cols, int n)
    {
        RequireAvx512();
        int[] rows = [24, 8, 16];
        var random = new Random(cols * 8 + n);
        var weights = rows.Select(r => RandomQ4K(random, r, cols)).ToArray();
        AssertGroupEqualsRowDot([GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q4_K], weights, rows, [true, true, true], cols, RandomActivation(random, n, cols), n);
    }

    /// <summary>
    /// Q4_K_M's Q/K/V group: Q4_K matrices with repacked copies beside a Q6_K one and a Q4_K one without; each
    /// matrix's outputs are its row dot's.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(8)]
    [InlineData(21)]
    public void MixedGroupEqualsRowDotBitForBit(int n)
    {
        RequireAvx512();
        const int cols = 512;
        int[] rows = [16, 8, 8, 24];
        var random = new Random(n);
        var q6 = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q6_K, cols) * rows[2]];
        var values = new float[rows[2] * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        Quantizer.QuantizeRow(GgmlType.Q6_K, values, q6);
        byte[][] weights = [RandomQ4K(random, rows[0], cols), RandomQ4K(random, rows[1], cols), q6, RandomQ4K(random, rows[3], cols)];
        AssertGroupEqualsRowDot([GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q4_K], weights, rows, [true, false, false, true], cols,
            RandomActivation(random, n, cols), n);
    }

    /// <summary>
    /// Scales and mins 63, nibbles 15, large d and dmin of both signs, against activations quantized to -128 and to
    /// 127: the int16 sums and the block's integer sums at their largest.
    /// </summary>
    [Theory]
    [InlineData(-1f, 11)]
    [InlineData(1f, 11)]
    [InlineData(-1f, 1)]
    [InlineData(1f, 2)]
    [InlineData(-1f, 5)]
    [InlineData(1f, 7)]
    public void Q4KExtremeScalesAndMinsKeepExactSums(float activation, int n)
    {
        RequireAvx512();
        const int rows = 16, cols = 2304;
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q4_K, cols) * rows];
        for (int b = 0; b < w.Length / Q4_K.BlockBytes; b++)
        {
            var block = w.AsSpan(b * Q4_K.BlockBytes, Q4_K.BlockBytes);
            block.Fill(0xFF);
            BitConverter.TryWriteBytes(block, (Half)(b % 2 == 0 ? 1000 : -0.25 * (b % 5)));
            BitConverter.TryWriteBytes(block[2..], (Half)(b % 3 == 0 ? -2000 : 0.5 + b % 7));
        }
        var x = new float[n * cols];
        Array.Fill(x, activation);
        for (int i = 0; i < n; i++) x[i * cols + 3 * i] = activation * 0.999f;
        AssertGroupEqualsRowDot([GgmlType.Q4_K], [w], [rows], [true], cols, x, n);
        var saved = Kernels.Path;
        try
        {
            // And the row dot itself within rounding of the scalar reference.
            var scalar = new float[rows];
            var rowDot = new float[rows];
            unsafe
            {
                fixed (byte* wp = w)
                {
                    Kernels.Path = KernelPath.Scalar;
                    MatMul.MatVec(GgmlType.Q4_K, wp, rows, cols, x.AsSpan(0, cols), scalar);
                    Kernels.Path = KernelPath.Avx512;
                    MatMul.MatVec(GgmlType.Q4_K, wp, rows, cols, x.AsSpan(0, cols), rowDot);
                }
            }
            for (int r = 0; r < rows; r++)
                Assert.True(Math.Abs(rowDot[r] - scalar[r]) <= 1e-5 * Math.Abs(scalar[r]), $"row {r}: {rowDot[r]:R}, scalar {scalar[r]:R}");
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    /// <summary>
    /// Runs the products as one group on the AVX-512 path, those marked in <paramref name="repack"/> over repacked
    /// copies, and asserts every output equals the row dot (one activation row at a time) bit for bit.
    /// </summary>
    private static unsafe void AssertGroupEqualsRowDot(GgmlType[] types, byte[][] weights, int[] rows, bool[] repack, int cols, float[] x, int n)
    {
        var saved = Kernels.Path;
        var handles = weights.Select(w => GCHandle.Alloc(w, GCHandleType.Pinned)).ToArray();
        var outputs = rows.Select(r => new float[n * r]).ToArray();
        var outHandles = outputs.Select(y => GCHandle.Alloc(y, GCHandleType.Pinned)).ToArray();
        var groups = new List<IntPtr>();
        try
        {
            Kernels.Path = KernelPath.Avx512;
            var products = new MatMul.Product[rows.Length];
            for (int p = 0; p < rows.Length; p++)
            {
                byte* w = (byte*)handles[p].AddrOfPinnedObject();
                byte* g = null;
                if (repack[p])
                {
                    Assert.True(RepackedWeights.Supported(types[p], rows[p], cols));
                    g = RepackedWeights.Create(types[p], w, rows[p], cols);
                    groups.Add((IntPtr)g);
                }
                products[p] = new MatMul.Product(types[p], w, rows[p], (float*)outHandles[p].AddrOfPinnedObject(), g);
            }
            fixed (MatMul.Product* pp = products)
            fixed (float* xp = x)
                MatMul.Group(pp, products.Length, cols, xp, n);
            for (int p = 0; p < rows.Length; p++)
            {
                byte* w = (byte*)handles[p].AddrOfPinnedObject();
                var expected = new float[rows[p]];
                for (int i = 0; i < n; i++)
                {
                    MatMul.MatVec(types[p], w, rows[p], cols, x.AsSpan(i * cols, cols), expected);
                    for (int r = 0; r < rows[p]; r++)
                        Assert.True(BitConverter.SingleToInt32Bits(expected[r]) == BitConverter.SingleToInt32Bits(outputs[p][i * rows[p] + r]),
                            $"matrix {p} activation {i} row {r}: {outputs[p][i * rows[p] + r]:R}, row dot {expected[r]:R}");
                }
            }
        }
        finally
        {
            Kernels.Path = saved;
            foreach (var g in groups) RepackedWeights.Free((byte*)g);
            foreach (var h in handles) h.Free();
            foreach (var h in outHandles) h.Free();
        }
    }

    /// <summary>Nibbles 15 against activations quantized to -127: the int16 sums of 8 groups at their largest.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(11)]
    public unsafe void ExtremeQuantsKeepExactSums(int n)
    {
        RequireAvx512();
        const int rows = 16, cols = 256;
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q4_0, cols) * rows];
        for (int b = 0; b < w.Length / Q4_0.BlockBytes; b++)
        {
            var block = w.AsSpan(b * Q4_0.BlockBytes, Q4_0.BlockBytes);
            block.Fill(0xFF);
            BitConverter.TryWriteBytes(block, (Half)(0.25 + 0.125 * (b % 3)));
        }
        var x = new float[n * cols];
        Array.Fill(x, -1f);
        for (int i = 0; i < n; i++) x[i * cols + i] = -0.999f;
        var y = new float[n * rows];
        var saved = Kernels.Path;
        try
        {
            Kernels.Path = KernelPath.Avx512;
            fixed (byte* wp = w)
            fixed (float* xp = x, yp = y)
            {
                byte* g = RepackedWeights.Create(GgmlType.Q4_0, wp, rows, cols);
                try
                {
                    var product = new MatMul.Product(GgmlType.Q4_0, wp, rows, yp, g);
                    MatMul.Group(&product, 1, cols, xp, n);
                }
                finally
                {
                    RepackedWeights.Free(g);
                }
                for (int i = 0; i < n; i++)
                {
                    var expected = new float[rows];
                    Kernels.Path = KernelPath.Scalar;
                    MatMul.MatVec(GgmlType.Q4_0, wp, rows, cols, x.AsSpan(i * cols, cols), expected);
                    Kernels.Path = KernelPath.Avx512;
                    var rowDot = new float[rows];
                    MatMul.MatVec(GgmlType.Q4_0, wp, rows, cols, x.AsSpan(i * cols, cols), rowDot);
                    for (int r = 0; r < rows; r++)
                    {
                        Assert.Equal(BitConverter.SingleToInt32Bits(rowDot[r]), BitConverter.SingleToInt32Bits(y[i * rows + r]));
                        Assert.True(Math.Abs(y[i * rows + r] - expected[r]) <= 1e-5 * Math.Abs(expected[r]), $"activation {i} row {r}: {y[i * rows + r]:R}, scalar {expected[r]:R}");
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
    public void ShapesWithoutWholeGroupsOrPairsAreNotRepacked()
    {
        var saved = Kernels.Path;
        try
        {
            Kernels.Path = KernelPath.Avx2;
            Assert.False(RepackedWeights.Supported(GgmlType.Q4_0, 8, 64));
            if (!Kernels.IsSupported(KernelPath.Avx512)) return;
            Kernels.Path = KernelPath.Avx512;
            Assert.True(RepackedWeights.Supported(GgmlType.Q4_0, 8, 64));
            Assert.False(RepackedWeights.Supported(GgmlType.Q4_0, 12, 64));
            Assert.False(RepackedWeights.Supported(GgmlType.Q4_0, 8, 96));
            Assert.Equal(System.Runtime.Intrinsics.X86.AvxVnni.IsSupported, RepackedWeights.Supported(GgmlType.Q8_0, 8, 64));
            Assert.False(RepackedWeights.Supported(GgmlType.Q8_0, 8, 48));
            Assert.True(RepackedWeights.Supported(GgmlType.Q4_K, 8, 256));
            Assert.False(RepackedWeights.Supported(GgmlType.Q4_K, 12, 256));
            Assert.False(RepackedWeights.Supported(GgmlType.Q6_K, 8, 256));
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    private static float[] RandomActivation(Random random, int n, int cols)
    {
        var x = new float[n * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>Q4_K rows of random bytes, with d and dmin finite fp16 values of both signs.</summary>
    private static byte[] RandomQ4K(Random random, int rows, int cols)
    {
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q4_K, cols) * rows];
        random.NextBytes(w);
        for (int b = 0; b < w.Length / Q4_K.BlockBytes; b++)
        {
            var block = w.AsSpan(b * Q4_K.BlockBytes);
            BitConverter.TryWriteBytes(block, (Half)((random.NextDouble() * 2 - 1) * 0.05));
            BitConverter.TryWriteBytes(block[2..], (Half)((random.NextDouble() * 2 - 1) * 0.02));
        }
        return w;
    }

    private static byte[] Quantized(Random random, int rows, int cols, GgmlType type = GgmlType.Q4_0)
    {
        var values = new float[rows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * (1 + i % 7);
        var w = new byte[GgmlTypeInfo.RowBytes(type, cols) * rows];
        Quantizer.QuantizeRow(type, values, w);
        return w;
    }

    private static void RequireQ8_0Kernel()
    {
        RequireAvx512();
        Assert.SkipUnless(System.Runtime.Intrinsics.X86.AvxVnni.IsSupported, "the repacked Q8_0 kernel needs AVX-VNNI; this CPU has none");
    }
}

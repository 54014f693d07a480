using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Q4_0 and Q8_0 weights repacked in groups of 8 rows (the AVX-512 prompt kernels): every product over them equals the
/// row dot on the mapped weights bit for bit, for any batch size, block count and group of matrices, and at the
/// integer sums' limits.
/// </summary>
[Collection("KernelSettings")]
public class RepackedWeightsTests
{
    private static void RequireAvx512(GgmlType type = GgmlType.Q4_0)
    {
        Assert.SkipUnless(Kernels.IsSupported(KernelPath.Avx512), "the repacked kernel runs on the AVX-512 path; this CPU has no AVX-512");
        if (type == GgmlType.Q8_0)
            Assert.SkipUnless(System.Runtime.Intrinsics.X86.AvxVnni.IsSupported, "the repacked Q8_0 kernel needs AVX-VNNI; this CPU has none");
    }

    [Theory]
    [InlineData(GgmlType.Q4_0, 64, 8)]
    [InlineData(GgmlType.Q4_0, 64, 23)]
    [InlineData(GgmlType.Q4_0, 320, 9)]  // 5 pairs: passes of 2, 1, 1 and 1 pairs
    [InlineData(GgmlType.Q4_0, 448, 16)] // 7 pairs
    [InlineData(GgmlType.Q4_0, 2048, 43)]
    [InlineData(GgmlType.Q8_0, 32, 8)]   // one block
    [InlineData(GgmlType.Q8_0, 96, 23)]  // 3 blocks
    [InlineData(GgmlType.Q8_0, 224, 10)] // 7 blocks; a remainder of 2 rows
    [InlineData(GgmlType.Q8_0, 160, 12)] // a remainder of 4 rows (the second half of the tile skipped)
    [InlineData(GgmlType.Q8_0, 2048, 43)]
    public unsafe void GroupEqualsRowDotBitForBit(GgmlType type, int cols, int n)
    {
        RequireAvx512(type);
        int[] rows = [24, 8, 16];
        var random = new Random(cols + n);
        var weights = rows.Select(r => Quantized(type, random, r, cols)).ToArray();
        var x = new float[n * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
        var saved = Kernels.Path;
        try
        {
            Kernels.Path = KernelPath.Avx512;
            Assert.True(RepackedWeights.Supported(type, 8, cols));
            var outputs = rows.Select(r => new float[n * r]).ToArray();
            var groups = new List<IntPtr>();
            try
            {
                var products = new MatMul.Product[rows.Length];
                var handles = weights.Select(w => System.Runtime.InteropServices.GCHandle.Alloc(w, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
                var outHandles = outputs.Select(y => System.Runtime.InteropServices.GCHandle.Alloc(y, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
                try
                {
                    for (int p = 0; p < rows.Length; p++)
                    {
                        byte* w = (byte*)handles[p].AddrOfPinnedObject();
                        byte* g = RepackedWeights.Create(type, w, rows[p], cols);
                        groups.Add((IntPtr)g);
                        products[p] = new MatMul.Product(type, w, rows[p], (float*)outHandles[p].AddrOfPinnedObject(), g);
                    }
                    fixed (MatMul.Product* pp = products)
                    fixed (float* xp = x)
                        MatMul.Group(pp, products.Length, cols, xp, n);
                    for (int p = 0; p < rows.Length; p++)
                    {
                        byte* w = (byte*)handles[p].AddrOfPinnedObject();
                        for (int i = 0; i < n; i++)
                        {
                            var expected = new float[rows[p]];
                            MatMul.MatVec(type, w, rows[p], cols, x.AsSpan(i * cols, cols), expected);
                            for (int r = 0; r < rows[p]; r++)
                                Assert.Equal(BitConverter.SingleToInt32Bits(expected[r]), BitConverter.SingleToInt32Bits(outputs[p][i * rows[p] + r]));
                        }
                    }
                }
                finally
                {
                    foreach (var h in handles) h.Free();
                    foreach (var h in outHandles) h.Free();
                }
            }
            finally
            {
                foreach (var g in groups) RepackedWeights.Free((byte*)g);
            }
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    /// <summary>Nibbles 15 against activations quantized to -127: the int16 sums of 8 groups at their largest.</summary>
    [Fact]
    public void ExtremeQuantsKeepExactSums()
    {
        RequireAvx512();
        const int rows = 16, cols = 256, n = 8;
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
        AssertRepackedEqualsRowDot(GgmlType.Q4_0, w, rows, cols, x, n, expected => 1e-5 * Math.Abs(expected));
    }

    /// <summary>
    /// Q8_0 quants -128 and ±127 against activations quantized to ±127 (the quantizer's range), every sign mix: the
    /// unsigned weights (w + 128 up to 255) and the -128 · Σ correction keep each group's sum exact, in full tiles and
    /// in a padded remainder.
    /// </summary>
    [Theory]
    [InlineData(8)]
    [InlineData(13)]
    public void ExtremeQ8_0QuantsKeepExactSums(int n)
    {
        RequireAvx512(GgmlType.Q8_0);
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
        // Terms up to 0.5 · (1/127) · 32 · 128 · 127 = 2048 cancel: the scalar order differs by their rounding.
        AssertRepackedEqualsRowDot(GgmlType.Q8_0, w, rows, cols, x, n, _ => 1e-3);
    }

    /// <summary>
    /// The product over the repacked copy of <paramref name="w"/> equals the AVX-512 row dot bit for bit, and the
    /// scalar reference within <paramref name="tolerance"/> (of the expected value).
    /// </summary>
    private static unsafe void AssertRepackedEqualsRowDot(GgmlType type, byte[] w, int rows, int cols, float[] x, int n, Func<float, double> tolerance)
    {
        var y = new float[n * rows];
        var saved = Kernels.Path;
        try
        {
            Kernels.Path = KernelPath.Avx512;
            fixed (byte* wp = w)
            fixed (float* xp = x, yp = y)
            {
                byte* g = RepackedWeights.Create(type, wp, rows, cols);
                try
                {
                    var product = new MatMul.Product(type, wp, rows, yp, g);
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
                    MatMul.MatVec(type, wp, rows, cols, x.AsSpan(i * cols, cols), expected);
                    Kernels.Path = KernelPath.Avx512;
                    var rowDot = new float[rows];
                    MatMul.MatVec(type, wp, rows, cols, x.AsSpan(i * cols, cols), rowDot);
                    for (int r = 0; r < rows; r++)
                    {
                        Assert.Equal(BitConverter.SingleToInt32Bits(rowDot[r]), BitConverter.SingleToInt32Bits(y[i * rows + r]));
                        Assert.True(Math.Abs(y[i * rows + r] - expected[r]) <= tolerance(expected[r]), $"activation {i} row {r}: {y[i * rows + r]:R}, scalar {expected[r]:R}");
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
            Assert.False(RepackedWeights.Supported(GgmlType.Q5_0, 8, 64));
            Assert.Equal(System.Runtime.Intrinsics.X86.AvxVnni.IsSupported, RepackedWeights.Supported(GgmlType.Q8_0, 8, 96));
            Assert.False(RepackedWeights.Supported(GgmlType.Q8_0, 12, 64));
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    private static byte[] Quantized(GgmlType type, Random random, int rows, int cols)
    {
        var values = new float[rows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * (1 + i % 7);
        var w = new byte[GgmlTypeInfo.RowBytes(type, cols) * rows];
        Quantizer.QuantizeRow(type, values, w);
        return w;
    }
}

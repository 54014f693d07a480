using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Q4_0 weights repacked in groups of 8 rows (the AVX-512 prompt kernel): every product over them equals the row dot
/// on the mapped weights bit for bit, for any batch size, pair count and group of matrices, and at the integer sums'
/// limits.
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
    [InlineData(64, 1)]
    [InlineData(64, 2)]
    [InlineData(192, 3)]  // 3 pairs: passes of 1, 1, 1 and 0 pairs
    [InlineData(320, 4)]
    [InlineData(448, 5)]
    [InlineData(576, 6)]  // 9 pairs
    [InlineData(2048, 7)]
    [InlineData(704, 10)] // 11 pairs; a tile of 8 rows and one of 2
    [InlineData(2048, 13)]
    public unsafe void GroupEqualsRowDotBitForBit(int cols, int n)
    {
        RequireAvx512();
        int[] rows = [24, 8, 16];
        var random = new Random(cols + n);
        var weights = rows.Select(r => Quantized(random, r, cols)).ToArray();
        var x = new float[n * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
        var saved = Kernels.Path;
        try
        {
            Kernels.Path = KernelPath.Avx512;
            Assert.True(RepackedWeights.Supported(GgmlType.Q4_0, 8, cols));
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
                        byte* g = RepackedWeights.Create(w, rows[p], cols);
                        groups.Add((IntPtr)g);
                        products[p] = new MatMul.Product(GgmlType.Q4_0, w, rows[p], (float*)outHandles[p].AddrOfPinnedObject(), g);
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
                            MatMul.MatVec(GgmlType.Q4_0, w, rows[p], cols, x.AsSpan(i * cols, cols), expected);
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
                byte* g = RepackedWeights.Create(wp, rows, cols);
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
            Assert.False(RepackedWeights.Supported(GgmlType.Q8_0, 8, 64));
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    private static byte[] Quantized(Random random, int rows, int cols)
    {
        var values = new float[rows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * (1 + i % 7);
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q4_0, cols) * rows];
        Quantizer.QuantizeRow(GgmlType.Q4_0, values, w);
        return w;
    }
}

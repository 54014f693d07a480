using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Matrix products whose arithmetic is ggml's to the bit on x86, checked against <c>ggml_mul_mat</c> itself
/// (llama.cpp's AVX2 build through <see cref="GgmlGraph"/>): one activation row goes to ggml's vector dot, two or
/// more to tinyBLAS, which for Q8_0 and Q5_0 sums as the vector dot does (8 lanes of 4-value groups, chained over
/// the blocks) and for F32 with one 8-lane accumulator (its vector dot: four, over steps of 32; ours sums one row
/// over such a matrix as a batch does). A last-bit
/// difference here is what an f16 cache or the next layer's Q8 activation turns into a whole rounding step.
/// </summary>
[Collection("KernelSettings")]
public class GgmlProductTests
{
    public static readonly TheoryData<GgmlType> ExactTypes = new() { GgmlType.F32, GgmlType.Q8_0, GgmlType.Q5_0 };

    [Theory]
    [MemberData(nameof(ExactTypes))]
    public unsafe void ProductsEqualGgmlMulMatToTheBit(GgmlType type)
    {
        if (!Kernels.IsSupported(KernelPath.Avx2)) Assert.Skip("ggml's x86 arithmetic is followed on the AVX2 and AVX-512 paths only");
        // Row lengths with and without a tail after the float dot's steps of 32 (and tinyBLAS's 8). Not followed: an
        // F32 tail that is not a multiple of 4 values (330: some rows differ in the last bit; llama.cpp's compiled
        // tail loop fuses some of its multiply-adds there).
        int[] lengths = type == GgmlType.F32 ? [64, 172, 4096] : [64, 320, 4096];
        var saved = Kernels.Path;
        try
        {
            // 64 rows: tinyBLAS takes F32 batches; 70 (not a multiple of 4): the vector dot does.
            foreach (int rows in new[] { 64, 70 })
            foreach (int cols in lengths)
            {
                var wf = TestRows.Random(rows * cols, 11);
                byte[] w = type == GgmlType.F32 ? new byte[rows * cols * 4] : GgmlNative.QuantizeChunk(type, wf, cols);
                if (type == GgmlType.F32) Buffer.BlockCopy(wf, 0, w, 0, w.Length);
                // 1: the vector dot; 2, 3: row dots; 5, 6: one padded tile; 8, 11, 17: tiles and remainders.
                foreach (int n in new[] { 1, 2, 3, 5, 6, 8, 11, 17 })
                {
                    // One row over an F32 matrix of a multiple of 4 rows: ggml takes its vector dot, ours the batches'
                    // order (TypeKernel.DotOverRowQuads), so that a row's bits never depend on its batch.
                    if (type == GgmlType.F32 && rows % 4 == 0 && n == 1) continue;
                    var x = TestRows.Random(n * cols, 12 + n);
                    float[] expected = GgmlMulMat(type, w, rows, cols, x, n);
                    foreach (var path in Kernels.Supported.Where(p => p is KernelPath.Avx2 or KernelPath.Avx512))
                    {
                        Kernels.Path = path;
                        var y = new float[n * rows];
                        fixed (byte* wp = w) MatMul.MatMat(type, wp, rows, cols, x, n, y);
                        for (int i = 0; i < y.Length; i++)
                            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(y[i]),
                                $"{type} {rows}x{cols} n={n} {path} activation {i / rows} row {i % rows}: ggml {expected[i]:R}, ours {y[i]:R}");
                    }
                }
            }
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    /// <summary>Y [n x rows] = ggml_mul_mat(W [rows x cols] of <paramref name="type"/>, X [n x cols] f32), on 2 threads.</summary>
    private static unsafe float[] GgmlMulMat(GgmlType type, byte[] w, int rows, int cols, float[] x, int n)
    {
        using var g = new GgmlGraph();
        IntPtr wt = g.Tensor(type, cols, rows), xt = g.Tensor(GgmlType.F32, cols, n);
        new ReadOnlySpan<byte>(w).CopyTo(new Span<byte>(GgmlGraph.Data(wt), w.Length));
        x.AsSpan().CopyTo(new Span<float>(GgmlGraph.Data(xt), x.Length));
        IntPtr y = g.MulMat(wt, xt);
        g.Compute(y);
        return new ReadOnlySpan<float>(GgmlGraph.Data(y), n * rows).ToArray();
    }
}

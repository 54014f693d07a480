using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants;
using QuantLlama.Quants.Tiles;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Q4_0's quad tiles (one weight row against 1 to 4 packed activation rows, <see cref="Q4_0QuadTiles"/>) against
/// the row dot on each activation row alone, bit for bit: every block count from 1 to 13 and a long row (the
/// kernels' 8-block loops, quads, pairs and odd tails), every row count, extreme quants.
/// </summary>
[Collection("KernelSettings")]
public class QuadTileTests
{
    public static readonly TheoryData<string> Kernels512And256 = new() { "avx512", "avx2" };

    [Theory]
    [MemberData(nameof(Kernels512And256))]
    public unsafe void QuadTileEqualsRowDotForEveryRowAndBlockCount(string kernel)
    {
        SkipUnlessSupported(kernel);
        var saved = Kernels.Path;
        try
        {
            Kernels.Path = KernelPath.Avx2; // the row dot both kernels match
            foreach (int blocks in Enumerable.Range(1, 13).Append(65))
            {
                int n = 32 * blocks;
                for (int count = 1; count <= 4; count++)
                    Check(kernel, RandomWeights(7, n, seed: blocks), TestRows.Random(count * n, 100 + blocks * 4 + count), count, n);
            }
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    [Theory]
    [MemberData(nameof(Kernels512And256))]
    public unsafe void QuadTileKeepsExactSumsAtExtremeQuants(string kernel)
    {
        SkipUnlessSupported(kernel);
        const int n = 32 * 11, rows = 3;
        // Every nibble 15 (the largest unsigned weight), activations that quantize to -127: the int16 pair sums
        // reach 8 · 2 · 15 · 127 and any wrap or saturation would change the result.
        var w = new byte[rows * GgmlTypeInfo.RowBytes(GgmlType.Q4_0, n)];
        for (int b = 0; b < w.Length / Q4_0.BlockBytes; b++)
        {
            var block = w.AsSpan(b * Q4_0.BlockBytes, Q4_0.BlockBytes);
            block.Fill(0xFF);
            BitConverter.TryWriteBytes(block, (Half)(0.25 + 0.125 * (b % 3)));
        }
        var x = new float[4 * n];
        Array.Fill(x, -1f);
        for (int r = 0; r < 4; r++) x[r * n + r] = -0.999f;
        var saved = Kernels.Path;
        try
        {
            Kernels.Path = KernelPath.Avx2;
            Check(kernel, w, x, 4, n);
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    private static void SkipUnlessSupported(string kernel)
    {
        Assert.SkipUnless(Kernels.IsSupported(KernelPath.Avx2), "no AVX2 on this CPU");
        if (kernel == "avx512") Assert.SkipUnless(Kernels.IsSupported(KernelPath.Avx512), "no AVX-512 (F, BW) on this CPU");
    }

    private static byte[] RandomWeights(int rows, int n, int seed)
    {
        var w = new byte[rows * GgmlTypeInfo.RowBytes(GgmlType.Q4_0, n)];
        Quantizer.QuantizeRow(GgmlType.Q4_0, TestRows.Random(rows * n, seed), w);
        return w;
    }

    /// <summary>Each weight row of <paramref name="w"/> against <paramref name="count"/> activation rows: quad tile = row dot, to the bit.</summary>
    private static unsafe void Check(string kernel, byte[] w, float[] x, int count, int n)
    {
        long aBytes = Q8Products.ActivationRowBytes(n), wBytes = GgmlTypeInfo.RowBytes(GgmlType.Q4_0, n);
        int rows = (int)(w.Length / wBytes);
        var activation = new byte[count * aBytes];
        var quad = new byte[Q4_0QuadTiles.PackedBytes(n)];
        var y = new float[count * rows];
        fixed (float* xp = x)
        fixed (byte* ap = activation, qp = quad, wp = w)
        fixed (float* yp = y)
        {
            for (int r = 0; r < count; r++) Q8Products.QuantizeActivation(xp + r * n, ap + r * aBytes, n);
            Q4_0QuadTiles.PackActivationQuad(ap, (nint)aBytes, count, n, qp);
            for (int row = 0; row < rows; row++)
            {
                if (kernel == "avx512") Q4_0QuadTiles.Dot4PackedAvx512(wp + row * wBytes, qp, n, yp + row, rows, count);
                else Q4_0QuadTiles.Dot4PackedAvx2(wp + row * wBytes, qp, n, yp + row, rows, count);
                for (int r = 0; r < count; r++)
                {
                    float expected = Q4_0.Dot(wp + row * wBytes, ap + r * aBytes, n);
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(y[r * rows + row]),
                        $"{kernel} (AVX-VNNI {AvxVnni.IsSupported}) {n / 32} blocks, {count} rows, weight row {row}, activation {r}: row dot {expected:R}, quad {y[r * rows + row]:R}");
                }
            }
        }
    }
}

using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Quants.KQuants;
using QuantLlama.Quants.Tiles;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Q6_K's 8-row tiles (AVX2 <see cref="Q6_K.Dot8Avx2"/>, AVX-512 <see cref="Q6KPairTiles"/>) give every activation
/// row the AVX2 row dot's bits: block counts odd and even, random and extreme blocks, and through MatMul every batch
/// size up to a 43-token prompt.
/// </summary>
public class Q6KTileTests
{
    /// <summary>
    /// Random blocks, then blocks at the integer sums' limits: every quant 63 or 0 with scales −128 and 127 against
    /// activations of −128 and 127 (the int16 pair sums reach 2 · 63 · 128; the offset's −32 · scale reaches 4096).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public unsafe void TilesGiveTheRowDotsBits(bool extreme)
    {
        Assert.SkipUnless(Kernels.IsSupported(KernelPath.Avx2), "needs AVX2");
        var rng = new Random(extreme ? 31 : 29);
        foreach (int blocks in new[] { 1, 2, 3, 5, 8, 11, 22 })
        {
            int n = blocks * Q6_K.BlockSize;
            var w = new byte[blocks * Q6_K.BlockBytes];
            var x = new float[8 * n];
            if (extreme) ExtremeRow(w, x, blocks, rng);
            else
            {
                Quantizer.QuantizeRow(GgmlType.Q6_K, TestRows.Random(n, 3 + blocks), w);
                TestRows.Random(8 * n, 4 + blocks).CopyTo(x, 0);
            }
            int activationBytes = (int)GgmlTypeInfo.RowBytes(GgmlType.Q8_K, n);
            var activations = new byte[8 * activationBytes];
            for (int r = 0; r < 8; r++)
                Quantizer.QuantizeRow(GgmlType.Q8_K, x.AsSpan(r * n, n), activations.AsSpan(r * activationBytes, activationBytes));
            fixed (byte* wp = w, ap = activations)
            {
                var expected = new float[8];
                for (int r = 0; r < 8; r++) expected[r] = Q6_K.DotAvx2(wp, ap + r * activationBytes, n);
                Check("AVX2", &Q6_K.Dot8Avx2, wp, ap, activationBytes, n, expected);
                if (Kernels.IsSupported(KernelPath.Avx512))
                    Check("AVX-512", &Q6KPairTiles.Dot8, wp, ap, activationBytes, n, expected);
            }
        }

        static void Check(string name, delegate*<byte*, byte*, nint, int, float*, nint, void> tile, byte* w, byte* activations,
            int activationBytes, int n, float[] expected)
        {
            float* results = stackalloc float[16];
            tile(w, activations, activationBytes, n, results, 2); // every other float: a stride other than 1
            for (int r = 0; r < 8; r++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[r]) == BitConverter.SingleToInt32Bits(results[2 * r]),
                    $"{name} tile, {n / Q6_K.BlockSize} blocks, row {r}: {results[2 * r]:R}, row dot {expected[r]:R}");
        }
    }

    /// <summary>
    /// Blocks whose quants are all 63 or all 0 (alternating by block) and whose scales alternate between −128 and 127,
    /// against activations at ±1 in runs (each Q8_K block quantizes to −128 and 127), rows differing a little.
    /// </summary>
    private static void ExtremeRow(byte[] w, float[] x, int blocks, Random rng)
    {
        for (int b = 0; b < blocks; b++)
        {
            var block = w.AsSpan(b * Q6_K.BlockBytes, Q6_K.BlockBytes);
            block[..192].Fill(b % 2 == 0 ? (byte)0xFF : (byte)0x00); // Ql and Qh: quants 63 or 0
            for (int g = 0; g < 16; g++) block[192 + g] = (g + b) % 2 == 0 ? (byte)0x80 : (byte)0x7F;
            BitConverter.TryWriteBytes(block[208..], (Half)(0.25 + 0.125 * (b % 3)));
        }
        int n = x.Length / 8;
        for (int r = 0; r < 8; r++)
            for (int i = 0; i < n; i++)
                x[r * n + i] = (i / 16 + r) % 3 == 0 ? 1f : -1f - (float)rng.NextDouble() * 1e-3f;
    }

    /// <summary>MatMat over Q6_K weights equals MatVec on every row for batch sizes up to a 43-token prompt (tiles, then tails).</summary>
    [Fact]
    public unsafe void MatMatEqualsMatVecUpToA43TokenPrompt()
    {
        const int rows = 24, cols = 768; // 3 blocks per row
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q6_K, cols) * rows];
        Quantizer.QuantizeRow(GgmlType.Q6_K, TestRows.Random(rows * cols, 41), w);
        var x = TestRows.Random(43 * cols, 42);
        var yi = new float[rows];
        fixed (byte* wp = w)
        {
            for (int n = 2; n <= 43; n++)
            {
                var y = new float[n * rows];
                MatMul.MatMat(GgmlType.Q6_K, wp, rows, cols, x, n, y);
                for (int i = 0; i < n; i++)
                {
                    MatMul.MatVec(GgmlType.Q6_K, wp, rows, cols, x.AsSpan(i * cols, cols), yi);
                    for (int r = 0; r < rows; r++)
                        Assert.True(BitConverter.SingleToInt32Bits(yi[r]) == BitConverter.SingleToInt32Bits(y[i * rows + r]),
                            $"n={n} activation {i} row {r}: MatVec {yi[r]:R}, MatMat {y[i * rows + r]:R}");
                }
            }
        }
    }
}

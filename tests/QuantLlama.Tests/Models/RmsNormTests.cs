using QuantLlama.Compute;

namespace QuantLlama.Tests.Models;

/// <summary>
/// RMS norm of a batch: every row summed as ggml sums it (each square rounded to f32, added in order in double),
/// whatever rows are beside it, and in place the same.
/// </summary>
public unsafe class RmsNormTests
{
    [Theory]
    [InlineData(1, 2048)]
    [InlineData(4, 2048)]
    [InlineData(9, 2048)]
    [InlineData(7, 37)]
    [InlineData(8, 64)]
    public void EveryRowAsGgmlSumsIt(int rows, int dim)
    {
        const float eps = 1e-5f;
        var random = new Random(rows * 100 + dim);
        var x = Enumerable.Range(0, rows * dim).Select(i => (float)((random.NextDouble() * 2 - 1) * Math.Pow(10, i % 7 - 3))).ToArray();
        var weight = Enumerable.Range(0, dim).Select(_ => (float)(random.NextDouble() * 2)).ToArray();
        var expected = new float[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int j = 0; j < dim; j++) sum += x[r * dim + j] * x[r * dim + j];
            float scale = 1f / MathF.Sqrt((float)(sum / dim) + eps);
            for (int j = 0; j < dim; j++) expected[r * dim + j] = x[r * dim + j] * scale * weight[j];
        }
        var y = new float[x.Length];
        var inPlace = (float[])x.Clone();
        fixed (float* px = x, pw = weight, py = y, pi = inPlace)
        {
            RowKernels.RmsNorm(px, pw, py, rows, dim, eps);
            RowKernels.RmsNorm(pi, pw, pi, rows, dim, eps);
        }
        for (int i = 0; i < x.Length; i++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[i]), BitConverter.SingleToInt32Bits(y[i]));
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[i]), BitConverter.SingleToInt32Bits(inPlace[i]));
        }
    }
}

using QuantLlama.Quants;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>One entry point per k-quant type for the tests, so each test runs over all six formats.</summary>
internal static class KQuantFormats
{
    public static void Quantize(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        switch (type)
        {
            case GgmlType.Q2_K: Q2_K.Quantize(src, dst); break;
            case GgmlType.Q3_K: Q3_K.Quantize(src, dst); break;
            case GgmlType.Q4_K: Q4_K.Quantize(src, dst); break;
            case GgmlType.Q5_K: Q5_K.Quantize(src, dst); break;
            case GgmlType.Q6_K: Q6_K.Quantize(src, dst); break;
            case GgmlType.Q8_K: Q8_K.Quantize(src, dst); break;
            default: throw new NotSupportedException(type.ToString());
        }
    }

    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case GgmlType.Q2_K: Q2_K.Dequantize(src, dst); break;
            case GgmlType.Q3_K: Q3_K.Dequantize(src, dst); break;
            case GgmlType.Q4_K: Q4_K.Dequantize(src, dst); break;
            case GgmlType.Q5_K: Q5_K.Dequantize(src, dst); break;
            case GgmlType.Q6_K: Q6_K.Dequantize(src, dst); break;
            case GgmlType.Q8_K: Q8_K.Dequantize(src, dst); break;
            default: throw new NotSupportedException(type.ToString());
        }
    }

    public static float Dot(GgmlType type, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8) => type switch
    {
        GgmlType.Q2_K => Q2_K.Dot(weights, q8),
        GgmlType.Q3_K => Q3_K.Dot(weights, q8),
        GgmlType.Q4_K => Q4_K.Dot(weights, q8),
        GgmlType.Q5_K => Q5_K.Dot(weights, q8),
        GgmlType.Q6_K => Q6_K.Dot(weights, q8),
        _ => throw new NotSupportedException(type.ToString()),
    };
}

/// <summary>Random and adversarial rows, and helpers shared by the k-quant tests.</summary>
internal static class KQuantTestRows
{
    public static float[] Gaussian(Random rng, int n, float sigma)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            v[i] = (float)(sigma * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return v;
    }

    public static IEnumerable<(string Name, float[] Row)> All()
    {
        var rng = new Random(42);
        yield return ("gaussian 256", Gaussian(rng, 256, 1f));
        yield return ("gaussian 3 blocks", Gaussian(rng, 768, 0.02f));
        yield return ("gaussian 7 blocks", Gaussian(rng, 7 * 256, 3f));
        yield return ("uniform", Enumerable.Range(0, 512).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
        yield return ("uniform positive", Enumerable.Range(0, 512).Select(_ => (float)rng.NextDouble() + 0.5f).ToArray());
        yield return ("all zeros", new float[512]);
        yield return ("constant", Enumerable.Repeat(0.75f, 256).ToArray());
        yield return ("negative constant", Enumerable.Repeat(-3.5f, 512).ToArray());
        var huge = Gaussian(rng, 512, 0.1f);
        huge[77] = 1e6f;
        huge[300] = -2e5f;
        yield return ("one huge value", huge);
        yield return ("tiny magnitudes", Gaussian(rng, 512, 1e-6f));
        yield return ("subnormal-ish magnitudes", Gaussian(rng, 256, 1e-20f));
        yield return ("alternating signs", Enumerable.Range(0, 512).Select(i => i % 2 == 0 ? 1.25f : -1.25f).ToArray());
        yield return ("alternating ramp", Enumerable.Range(0, 768).Select(i => (i % 2 == 0 ? 1 : -1) * (i % 37) * 0.1f).ToArray());
        var sparse = new float[512];
        for (int i = 0; i < sparse.Length; i += 41) sparse[i] = (float)(rng.NextDouble() * 10 - 5);
        yield return ("sparse", sparse);
        var mixed = Gaussian(rng, 1024, 1f);
        for (int i = 256; i < 512; i++) mixed[i] = 0;
        for (int i = 512; i < 768; i++) mixed[i] *= 1e4f;
        yield return ("blocks of different scales", mixed);
        yield return ("large values", Gaussian(rng, 256, 6e4f));
    }

    /// <summary>
    /// Random row number <paramref name="row"/> of a series: scale from 1e-4 to 1e4, 1% outliers, 4% exact half
    /// steps (rounding ties), every third row half zero, every fourth all positive; for the scale-search branches.
    /// </summary>
    public static float[] WithTiesAndOutliers(Random rng, int n, int row)
    {
        float sigma = (float)Math.Pow(10, rng.NextDouble() * 8 - 4);
        float[] x = Gaussian(rng, n, sigma);
        for (int i = 0; i < x.Length; i++)
        {
            double u = rng.NextDouble();
            if (u < 0.01) x[i] *= 50;
            else if (u < 0.05) x[i] = MathF.Round(x[i] / sigma * 2) * sigma / 2;
            else if (row % 3 == 0 && i % 256 < 128) x[i] = 0;
            if (row % 4 == 1) x[i] = MathF.Abs(x[i]);
        }
        return x;
    }

    /// <summary>ggml leaves the bsums of an all-zero Q8_K block unwritten; compare them as zero.</summary>
    public static void ZeroUnwrittenQ8KSums(byte[] expected, byte[] actual)
    {
        for (int b = 0; b < expected.Length / Q8_K.BlockBytes; b++)
        {
            int o = b * Q8_K.BlockBytes;
            if (BitConverter.ToSingle(expected, o) == 0)
            {
                Array.Clear(expected, o + 4 + 256, 32);
                Array.Clear(actual, o + 4 + 256, 32);
            }
        }
    }

    /// <summary>Σ|w_i·a_i| over the dequantized weights and activation: the scale of a dot's rounding error.</summary>
    public static double MagnitudeSum(GgmlType type, byte[] weights, byte[] q8, int n)
    {
        var w = new float[n];
        var a = new float[n];
        KQuantFormats.Dequantize(type, weights, w);
        Q8_K.Dequantize(q8, a);
        double s = 0;
        for (int i = 0; i < n; i++) s += Math.Abs((double)w[i] * a[i]);
        return s;
    }

    /// <summary>Runs <paramref name="f"/> on one kernel path (callers sit in the non-parallel "KernelSettings" collection).</summary>
    public static T WithKernel<T>(KernelPath path, Func<T> f)
    {
        var saved = Kernels.Path;
        Kernels.Path = path;
        try { return f(); }
        finally { Kernels.Path = saved; }
    }
}

namespace QuantLlama.Tests.Quants;

/// <summary>Rows of test values: random ones at several scales and the adversarial shapes quantizers trip on.</summary>
internal static class TestRows
{
    public static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            // Roughly normal (sum of uniforms), with occasional outliers like real weights have.
            float g = (float)(rng.NextDouble() + rng.NextDouble() + rng.NextDouble() - 1.5) * 2f;
            if (rng.Next(64) == 0) g *= 6;
            v[i] = g * scale;
        }
        return v;
    }

    /// <summary>Named rows of length n (a multiple of 32): random at several scales plus adversarial ones.</summary>
    public static IEnumerable<(string Name, float[] Values)> All(int n, int seed = 1)
    {
        yield return ("random", Random(n, seed));
        yield return ("random small", Random(n, seed + 1, 1e-3f));
        yield return ("random large", Random(n, seed + 2, 1e3f));
        yield return ("zeros", new float[n]);
        yield return ("constant positive", Enumerable.Repeat(0.37f, n).ToArray());
        yield return ("constant negative", Enumerable.Repeat(-2.5f, n).ToArray());
        var huge = Random(n, seed + 3);
        huge[n / 3] = 6.0e4f;
        yield return ("one huge value", huge);
        var overflow = Random(n, seed + 4);
        overflow[n / 2] = 1.0e9f;
        yield return ("one value beyond fp16", overflow);
        yield return ("tiny magnitudes", Random(n, seed + 5, 1e-7f));
        yield return ("subnormal-scale", Random(n, seed + 6, 1e-38f));
        yield return ("alternating signs", Enumerable.Range(0, n).Select(i => (i % 2 == 0 ? 1f : -1f) * (1 + i % 7) * 0.125f).ToArray());
        // Exact halves after scaling probe the rounding rule (x*id lands on .5 steps).
        yield return ("half steps", Enumerable.Range(0, n).Select(i => (i % 32 == 0 ? 127f : (i % 255 - 127) + 0.5f)).ToArray());
        yield return ("one nonzero", Enumerable.Range(0, n).Select(i => i == 5 ? -0.75f : 0f).ToArray());
    }
}

using System.Runtime.Intrinsics;

namespace QuantLlama.Compute;

/// <summary>ggml's vectorised float functions, to the bit, where llama.cpp's results depend on them.</summary>
internal static class VectorMath
{
    /// <summary>
    /// ggml's vectorised single-precision exp (ggml_v_expf, the AVX2 form): a degree-5 polynomial around a
    /// power of two, with the over- and underflow branch.
    /// </summary>
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var r = Vector256.Create(12582912f); // 1.5 · 2^23
        var z = Vector256.FusedMultiplyAdd(x, Bits(0x3fb8aa3b), r);
        var n = z - r;
        var b = Vector256.FusedMultiplyAdd(-n, Bits(0x35bfbe8e), Vector256.FusedMultiplyAdd(-n, Bits(0x3f317200), x));
        var e = z.AsUInt32() << 23;
        var k = (e + Vector256.Create(1f).AsUInt32()).AsSingle();
        var absN = Vector256.Abs(n);
        var c = Vector256.GreaterThan(absN, Vector256.Create(126f));
        var u = b * b;
        var j = Vector256.FusedMultiplyAdd(
            Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(Bits(0x3c072010), b, Bits(0x3d2b9f17)), u,
                Vector256.FusedMultiplyAdd(Bits(0x3e2aaf33), b, Bits(0x3efffedb))),
            u, Bits(0x3f7ffff6) * b);
        if (Vector256.EqualsAll(c.AsUInt32(), Vector256<uint>.Zero)) return Vector256.FusedMultiplyAdd(j, k, k);
        var g = Vector256.LessThanOrEqual(n, Vector256<float>.Zero).AsUInt32() & Vector256.Create(0x82000000u);
        var s1 = (g + Vector256.Create(0x7f000000u)).AsSingle();
        var s2 = (e - g).AsSingle();
        var d = Vector256.GreaterThan(absN, Vector256.Create(192f));
        return Vector256.ConditionalSelect(d, s1 * s1,
            Vector256.ConditionalSelect(c, Vector256.FusedMultiplyAdd(s2, j, s2) * s1, Vector256.FusedMultiplyAdd(k, j, k)));
    }

    private static Vector256<float> Bits(uint bits) => Vector256.Create(BitConverter.UInt32BitsToSingle(bits));

    /// <summary>silu(x) = x / (1 + exp(−x)) as ggml_v_silu computes it (with <see cref="Exp"/>).</summary>
    public static Vector256<float> Silu(Vector256<float> x) => x / (Vector256<float>.One + Exp(Vector256<float>.Zero - x));
}

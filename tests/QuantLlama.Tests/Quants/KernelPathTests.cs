using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tests.Oracle;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>Tests that change process-wide kernel settings (Kernels.Path, WorkerPool thread count) run alone.</summary>
[CollectionDefinition("KernelSettings", DisableParallelization = true)]
public class KernelSettingsCollection;

/// <summary>Each SIMD path against the scalar reference, on random data with odd block counts and tails.</summary>
[Collection("KernelSettings")]
public class KernelPathTests
{
    public static readonly TheoryData<GgmlType> WeightTypes = new()
    {
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q8_1,
    };

    /// <summary>The paths offered are exactly those the CPU's instruction sets allow, and the best is the widest.</summary>
    [Fact]
    public void SupportedPathsFollowTheCpusInstructionSets()
    {
        bool avx2 = System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        bool avx512 = avx2 && System.Runtime.Intrinsics.X86.Avx512F.IsSupported && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported;
        bool advSimd = System.Runtime.Intrinsics.Arm.AdvSimd.Arm64.IsSupported;
        KernelPath[] expected = [KernelPath.Scalar, .. avx2 ? [KernelPath.Avx2] : Array.Empty<KernelPath>(),
            .. avx512 ? [KernelPath.Avx512] : Array.Empty<KernelPath>(), .. advSimd ? [KernelPath.AdvSimd] : Array.Empty<KernelPath>()];
        Assert.Equal(expected, Kernels.Supported);
        Assert.Equal(avx512 ? KernelPath.Avx512 : avx2 ? KernelPath.Avx2 : advSimd ? KernelPath.AdvSimd : KernelPath.Scalar, Kernels.Best);
    }

    [Fact]
    public void ForcingAnUnsupportedPathThrows()
    {
        foreach (var path in Enum.GetValues<KernelPath>().Where(p => !Kernels.IsSupported(p)))
            Assert.Throws<NotSupportedException>(() => Kernels.Path = path);
    }

    [Theory]
    [MemberData(nameof(WeightTypes))]
    public unsafe void EverySimdPathMatchesScalarDot(GgmlType type)
    {
        var kernel = QuantKernels.Get(type);
        int blockSize = GgmlTypeInfo.BlockSize(type);
        // Block counts 1..9 and 33 hit every unroll remainder; float types also get lengths that are not multiples of 8.
        int[] lengths = blockSize == 1 ? [1, 7, 8, 15, 16, 31, 33, 100, 1001] : [32, 64, 96, 128, 160, 224, 288, 1056];
        foreach (int n in lengths)
        {
            for (int seed = 0; seed < 3; seed++)
            {
                var w = new byte[GgmlTypeInfo.RowBytes(type, n)];
                Quantizer.QuantizeRow(type, TestRows.Random(n, 100 + seed), w);
                var x = TestRows.Random(n, 200 + seed, seed == 2 ? 1e-3f : 1f);
                float scalar = Run(KernelPath.Scalar, type, kernel, w, x, out var scalarAct);
                foreach (var path in Kernels.Supported)
                {
                    float simd = Run(path, type, kernel, w, x, out var act);
                    GgmlDifferentialTests.AssertBytes(scalarAct, act, $"{type} activation on {path}, n={n}");
                    double bound = GgmlDifferentialTests.DotTolerance(type, kernel.ActivationType, w, kernel.ActivationAsFloats ? RowOf(type, x) : act, n);
                    Assert.True(Math.Abs(simd - scalar) <= bound, $"{type} n={n} seed={seed} {path}: {simd:R} vs scalar {scalar:R} (tolerance {bound:R})");
                }
            }
        }
    }

    private static byte[] RowOf(GgmlType type, float[] x)
    {
        var row = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
        Quantizer.QuantizeRow(type, x, row);
        return row;
    }

    private static unsafe float Run(KernelPath path, GgmlType type, TypeKernel kernel, byte[] w, float[] x, out byte[] activation)
    {
        var saved = Kernels.Path;
        try
        {
            Kernels.Path = path;
            activation = new byte[kernel.ActivationRowBytes(x.Length)];
            fixed (float* xp = x)
            fixed (byte* ap = activation)
            fixed (byte* wp = w)
            {
                kernel.QuantizeActivation(xp, ap, x.Length);
                return kernel.Dot(wp, ap, x.Length);
            }
        }
        finally
        {
            Kernels.Path = saved;
        }
    }

    [Fact]
    public void Avx2DotOfTwoBlocksIsExactOnSmallIntegers()
    {
        // Scales of 1 and small integer quants: every path must give the exact integer dot.
        var w = new float[64];
        var x = new float[64];
        for (int i = 0; i < 64; i++) { w[i] = (i % 15) - 7; x[i] = (i % 9) - 4; }
        w[0] = -8; w[32] = -8; x[0] = 127; x[32] = -127;
        var wq = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q4_0, 64)];
        Quantizer.QuantizeRow(GgmlType.Q4_0, w, wq);
        var back = new float[64];
        Dequantizer.DequantizeRow(GgmlType.Q4_0, wq, back);
        Assert.Equal(w, back);
        var xq = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_0, 64)];
        Q8_0.QuantizeActivation(x, xq);
        var xback = new float[64];
        Dequantizer.DequantizeRow(GgmlType.Q8_0, xq, xback);
        double expected = 0;
        for (int i = 0; i < 64; i++) expected += (double)back[i] * xback[i];
        foreach (var path in Kernels.Supported)
            Assert.Equal(expected, GgmlDifferentialTests.DotOnPath(GgmlType.Q4_0, path, wq, xq, 64), 3);
    }

    /// <summary>
    /// The Q8_K activation quantizer gives the same bytes on every path (the scalar one is byte-identical to
    /// llama.cpp's, see KQuantDifferentialTests), on the shared adversarial rows and on NaN, infinity, ties of the
    /// largest magnitude and a maximum in the last lane.
    /// </summary>
    [Fact]
    public void Q8KActivationIsTheSameOnEveryPath()
    {
        var rows = KQuantTestRows.All().ToList();
        var rng = new Random(7);
        var special = KQuantTestRows.Gaussian(rng, 1024, 1f);
        special[3] = float.NaN;                       // block 0: a NaN, ignored by the maximum search
        special[256 + 10] = float.PositiveInfinity;   // block 1: an infinite maximum
        special[512 + 5] = -9f; special[512 + 200] = 9f; // block 2: the first of two equal magnitudes wins
        special[768 + 255] = 50f;                      // block 3: the maximum in the very last lane
        rows.Add(("special values", special));
        foreach (var (name, row) in rows)
        {
            byte[]? reference = null;
            foreach (var path in Kernels.Supported)
            {
                var bytes = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_K, row.Length)];
                KQuantTestRows.WithKernel(path, () => { Q8_K.Quantize(row, bytes); return 0; });
                if (reference == null) reference = bytes;
                else GgmlDifferentialTests.AssertBytes(reference, bytes, $"Q8_K of '{name}' on {path}");
            }
        }
        byte[] ggml = GgmlNative.QuantizeRowQ8KRef(special);
        var ours = new byte[ggml.Length];
        Q8_K.Quantize(special, ours);
        KQuantTestRows.ZeroUnwrittenQ8KSums(ggml, ours);
        GgmlDifferentialTests.AssertBytes(ggml, ours, "Q8_K of the special values against llama.cpp");
    }

    /// <summary>The AVX2 half-to-float conversion the F16 kernels use gives the table's bits for all 65536 halves (NaN: a NaN).</summary>
    [Fact]
    public unsafe void Avx2HalfConversionIsExactForEveryHalf()
    {
        Assert.SkipUnless(System.Runtime.Intrinsics.X86.Avx2.IsSupported, "this CPU has no AVX2");
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        var floats = new float[8];
        fixed (ushort* h = halves)
        fixed (float* f = floats)
        {
            for (int i = 0; i < halves.Length; i += 8)
            {
                System.Runtime.Intrinsics.Vector256.Store(X86Simd.LoadHalf8(h + i), f);
                for (int j = 0; j < 8; j++)
                {
                    float expected = Fp16.ToFloat(h[i + j]);
                    // NaN stays NaN with its sign (F16C would also set the quiet bit of a signalling NaN; no dot cares).
                    bool same = float.IsNaN(expected)
                        ? float.IsNaN(f[j]) && float.IsNegative(f[j]) == float.IsNegative(expected)
                        : BitConverter.SingleToInt32Bits(f[j]) == BitConverter.SingleToInt32Bits(expected);
                    Assert.True(same, $"half 0x{i + j:x4}: {f[j]:R} (0x{BitConverter.SingleToInt32Bits(f[j]):x8}), expected {expected:R}");
                }
            }
        }
    }

    /// <summary>
    /// The F16 matrix kernels read each half's bits as half / 2^112 (exponent not re-biased): exact for every finite
    /// half, subnormals included, and every group holding an infinity or a NaN is flagged.
    /// </summary>
    [Fact]
    public unsafe void ScaledHalfLoadIsExactForEveryFiniteHalfAndFlagsTheRest()
    {
        Assert.SkipUnless(System.Runtime.Intrinsics.X86.Avx2.IsSupported, "this CPU has no AVX2");
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        var values = new float[16];
        fixed (ushort* h = halves)
        fixed (float* f = values)
        {
            for (int i = 0; i < halves.Length; i += 16)
            {
                var magnitudes = System.Runtime.Intrinsics.Vector256<ushort>.Zero;
                F16Format.LoadScaled16(h + i, out var even, out var odd, ref magnitudes);
                System.Runtime.Intrinsics.Vector256.Store(even, f);
                System.Runtime.Intrinsics.Vector256.Store(odd, f + 8);
                bool anyNonFinite = false;
                for (int j = 0; j < 16; j++)
                {
                    float expected = Fp16.ToFloat(h[i + j]);
                    if (!float.IsFinite(expected)) { anyNonFinite = true; continue; }
                    float read = values[j % 2 == 0 ? j / 2 : 8 + j / 2];
                    Assert.True((double)read * Math.Pow(2, 112) == expected && float.IsNegative(read) == float.IsNegative(expected),
                        $"half 0x{i + j:x4}: read {read:R}, expected {expected:R} / 2^112");
                }
                Assert.Equal(anyNonFinite, F16Format.AnyNonFinite(magnitudes));
            }
        }
        Assert.Equal((double)F16Format.TwoTo112, Math.Pow(2, 112));
    }

    /// <summary>
    /// F16 weights that are multiples of 2^-24 (subnormal and the smallest normal halves) against small integers:
    /// every partial sum is exact, so every path and the 4-row tile must give the exact dot. Then an infinity or
    /// a NaN among the weights, in the vector part or the tail, must come out as llama.cpp's dot gives it.
    /// </summary>
    [Fact]
    public unsafe void HalfRowDotsAreExactOnSubnormalsAndKeepInfinityAndNaN()
    {
        const int n = 16 * 6 + 5;
        var kernel = QuantKernels.Get(GgmlType.F16);
        var weights = new float[n];
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            weights[i] = (float)(((i * 379) % 4095 - 2047) * Math.Pow(2, -24));
            x[i] = (i % 9) - 4;
        }
        weights[8] = -0f;
        double exact = 0;
        for (int i = 0; i < n; i++) exact += (double)weights[i] * x[i];
        Assert.NotEqual(0, exact);
        foreach (var path in Kernels.Supported)
            Assert.Equal((float)exact, Run(path, GgmlType.F16, kernel, RowOf(GgmlType.F16, weights), x, out _));
        if (Kernels.IsSupported(KernelPath.Avx2)) Assert.Equal((float)exact, TileRows(kernel, RowOf(GgmlType.F16, weights), x)[2]);

        (int Index, float Weight, float Activation, float Expected)[] special =
        [
            (3, float.PositiveInfinity, 2, float.PositiveInfinity),
            (20, float.NegativeInfinity, 1, float.NegativeInfinity),
            (98, float.PositiveInfinity, -1, float.NegativeInfinity),     // in the tail
            (5, float.NaN, 1, float.NaN),
            (7, float.PositiveInfinity, 0, float.NaN),                    // infinity times zero
        ];
        foreach (var (index, weight, activation, expected) in special)
        {
            var w = (float[])weights.Clone();
            var xs = (float[])x.Clone();
            w[index] = weight;
            xs[index] = activation;
            var row = RowOf(GgmlType.F16, w);
            Assert.Equal(expected, GgmlNative.VecDot(GgmlType.F16, n, row, RowOf(GgmlType.F16, xs)));
            foreach (var path in Kernels.Supported)
                Assert.Equal(expected, Run(path, GgmlType.F16, kernel, row, xs, out _));
            if (Kernels.IsSupported(KernelPath.Avx2))
                Assert.Equal(expected, TileRows(kernel, row, xs)[2]);
        }
    }

    /// <summary>The 4-row tile on one weight row: activation rows -x, 2x, x, 0 (the third is the row under test).</summary>
    private static unsafe float[] TileRows(TypeKernel kernel, byte[] w, float[] x)
    {
        int n = x.Length;
        long stride = kernel.ActivationRowBytes(n);
        var activations = new byte[4 * stride];
        var y = new float[4];
        var saved = Kernels.Path;
        try
        {
            Kernels.Path = KernelPath.Avx2;
            fixed (float* xp = x.Select(v => -v).Concat(x.Select(v => 2 * v)).Concat(x).Concat(new float[n]).ToArray())
            fixed (byte* a = activations)
            fixed (byte* wp = w)
            fixed (float* yp = y)
            {
                for (int r = 0; r < 4; r++) kernel.QuantizeActivation(xp + r * n, a + r * stride, n);
                kernel.Dot4Avx2(wp, a, (nint)stride, n, yp, 1);
                for (int r = 0; r < 4; r++)
                    Assert.Equal(BitConverter.SingleToInt32Bits(kernel.Dot(wp, a + r * stride, n)), BitConverter.SingleToInt32Bits(y[r]));
            }
        }
        finally
        {
            Kernels.Path = saved;
        }
        return y;
    }

    /// <summary>
    /// The F16/BF16 activation rounding gives the reference's bytes on every path, on values where rounding is
    /// delicate: half subnormals and the boundary to normals, exact ties, the largest halves and overflow, signed
    /// zeros, infinities, a NaN (whose group of 16 takes the scalar route) and bfloat16's own ties.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public unsafe void HalfActivationRoundingIsTheSameOnEveryPath(GgmlType type)
    {
        var kernel = QuantKernels.Get(type);
        var rng = new Random(11);
        var x = new float[16 * 12 + 5];
        float[] special =
        [
            0f, -0f, 5.96e-8f, 2.98e-8f, 2.99e-8f, -6.1e-5f, 6.097e-5f, 6.1035156e-5f, 1f + 1f / 2048, 1f + 3f / 2048,
            65504f, 65519f, 65520f, -65536f, 1e30f, float.PositiveInfinity, float.NegativeInfinity, 1e-40f, -1e-45f,
            BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000), float.MaxValue,
        ];
        for (int i = 0; i < x.Length; i++)
            x[i] = i < special.Length ? special[i] : (float)((rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-30, 20)));
        x[100] = float.NaN;
        byte[]? reference = null;
        foreach (var path in Kernels.Supported)
        {
            var saved = Kernels.Path;
            try
            {
                Kernels.Path = path;
                var activation = new byte[kernel.ActivationRowBytes(x.Length)];
                fixed (float* xp = x)
                fixed (byte* ap = activation)
                    kernel.QuantizeActivation(xp, ap, x.Length);
                if (reference == null) reference = activation;
                else GgmlDifferentialTests.AssertBytes(reference, activation, $"{type} activation on {path}");
            }
            finally
            {
                Kernels.Path = saved;
            }
        }
    }
}

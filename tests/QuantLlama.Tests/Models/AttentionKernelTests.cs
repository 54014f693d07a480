using QuantLlama.Quants;
using QuantLlama.Compute;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Models;

/// <summary>
/// The attention kernels against ggml's own CPU operations (llama.cpp's AVX2 build) on random data, to the bit:
/// ggml_flash_attn_ext for flash attention on, mul_mat → soft_max_ext → mul_mat (values transposed, as llama.cpp
/// stores them without flash attention) for off and for the f32 cache, on the queries' permuted view as llama.cpp's
/// graph has them. The cache holds 256 positions, as
/// llama.cpp's pads it.
/// </summary>
public unsafe class AttentionKernelTests(ITestOutputHelper output)
{
    private const int CachePositions = 256;

    [Theory]
    [InlineData(8, 8, 4, 1, 4)]     // stories260K's heads, one token late in the cache
    [InlineData(8, 8, 4, 5, 0)]     // its prompt
    [InlineData(8, 8, 4, 30, 220)]
    [InlineData(24, 8, 8, 1, 250)]
    [InlineData(64, 4, 2, 1, 100)]
    [InlineData(64, 4, 2, 13, 7)]
    [InlineData(64, 4, 2, 70, 30)]  // flash attention's tiled kernel
    [InlineData(128, 2, 1, 64, 0)]  // the tiled kernel over two 512-bit slices of the head
    [InlineData(96, 2, 2, 65, 100)] // a 64-value slice, then 32
    [InlineData(80, 2, 1, 130, 10)] // a 64-value slice, then 8-value steps; three row tiles
    [InlineData(40, 2, 1, 3, 33)]   // a head size that is not a multiple of 32 (ggml's dot finishes in double)
    [InlineData(128, 2, 2, 2, 200)]
    public void KernelsMatchGgml(int headDim, int heads, int kvHeads, int n, int start)
    {
        // Ours follows the x86 build's summation orders on every CPU; llama.cpp's ARM64 build sums in NEON's.
        Assert.SkipUnless(System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64,
            "llama.cpp's attention sums in another order off x64");
        foreach (var mode in new[] { AttentionRounding.Unfused, AttentionRounding.Flash, AttentionRounding.Full })
            foreach (float spread in new[] { 2f, 40f }) // 40: weights down to f16's subnormals and below
        {
            var (ours, theirs) = Run(headDim, heads, kvHeads, n, start, mode, spread, seed: headDim * 1000 + n * 10 + start);
            int differ = 0;
            float worst = 0;
            for (int i = 0; i < ours.Length; i++)
                if (BitConverter.SingleToInt32Bits(ours[i]) != BitConverter.SingleToInt32Bits(theirs[i]))
                {
                    differ++;
                    worst = Math.Max(worst, Math.Abs(ours[i] - theirs[i]));
                }
            output.WriteLine($"{mode}, spread {spread}: {differ} of {ours.Length} differ, worst {worst:G3}");
            Assert.True(differ == 0, $"{mode}, spread {spread}: {differ} of {ours.Length} outputs differ (worst {worst:G3})");
        }
    }

    private static (float[] Ours, float[] Theirs) Run(int headDim, int heads, int kvHeads, int n, int start, AttentionRounding mode, float spread, int seed)
    {
        bool flash = mode == AttentionRounding.Flash, f32 = mode == AttentionRounding.Full;
        var cacheType = f32 ? GgmlType.F32 : GgmlType.F16;
        var random = new Random(seed);
        int dim = heads * headDim, kvDim = kvHeads * headDim;
        float scale = 1f / MathF.Sqrt(headDim);
        var q = new float[n * dim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)((random.NextDouble() * 2 - 1) * spread);
        var keys = new Half[CachePositions * kvDim];
        var values = new Half[CachePositions * kvDim];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = (Half)(random.NextDouble() * 2 - 1);
            values[i] = (Half)(random.NextDouble() * 2 - 1);
        }

        // Ours: the cache as [positions x kvDim] rows, f16 or (the same values) f32.
        var keys32 = keys.Select(h => (float)h).ToArray();
        var values32 = values.Select(h => (float)h).ToArray();
        var ours = new float[n * dim];
        var scratch = new float[heads * Attention.ScratchFloats(CachePositions, headDim, n)];
        var qCopy = (float[])q.Clone();
        fixed (float* pq = qCopy, po = ours, ps = scratch)
        fixed (Half* pk = keys, pv = values)
        fixed (float* pk32 = keys32, pv32 = values32)
        {
            var job = new AttentionJob
            {
                Q = pq, Output = po, Scratch = ps, Keys = f32 ? (byte*)pk32 : (byte*)pk, Values = f32 ? (byte*)pv32 : (byte*)pv,
                Dim = dim, KvDim = kvDim, HeadDim = headDim, Group = heads / kvHeads, ContextSize = CachePositions,
                MaxBatch = n, N = n, Start = start, KeysF16 = !f32, Rounding = mode,
            };
            Attention.Run(&job, 1, heads);
        }

        // ggml's.
        using var g = new GgmlGraph();
        // [headDim, heads, n] rows as the projection writes them, then llama.cpp's permuted view [headDim, n, heads]:
        // not contiguous, so an f32 product with it goes through ggml's vector dot rather than its GEMM.
        IntPtr rows = g.Tensor(GgmlType.F32, headDim, heads, n);
        new Span<float>(q).CopyTo(new Span<float>(GgmlGraph.Data(rows), q.Length));
        IntPtr tq = g.Permute(rows, 0, 2, 1, 3);
        void Put(IntPtr tensor, long i, Half value)
        {
            if (f32) ((float*)GgmlGraph.Data(tensor))[i] = (float)value;
            else ((Half*)GgmlGraph.Data(tensor))[i] = value;
        }
        // [headDim, positions, kvHeads]: the cache's rows, head by head.
        IntPtr ByHead(Half[] cache)
        {
            IntPtr tensor = g.Tensor(cacheType, headDim, CachePositions, kvHeads);
            for (int kh = 0; kh < kvHeads; kh++)
                for (int t = 0; t < CachePositions; t++)
                    for (int d = 0; d < headDim; d++)
                        Put(tensor, ((long)kh * CachePositions + t) * headDim + d, cache[t * kvDim + kh * headDim + d]);
            return tensor;
        }
        IntPtr tk = ByHead(keys);
        IntPtr mask = g.Tensor(GgmlType.F16, CachePositions, n);
        var dm = (Half*)GgmlGraph.Data(mask);
        for (int i = 0; i < n; i++)
            for (int t = 0; t < CachePositions; t++)
                dm[(long)i * CachePositions + t] = t <= start + i ? (Half)0f : Half.NegativeInfinity;

        var theirs = new float[n * dim];
        if (flash)
        {
            IntPtr result = g.FlashAttnExt(tq, tk, ByHead(values), mask, scale);
            g.Compute(result);
            new Span<float>(GgmlGraph.Data(result), n * dim).CopyTo(theirs); // [headDim, heads, n]: our layout
        }
        else
        {
            IntPtr tv = g.Tensor(cacheType, CachePositions, headDim, kvHeads); // transposed
            for (int kh = 0; kh < kvHeads; kh++)
                for (int d = 0; d < headDim; d++)
                    for (int t = 0; t < CachePositions; t++)
                        Put(tv, ((long)kh * headDim + d) * CachePositions + t, values[t * kvDim + kh * headDim + d]);
            IntPtr kq = g.MulMat(tk, tq);
            IntPtr weights = g.SoftMaxExt(kq, mask, scale);
            IntPtr result = g.MulMat(tv, weights); // [headDim, n, heads]
            g.Compute(result);
            var dr = (float*)GgmlGraph.Data(result);
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < n; i++)
                    for (int d = 0; d < headDim; d++)
                        theirs[i * dim + h * headDim + d] = dr[((long)h * n + i) * headDim + d];
        }
        return (ours, theirs);
    }
}

public unsafe class AttentionRoundingTests
{
    /// <summary>The vectorised f16 rounding gives IEEE round-to-nearest-even's bits over every exponent, subnormals included.</summary>
    [Fact]
    public void RoundToHalfMatchesIeeeEverywhere()
    {
        var random = new Random(5);
        var x = new float[8192];
        for (int i = 0; i < 4096; i++)
            x[i] = (float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-30, 18)));
        // Ties between neighbouring halves (normal and subnormal), signed zeros, and f16's largest values.
        for (int i = 4096; i < x.Length; i++)
        {
            ushort h = (ushort)random.Next(0, 0x7BFF);
            float tie = ((float)BitConverter.UInt16BitsToHalf(h) + (float)BitConverter.UInt16BitsToHalf((ushort)(h + 1))) / 2;
            x[i] = (i % 2 == 0 ? 1 : -1) * (i % 64 == 0 ? 0f : i % 64 == 1 ? 65504f : i % 64 == 3 ? 65519.99f : tie);
        }
        var y = new float[x.Length];
        fixed (float* px = x, py = y) Attention.RoundToHalf(px, py, x.Length);
        for (int i = 0; i < x.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits((float)(Half)x[i]) == BitConverter.SingleToInt32Bits(y[i]), $"{x[i]:R}: {y[i]:R}, expected {(float)(Half)x[i]:R}");
    }

    /// <summary>Infinities, NaNs and magnitudes beyond f16's range, among ordinary values, round as ggml's scalar conversion does.</summary>
    [Fact]
    public void RoundToHalfMatchesGgmlBeyondItsRange()
    {
        float[] special =
        [
            65520f, -65520f, 65536f, -1e6f, 3e38f, float.MaxValue, float.PositiveInfinity, float.NegativeInfinity,
            float.NaN, -float.NaN, BitConverter.Int32BitsToSingle(0x7F800001), BitConverter.Int32BitsToSingle(unchecked((int)0xFFBFFFFF)),
        ];
        var random = new Random(9);
        var x = new float[256];
        for (int i = 0; i < x.Length; i++)
            x[i] = random.Next(3) == 0 ? special[random.Next(special.Length)] : (float)((random.NextDouble() * 2 - 1) * 70000);
        var y = new float[x.Length];
        fixed (float* px = x, py = y) Attention.RoundToHalf(px, py, x.Length);
        for (int i = 0; i < x.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(Fp16.Round(x[i])) == BitConverter.SingleToInt32Bits(y[i]),
                $"{x[i]:R} ({BitConverter.SingleToInt32Bits(x[i]):X8}): {BitConverter.SingleToInt32Bits(y[i]):X8}, expected {BitConverter.SingleToInt32Bits(Fp16.Round(x[i])):X8}");
    }

    /// <summary>The cache's f32 to f16 rounding gives .NET's conversion's bits for every kind of float, NaN included.</summary>
    [Fact]
    public void CacheRoundingMatchesTheConversion()
    {
        var random = new Random(11);
        float[] special = [0f, -0f, 65504f, 65519.99f, 65520f, -65520f, 1e10f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 5.96e-8f, 2.98e-8f, 2.9802326e-8f, 6.1e-5f];
        var x = new float[4099];
        for (int i = 0; i < x.Length; i++)
        {
            // A tie between neighbouring halves, a special value, or any value from f16's subnormals to beyond its range.
            ushort h = (ushort)random.Next(0, 0x7BFF);
            float tie = ((float)BitConverter.UInt16BitsToHalf(h) + (float)BitConverter.UInt16BitsToHalf((ushort)(h + 1))) / 2;
            x[i] = i % 5 == 0 ? special[random.Next(special.Length)]
                : i % 5 == 1 ? (random.Next(2) == 0 ? tie : -tie)
                : (float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-30, 18)));
        }
        var halves = new Half[x.Length];
        fixed (float* px = x)
        fixed (Half* ph = halves)
            HalfConversion.ToHalf(px, ph, x.Length);
        for (int i = 0; i < x.Length; i++)
            Assert.True(BitConverter.HalfToUInt16Bits((Half)x[i]) == BitConverter.HalfToUInt16Bits(halves[i]),
                $"{x[i]:R} (0x{BitConverter.SingleToInt32Bits(x[i]):x8}): 0x{BitConverter.HalfToUInt16Bits(halves[i]):x4}, expected 0x{BitConverter.HalfToUInt16Bits((Half)x[i]):x4}");
    }

    /// <summary>The cache's f16 to f32 conversion (eight or sixteen at a time, and the rest) gives every half's value; NaN stays NaN with its sign.</summary>
    [Fact]
    public void CacheConversionIsExactForEveryHalf()
    {
        var halves = new Half[65536 + 5]; // the last few through the scalar rest
        for (int i = 0; i < halves.Length; i++) halves[i] = BitConverter.UInt16BitsToHalf((ushort)(i * 37));
        var floats = new float[halves.Length];
        fixed (Half* h = halves)
        fixed (float* f = floats)
            HalfConversion.ToSingle(h, f, halves.Length);
        for (int i = 0; i < halves.Length; i++)
        {
            float expected = Fp16.ToFloat(BitConverter.HalfToUInt16Bits(halves[i]));
            bool same = float.IsNaN(expected)
                ? float.IsNaN(floats[i]) && float.IsNegative(floats[i]) == float.IsNegative(expected)
                : BitConverter.SingleToInt32Bits(floats[i]) == BitConverter.SingleToInt32Bits(expected);
            Assert.True(same, $"half 0x{BitConverter.HalfToUInt16Bits(halves[i]):x4}: {floats[i]:R}, expected {expected:R}");
        }
    }
}

/// <summary>
/// Flash attention's grouped heads (a chunk of keys and values read once for every query head that shares them)
/// against each head on its own through the reference loop, to the bit.
/// </summary>
public unsafe class FlashGroupTests
{
    private const int Positions = 200;

    [Theory]
    [InlineData(64, 32, 4)]   // TinyLlama's heads
    [InlineData(128, 8, 2)]
    [InlineData(80, 6, 3)]    // not a multiple of 32: ggml's dot finishes in double, the accumulator update on scalars
    [InlineData(96, 12, 4)]
    [InlineData(40, 4, 1)]    // one key/value head for all
    [InlineData(64, 2, 2)]    // no sharing
    public void DecodeRowsMatchEachHeadAlone(int headDim, int heads, int kvHeads)
    {
        foreach (float spread in new[] { 2f, 40f })
            for (int start = 0; start < Positions; start++)
                Compare(headDim, heads, kvHeads, n: 1, start, f16: true, spread, valueSize: 1, softCap: 0, window: 0, seed: start);
    }

    [Theory]
    [InlineData(64, 32, 4, 3, 150)]
    [InlineData(80, 6, 3, 7, 40)]
    [InlineData(128, 4, 1, 2, 0)]
    public void SmallBatchesOnTheF32CopyMatch(int headDim, int heads, int kvHeads, int n, int start)
    {
        foreach (float spread in new[] { 2f, 40f })
            Compare(headDim, heads, kvHeads, n, start, f16: false, spread, valueSize: 1, softCap: 0, window: 0, seed: n);
    }

    /// <summary>Values that overflow f16's range in the accumulator, soft-capped scores and a sliding window.</summary>
    [Theory]
    [InlineData(64, 8, 2, 40000f, 0f, 0)]
    [InlineData(96, 4, 2, 1f, 30f, 0)]
    [InlineData(64, 8, 4, 1f, 0f, 33)]
    public void OverflowSoftCapAndWindowMatch(int headDim, int heads, int kvHeads, float valueSize, float softCap, int window)
    {
        for (int start = 0; start < Positions; start += 7)
        {
            Compare(headDim, heads, kvHeads, n: 1, start, f16: true, spread: 20f, valueSize, softCap, window, seed: start);
            Compare(headDim, heads, kvHeads, n: 3, start, f16: false, spread: 20f, valueSize, softCap, window, seed: start);
        }
    }

    /// <summary>Several conversations in one dispatch, a tiled batch among them, each job's output as it would be alone.</summary>
    [Fact]
    public void SeveralJobsInOneDispatchMatch()
    {
        const int headDim = 64, heads = 8, kvHeads = 2, context = 256;
        int dim = heads * headDim, kvDim = kvHeads * headDim;
        // Rows, first position, f16 cache (else the f32 copy a batch reads).
        (int N, int Start, bool F16)[] shapes = [(1, 17, true), (3, 90, false), (1, 0, true), (Attention.FlashTile + 2, 10, false), (1, 199, true)];
        var random = new Random(3);
        var keys = Enumerable.Range(0, shapes.Length).Select(_ => HalfValued(random, context * kvDim, 1)).ToArray();
        var values = Enumerable.Range(0, shapes.Length).Select(_ => HalfValued(random, context * kvDim, 1)).ToArray();
        var queries = shapes.Select(s => Uniform(random, s.N * dim, 10)).ToArray();
        long scratchFloats = heads * Attention.ScratchFloats(context, headDim, Attention.FlashTile + 2);
        var together = shapes.Select(s => new float[s.N * dim]).ToArray();
        var alone = shapes.Select(s => new float[s.N * dim]).ToArray();
        var handles = new List<System.Runtime.InteropServices.GCHandle>();
        float* Pin(Array a)
        {
            var handle = System.Runtime.InteropServices.GCHandle.Alloc(a, System.Runtime.InteropServices.GCHandleType.Pinned);
            handles.Add(handle);
            return (float*)handle.AddrOfPinnedObject();
        }
        try
        {
            var jobs = new AttentionJob[shapes.Length];
            for (int j = 0; j < shapes.Length; j++)
            {
                var (n, start, f16) = shapes[j];
                jobs[j] = new AttentionJob
                {
                    Q = Pin(queries[j]), Output = Pin(together[j]), Scratch = Pin(new float[scratchFloats]),
                    Keys = f16 ? (byte*)Pin(ToHalf(keys[j])) : (byte*)Pin(keys[j]), Values = f16 ? (byte*)Pin(ToHalf(values[j])) : (byte*)Pin(values[j]),
                    Dim = dim, KvDim = kvDim, HeadDim = headDim, Group = heads / kvHeads, ContextSize = context,
                    MaxBatch = Attention.FlashTile + 2, N = n, Start = start, KeysF16 = f16, Rounding = AttentionRounding.Flash,
                };
            }
            fixed (AttentionJob* pj = jobs) Attention.Run(pj, jobs.Length, heads);
            for (int j = 0; j < shapes.Length; j++)
            {
                var job = jobs[j];
                job.Output = Pin(alone[j]);
                Attention.RunEachHead(&job, heads);
                AssertSameBits(alone[j], together[j], $"job {j}");
            }
        }
        finally
        {
            foreach (var handle in handles) handle.Free();
        }
    }

    private static void Compare(int headDim, int heads, int kvHeads, int n, int start, bool f16, float spread, float valueSize,
        float softCap, int window, int seed)
    {
        int context = Positions + n, dim = heads * headDim, kvDim = kvHeads * headDim;
        var random = new Random(seed * 31 + headDim);
        var q = Uniform(random, n * dim, spread);
        var keys = HalfValued(random, context * kvDim, 1);
        var values = HalfValued(random, context * kvDim, valueSize);
        var halfKeys = ToHalf(keys);
        var halfValues = ToHalf(values);
        var grouped = new float[n * dim];
        var alone = new float[n * dim];
        var scratch = new float[heads * Attention.ScratchFloats(context, headDim, n)];
        fixed (float* pq = q, pk = keys, pv = values, pg = grouped, pa = alone, ps = scratch)
        fixed (Half* hk = halfKeys, hv = halfValues)
        {
            var job = new AttentionJob
            {
                Q = pq, Output = pg, Scratch = ps, Keys = f16 ? (byte*)hk : (byte*)pk, Values = f16 ? (byte*)hv : (byte*)pv,
                Dim = dim, KvDim = kvDim, HeadDim = headDim, Group = heads / kvHeads, ContextSize = context, MaxBatch = n,
                N = n, Start = start, KeysF16 = f16, Rounding = AttentionRounding.Flash, SoftCap = softCap, Window = window,
            };
            Attention.Run(&job, 1, heads);
            job.Output = pa;
            Attention.RunEachHead(&job, heads);
        }
        AssertSameBits(alone, grouped, $"head size {headDim}, {heads}/{kvHeads} heads, {n} rows from {start}, spread {spread}");
    }

    private static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: output {i} is {actual[i]:R}, alone {expected[i]:R}");
    }

    private static float[] Uniform(Random random, int count, float spread)
        => Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 2 - 1) * spread)).ToArray();

    /// <summary>f16-valued floats (what the cache, or its f32 copy, holds) in ±size.</summary>
    private static float[] HalfValued(Random random, int count, float size)
        => Enumerable.Range(0, count).Select(_ => (float)(Half)((random.NextDouble() * 2 - 1) * size)).ToArray();

    private static Half[] ToHalf(float[] x) => x.Select(v => (Half)v).ToArray();
}

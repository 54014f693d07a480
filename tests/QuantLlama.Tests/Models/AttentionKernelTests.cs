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
}

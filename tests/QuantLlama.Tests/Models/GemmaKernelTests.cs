using QuantLlama.Compute;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Models;

/// <summary>Gemma's row kernels against ggml's own ops (llama.cpp's CPU library), bit for bit.</summary>
public unsafe class GemmaKernelTests
{
    /// <summary>Every f16 gate value (the lookup table's whole domain), and values beyond ±10, times an up of 1 and of 0.37.</summary>
    [Fact]
    public void GeGluEqualsGgmlsGeglu()
    {
        var gates = new List<float>();
        for (int i = 0; i < 1 << 16; i++)
        {
            float h = (float)BitConverter.UInt16BitsToHalf((ushort)i);
            if (float.IsFinite(h)) gates.Add(h);
        }
        var random = new Random(5);
        for (int i = 0; i < 4096; i++) gates.Add((random.NextSingle() * 2 - 1) * 12f); // not f16 values: rounded first
        gates.AddRange([-10f, 10f, -10.0001f, 9.9999f]);
        foreach (float up in new[] { 1f, 0.37f })
        {
            int n = gates.Count;
            var ours = gates.ToArray();
            var ups = Enumerable.Repeat(up, n).ToArray();
            fixed (float* g = ours, u = ups) RowKernels.GeGlu(g, u, 1, n);

            using var graph = new GgmlGraph();
            IntPtr a = graph.Tensor(GgmlType.F32, n), b = graph.Tensor(GgmlType.F32, n);
            gates.ToArray().CopyTo(new Span<float>(GgmlGraph.Data(a), n));
            ups.CopyTo(new Span<float>(GgmlGraph.Data(b), n));
            IntPtr result = graph.GegluSplit(a, b);
            graph.Compute(result);
            var expected = new Span<float>(GgmlGraph.Data(result), n);
            int mismatches = 0;
            for (int i = 0; i < n; i++)
                if (BitConverter.SingleToInt32Bits(ours[i]) != BitConverter.SingleToInt32Bits(expected[i])) mismatches++;
            Assert.True(mismatches == 0, $"{mismatches} of {n} differ (up {up})");
        }
    }

    /// <summary>Soft-capping as ggml's scale, tanh, scale ops compute it.</summary>
    [Fact]
    public void SoftCapEqualsGgmlsScaleTanhScale()
    {
        var random = new Random(7);
        int n = 100_000;
        var values = Enumerable.Range(0, n).Select(_ => (random.NextSingle() * 2 - 1) * 200f).ToArray();
        foreach (float cap in new[] { 50f, 30f, 2f })
        {
            var ours = values.ToArray();
            fixed (float* x = ours) RowKernels.SoftCap(x, n, cap);
            using var graph = new GgmlGraph();
            IntPtr a = graph.Tensor(GgmlType.F32, n);
            values.CopyTo(new Span<float>(GgmlGraph.Data(a), n));
            IntPtr result = graph.Scale(graph.Tanh(graph.Scale(a, 1f / cap)), cap);
            graph.Compute(result);
            Assert.Equal(new Span<float>(GgmlGraph.Data(result), n).ToArray(), ours);
        }
    }
}

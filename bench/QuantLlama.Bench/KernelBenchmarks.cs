using BenchmarkDotNet.Attributes;
using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Bench;

/// <summary>
/// Row dots in cache: 64 weight rows of 4096 values against one activation already in the partner type,
/// ours (the kernel the dispatcher picks on this CPU) against llama.cpp's vec_dot for the same bytes.
/// </summary>
public unsafe class DotBenchmarks
{
    private const int N = 4096, Rows = 64;

    [Params(GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.F16, GgmlType.F32,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
        GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.IQ3_S, GgmlType.IQ3_XXS, GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S,
        GgmlType.IQ1_S, GgmlType.IQ1_M)]
    public GgmlType Type { get; set; }

    private byte* _weights, _activation, _ourActivation;
    private long _rowBytes;
    private TypeKernel _kernel;
    private delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void> _ggml;

    [GlobalSetup]
    public void Setup()
    {
        _kernel = QuantKernels.Get(Type);
        _rowBytes = GgmlTypeInfo.RowBytes(Type, N);
        _weights = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(_rowBytes * Rows), 64);
        var values = Data.Random(N * Rows, 1);
        var w = new byte[_rowBytes * Rows];
        if (Quantizer.IsSupported(Type)) Quantizer.QuantizeRow(Type, values, w);
        else RandomBlocks(w); // the types we only read
        w.CopyTo(new Span<byte>(_weights, w.Length));
        var act = GgmlNative.FromFloatCpu(GgmlNative.VecDotType(Type), Data.Random(N, 2));
        if (Type == GgmlType.F32) act = System.Runtime.InteropServices.MemoryMarshal.AsBytes(Data.Random(N, 2).AsSpan()).ToArray();
        _activation = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)act.Length, 64);
        act.CopyTo(new Span<byte>(_activation, act.Length));
        _ourActivation = _activation;
        if (_kernel.ActivationAsFloats || _kernel.ActivationBlockInfoAppended)
        {
            // Ours holds the same rounded activation as f32 values (TypeKernel.ActivationAsFloats), or the same
            // Q8_0 bytes followed by their scales and sums (TypeKernel.ActivationBlockInfoAppended).
            var x = Data.Random(N, 2);
            _ourActivation = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)_kernel.ActivationRowBytes(N), 64);
            fixed (float* xp = x) _kernel.QuantizeActivation(xp, _ourActivation, N);
        }
        _ggml = GgmlNative.VecDotPointer(Type);
    }

    /// <summary>Random blocks with a small positive fp16 scale first in each.</summary>
    private void RandomBlocks(byte[] w)
    {
        new Random(1).NextBytes(w);
        int typeSize = GgmlTypeInfo.TypeSize(Type);
        for (int b = 0; b < w.Length / typeSize; b++)
        {
            BitConverter.TryWriteBytes(w.AsSpan(b * typeSize), (Half)0.01);
            // IQ1_M keeps its fp16 scale in the top nibbles of its last 8 bytes: no sign, no large exponent.
            if (Type == GgmlType.IQ1_M) w[(b + 1) * typeSize - 1] &= 0x3F;
        }
    }

    [Benchmark(Baseline = true)]
    public float LlamaCpp()
    {
        float s = 0, total = 0;
        for (int r = 0; r < Rows; r++)
        {
            _ggml(N, &s, 0, _weights + r * _rowBytes, 0, _activation, 0, 1);
            total += s;
        }
        return total;
    }

    [Benchmark]
    public float QuantLlama()
    {
        float total = 0;
        for (int r = 0; r < Rows; r++) total += _kernel.Dot(_weights + r * _rowBytes, _ourActivation, N);
        return total;
    }
}

/// <summary>
/// Matrix-vector product 4096 x 4096 from f32 activation to f32 output, one thread on both sides (activation
/// quantized once, then a dot per row): ours through MatMul.MatVec, llama.cpp's from_float + vec_dot per row.
/// A second line of ours uses all cores through the worker pool.
/// </summary>
public unsafe class MatVecBenchmarks
{
    private const int Cols = 4096;

    [Params(GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K)]
    public GgmlType Type { get; set; }

    /// <summary>4096 streams the weights from memory; 64–128 keeps them in L2, which times the kernels alone.</summary>
    public int Rows { get; set; } = 4096;

    private byte* _weights, _scratch;
    private float[] _x = [], _y = [];
    private long _rowBytes;
    private delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void> _ggmlDot;
    private delegate* unmanaged<float*, void*, long, void> _ggmlFromFloat;

    [GlobalSetup]
    public void Setup()
    {
        _rowBytes = GgmlTypeInfo.RowBytes(Type, Cols);
        _weights = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(_rowBytes * Rows), 64);
        var w = new byte[_rowBytes * Rows];
        Quantizer.QuantizeRow(Type, Data.Random(Rows * Cols, 3), w);
        w.CopyTo(new Span<byte>(_weights, w.Length));
        _x = Data.Random(Cols, 4);
        _y = new float[Rows];
        _scratch = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(1 << 20, 64);
        _ggmlDot = GgmlNative.VecDotPointer(Type);
        _ggmlFromFloat = GgmlNative.FromFloatPointer(GgmlNative.VecDotType(Type));
    }

    [Benchmark(Baseline = true)]
    public float LlamaCppOneThread()
    {
        fixed (float* x = _x)
        fixed (float* y = _y)
        {
            _ggmlFromFloat(x, _scratch, Cols);
            for (int r = 0; r < Rows; r++) _ggmlDot(Cols, y + r, 0, _weights + r * _rowBytes, 0, _scratch, 0, 1);
        }
        return _y[0];
    }

    [Benchmark]
    public float QuantLlamaOneThread()
    {
        WorkerPool.SetThreadCount(1);
        MatMul.MatVec(Type, _weights, Rows, Cols, _x, _y);
        return _y[0];
    }

    [Benchmark]
    public float QuantLlamaAllCores()
    {
        if (WorkerPool.ThreadCount != Environment.ProcessorCount) WorkerPool.SetThreadCount(Environment.ProcessorCount);
        MatMul.MatVec(Type, _weights, Rows, Cols, _x, _y);
        return _y[0];
    }
}

/// <summary>Prompt-style product: 32 activation rows against 1024 x 4096 weights, MatMat against 32 MatVecs (ours, one thread).</summary>
public unsafe class MatMatBenchmarks
{
    private const int Rows = 1024, Cols = 4096, N = 32;

    [Params(GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K)]
    public GgmlType Type { get; set; }

    private byte* _weights;
    private float[] _x = [], _y = [];

    [GlobalSetup]
    public void Setup()
    {
        long rowBytes = GgmlTypeInfo.RowBytes(Type, Cols);
        _weights = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(rowBytes * Rows), 64);
        var w = new byte[rowBytes * Rows];
        Quantizer.QuantizeRow(Type, Data.Random(Rows * Cols, 5), w);
        w.CopyTo(new Span<byte>(_weights, w.Length));
        _x = Data.Random(N * Cols, 6);
        _y = new float[N * Rows];
        WorkerPool.SetThreadCount(1);
    }

    [Benchmark(Baseline = true)]
    public float MatVecs()
    {
        for (int i = 0; i < N; i++) MatMul.MatVec(Type, _weights, Rows, Cols, _x.AsSpan(i * Cols, Cols), _y.AsSpan(i * Rows, Rows));
        return _y[0];
    }

    [Benchmark]
    public float MatMat()
    {
        MatMul.MatMat(Type, _weights, Rows, Cols, _x, N, _y);
        return _y[0];
    }
}

internal static class Data
{
    public static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        return v;
    }
}

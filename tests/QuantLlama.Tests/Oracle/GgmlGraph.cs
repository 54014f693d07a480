using System.Runtime.InteropServices;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Oracle;

/// <summary>
/// A ggml context and graph from llama.cpp's own libraries (the AVX2 build's libggml-base and libggml-cpu), for
/// kernel-level differential tests of operations that need a graph (attention). Not thread-safe.
/// </summary>
public sealed unsafe class GgmlGraph : IDisposable
{
    [StructLayout(LayoutKind.Sequential)]
    private struct InitParams
    {
        public nuint MemSize;
        public IntPtr MemBuffer;
        public byte NoAlloc;
    }

    private static readonly object Gate = new();
    private static bool _loaded;
    private static delegate* unmanaged<InitParams, IntPtr> _init;
    private static delegate* unmanaged<IntPtr, void> _free;
    private static delegate* unmanaged<IntPtr, GgmlType, long, long, long, long, IntPtr> _newTensor4d;
    private static delegate* unmanaged<IntPtr, void*> _getData;
    private static delegate* unmanaged<IntPtr, IntPtr, IntPtr, IntPtr, IntPtr, float, float, float, IntPtr> _flashAttnExt;
    private static delegate* unmanaged<IntPtr, IntPtr, IntPtr, IntPtr> _mulMat;
    private static delegate* unmanaged<IntPtr, IntPtr, int, int, int, int, IntPtr> _permute;
    private static delegate* unmanaged<IntPtr, IntPtr, IntPtr, float, float, IntPtr> _softMaxExt;
    private static delegate* unmanaged<IntPtr, IntPtr, IntPtr, IntPtr, int, int, int, float, float, float, float, float, float, IntPtr> _ropeExt;
    private static delegate* unmanaged<IntPtr, IntPtr, IntPtr, IntPtr> _gegluSplit;
    private static delegate* unmanaged<IntPtr, IntPtr, IntPtr> _tanh;
    private static delegate* unmanaged<IntPtr, IntPtr, float, IntPtr> _scale;
    private static delegate* unmanaged<IntPtr, IntPtr> _newGraph;
    private static delegate* unmanaged<IntPtr, IntPtr, void> _buildForwardExpand;
    private static delegate* unmanaged<IntPtr, IntPtr, int, int> _computeWithCtx;

    private readonly IntPtr _ctx;

    public GgmlGraph(long memoryBytes = 256 << 20)
    {
        EnsureLoaded();
        _ctx = _init(new InitParams { MemSize = (nuint)memoryBytes });
        if (_ctx == IntPtr.Zero) throw new InvalidOperationException("ggml_init failed");
    }

    private static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (_loaded) return;
            GgmlNative.VecDotType(GgmlType.F16); // loads the libraries and runs ggml_cpu_init
            IntPtr b = NativeLibrary.Load(GgmlNative.LibraryPath("libggml-base.so"));
            IntPtr c = NativeLibrary.Load(GgmlNative.LibraryPath("libggml-cpu.so"));
            _init = (delegate* unmanaged<InitParams, IntPtr>)NativeLibrary.GetExport(b, "ggml_init");
            _free = (delegate* unmanaged<IntPtr, void>)NativeLibrary.GetExport(b, "ggml_free");
            _newTensor4d = (delegate* unmanaged<IntPtr, GgmlType, long, long, long, long, IntPtr>)NativeLibrary.GetExport(b, "ggml_new_tensor_4d");
            _getData = (delegate* unmanaged<IntPtr, void*>)NativeLibrary.GetExport(b, "ggml_get_data");
            _flashAttnExt = (delegate* unmanaged<IntPtr, IntPtr, IntPtr, IntPtr, IntPtr, float, float, float, IntPtr>)NativeLibrary.GetExport(b, "ggml_flash_attn_ext");
            _mulMat = (delegate* unmanaged<IntPtr, IntPtr, IntPtr, IntPtr>)NativeLibrary.GetExport(b, "ggml_mul_mat");
            _permute = (delegate* unmanaged<IntPtr, IntPtr, int, int, int, int, IntPtr>)NativeLibrary.GetExport(b, "ggml_permute");
            _softMaxExt = (delegate* unmanaged<IntPtr, IntPtr, IntPtr, float, float, IntPtr>)NativeLibrary.GetExport(b, "ggml_soft_max_ext");
            _ropeExt = (delegate* unmanaged<IntPtr, IntPtr, IntPtr, IntPtr, int, int, int, float, float, float, float, float, float, IntPtr>)NativeLibrary.GetExport(b, "ggml_rope_ext");
            _gegluSplit = (delegate* unmanaged<IntPtr, IntPtr, IntPtr, IntPtr>)NativeLibrary.GetExport(b, "ggml_geglu_split");
            _tanh = (delegate* unmanaged<IntPtr, IntPtr, IntPtr>)NativeLibrary.GetExport(b, "ggml_tanh");
            _scale = (delegate* unmanaged<IntPtr, IntPtr, float, IntPtr>)NativeLibrary.GetExport(b, "ggml_scale");
            _newGraph = (delegate* unmanaged<IntPtr, IntPtr>)NativeLibrary.GetExport(b, "ggml_new_graph");
            _buildForwardExpand = (delegate* unmanaged<IntPtr, IntPtr, void>)NativeLibrary.GetExport(b, "ggml_build_forward_expand");
            _computeWithCtx = (delegate* unmanaged<IntPtr, IntPtr, int, int>)NativeLibrary.GetExport(c, "ggml_graph_compute_with_ctx");
            _loaded = true;
        }
    }

    public IntPtr Tensor(GgmlType type, long ne0, long ne1 = 1, long ne2 = 1, long ne3 = 1) => _newTensor4d(_ctx, type, ne0, ne1, ne2, ne3);

    public static void* Data(IntPtr tensor) => _getData(tensor);

    public IntPtr FlashAttnExt(IntPtr q, IntPtr k, IntPtr v, IntPtr mask, float scale) => _flashAttnExt(_ctx, q, k, v, mask, scale, 0, 0);

    /// <summary>ggml_flash_attn_ext with a logit soft-cap.</summary>
    public IntPtr FlashAttnExt(IntPtr q, IntPtr k, IntPtr v, IntPtr mask, float scale, float softCap) => _flashAttnExt(_ctx, q, k, v, mask, scale, 0, softCap);

    public IntPtr MulMat(IntPtr a, IntPtr b) => _mulMat(_ctx, a, b);

    /// <summary>ggml_permute: a view whose dimension i is <paramref name="a"/>'s dimension at axis i's position.</summary>
    public IntPtr Permute(IntPtr a, int axis0, int axis1, int axis2, int axis3) => _permute(_ctx, a, axis0, axis1, axis2, axis3);

    /// <summary>ggml_geglu_split: gelu(a) · b.</summary>
    public IntPtr GegluSplit(IntPtr a, IntPtr b) => _gegluSplit(_ctx, a, b);

    public IntPtr Tanh(IntPtr a) => _tanh(_ctx, a);

    public IntPtr Scale(IntPtr a, float s) => _scale(_ctx, a, s);

    public IntPtr SoftMaxExt(IntPtr a, IntPtr mask, float scale) => _softMaxExt(_ctx, a, mask, scale, 0);

    /// <summary>ggml_rope_ext: <paramref name="a"/> [head, heads, tokens] rotated at the I32 positions <paramref name="positions"/>;
    /// <paramref name="freqFactors"/> [n_dims/2] or zero; mode 0 normal, 2 NeoX.</summary>
    public IntPtr RopeExt(IntPtr a, IntPtr positions, IntPtr freqFactors, int dims, int mode, int originalContext, float freqBase,
        float freqScale, float extFactor, float attnFactor, float betaFast, float betaSlow)
        => _ropeExt(_ctx, a, positions, freqFactors, dims, mode, originalContext, freqBase, freqScale, extFactor, attnFactor, betaFast, betaSlow);

    /// <summary>Builds the graph ending in <paramref name="result"/> and computes it on the CPU.</summary>
    public void Compute(IntPtr result, int threads = 2)
    {
        IntPtr graph = _newGraph(_ctx);
        _buildForwardExpand(graph, result);
        int status = _computeWithCtx(_ctx, graph, threads);
        if (status != 0) throw new InvalidOperationException($"ggml_graph_compute_with_ctx returned {status}");
    }

    public void Dispose() => _free(_ctx);
}

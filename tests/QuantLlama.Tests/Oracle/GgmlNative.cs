using System.Runtime.InteropServices;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Oracle;

/// <summary>
/// llama.cpp's own ggml (from the LLamaSharp.Backend.Cpu 0.30.0 package, AVX2 build) as a reference oracle:
/// its reference quantizer (<c>ggml_quantize_chunk</c>), its dequantizers (<c>ggml_get_type_traits</c>.to_float)
/// and its CPU kernels (<c>ggml_get_type_traits_cpu</c>: from_float for the activation, vec_dot).
/// Tests only; the product never loads native code.
/// </summary>
/// <remarks>
/// Struct layouts (checked at load time against known values, so a layout change fails loudly):
/// <code>
/// struct ggml_type_traits     { const char* type_name; int64 blck_size; int64 blck_size_interleave;
///                               size_t type_size; bool is_quantized; to_float; from_float_ref; }
/// struct ggml_type_traits_cpu { from_float; vec_dot; enum ggml_type vec_dot_type; int64 nrows; }
/// </code>
/// </remarks>
public static unsafe class GgmlNative
{
    [StructLayout(LayoutKind.Sequential)]
    private struct TypeTraits
    {
        public IntPtr TypeName;
        public long BlockSize;
        public long BlockSizeInterleave;
        public nuint TypeSize;
        public byte IsQuantized;
        public delegate* unmanaged<void*, float*, long, void> ToFloat;
        public delegate* unmanaged<float*, void*, long, void> FromFloatRef;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TypeTraitsCpu
    {
        public delegate* unmanaged<float*, void*, long, void> FromFloat;
        public delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void> VecDot;
        public GgmlType VecDotType;
        public long NRows;
    }

    private static readonly object Gate = new();
    private static bool _loaded;
    private static delegate* unmanaged<GgmlType, float*, void*, long, long, long, float*, nuint> _quantizeChunk;
    private static delegate* unmanaged<GgmlType, TypeTraits*> _getTypeTraits;
    private static delegate* unmanaged<GgmlType, TypeTraitsCpu*> _getTypeTraitsCpu;

    /// <summary>
    /// Folder holding llama.cpp's native libraries in the test output: the AVX2 build on x64, the only build on
    /// ARM64 (where the suite runs as a self-contained publish; see docs/testing.md).
    /// </summary>
    public static string NativeDirectory => RuntimeInformation.ProcessArchitecture == Architecture.Arm64
        ? Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-arm64", "native")
        : Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "avx2");

    /// <summary>
    /// True where llama.cpp's reference quantizers give the bytes of its x64 build, which ours give on every CPU.
    /// Its ARM64 build differs where the C source leaves the result to the compiler or the CPU: multiply-adds in
    /// the k-quant scale searches are fused (its libggml-base has fmadd in quantize_row_q2_K_ref … q6_K_ref; the
    /// x64 build has no FMA instruction at all), and an infinite x/d (a subnormal scale) converts to an integer
    /// by saturating, where x86 gives 0x80000000.
    /// </summary>
    public static bool QuantizesLikeX64 => RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>Path of one of the native libraries (e.g. "libggml-base.so").</summary>
    public static string LibraryPath(string fileName) => Path.Combine(NativeDirectory, fileName);

    private static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (_loaded) return;
            IntPtr baseLib = NativeLibrary.Load(LibraryPath("libggml-base.so"));
            IntPtr cpuLib = NativeLibrary.Load(LibraryPath("libggml-cpu.so"));
            _quantizeChunk = (delegate* unmanaged<GgmlType, float*, void*, long, long, long, float*, nuint>)
                NativeLibrary.GetExport(baseLib, "ggml_quantize_chunk");
            _getTypeTraits = (delegate* unmanaged<GgmlType, TypeTraits*>)NativeLibrary.GetExport(baseLib, "ggml_get_type_traits");
            _getTypeTraitsCpu = (delegate* unmanaged<GgmlType, TypeTraitsCpu*>)NativeLibrary.GetExport(cpuLib, "ggml_get_type_traits_cpu");
            // Fills ggml-cpu's fp16 tables; the CPU kernels read them.
            ((delegate* unmanaged<void>)NativeLibrary.GetExport(cpuLib, "ggml_cpu_init"))();
            _loaded = true;
            CheckLayouts();
        }
    }

    private static void CheckLayouts()
    {
        Check(GgmlType.Q4_0, "q4_0", 32, 18, true);
        Check(GgmlType.Q8_0, "q8_0", 32, 34, true);
        Check(GgmlType.F16, "f16", 1, 2, false);
        Check(GgmlType.BF16, "bf16", 1, 2, false);
        Check(GgmlType.Q6_K, "q6_K", 256, 210, true);
        if (CpuTraits(GgmlType.Q4_0)->VecDotType != GgmlType.Q8_0 || CpuTraits(GgmlType.Q4_1)->VecDotType != GgmlType.Q8_1
            || CpuTraits(GgmlType.Q4_K)->VecDotType != GgmlType.Q8_K || CpuTraits(GgmlType.F16)->VecDotType != GgmlType.F16)
            throw new InvalidOperationException("ggml_type_traits_cpu layout does not match");

        static void Check(GgmlType type, string name, long blockSize, int typeSize, bool quantized)
        {
            var t = _getTypeTraits(type);
            if (Marshal.PtrToStringUTF8(t->TypeName) != name || t->BlockSize != blockSize || (int)t->TypeSize != typeSize
                || (t->IsQuantized != 0) != quantized)
                throw new InvalidOperationException($"ggml_type_traits layout does not match for {type}");
        }
    }

    private static TypeTraitsCpu* CpuTraits(GgmlType type) => _getTypeTraitsCpu(type);

    /// <summary>ggml_quantize_chunk without importance matrix: rows of n_per_row values to blocks.</summary>
    public static byte[] QuantizeChunk(GgmlType type, ReadOnlySpan<float> src, int nPerRow) => QuantizeChunk(type, src, nPerRow, default);

    /// <summary>ggml_quantize_chunk with quant_weights: <paramref name="importance"/> holds one weight per column
    /// [nPerRow] (empty for none), as llama-quantize passes an importance matrix's entry.</summary>
    public static byte[] QuantizeChunk(GgmlType type, ReadOnlySpan<float> src, int nPerRow, ReadOnlySpan<float> importance)
    {
        EnsureLoaded();
        int rows = src.Length / nPerRow;
        var dst = new byte[GgmlTypeInfo.RowBytes(type, nPerRow) * rows];
        fixed (float* s = src)
        fixed (float* w = importance)
        fixed (byte* d = dst)
        {
            nuint written = _quantizeChunk(type, s, d, 0, rows, nPerRow, w);
            if ((long)written != dst.Length) throw new InvalidOperationException($"ggml_quantize_chunk wrote {written} bytes, expected {dst.Length}");
        }
        return dst;
    }

    /// <summary>The type's reference quantizer (type_traits.from_float_ref), e.g. quantize_row_q8_1_ref.</summary>
    public static byte[] QuantizeRowRef(GgmlType type, ReadOnlySpan<float> src)
    {
        EnsureLoaded();
        var fn = _getTypeTraits(type)->FromFloatRef;
        if (fn == null) throw new NotSupportedException($"ggml has no reference quantizer for {type}");
        var dst = new byte[GgmlTypeInfo.RowBytes(type, src.Length)];
        fixed (float* s = src)
        fixed (byte* d = dst)
            fn(s, d, src.Length);
        return dst;
    }

    private static IntPtr BaseExport(string name)
    {
        EnsureLoaded();
        return NativeLibrary.GetExport(NativeLibrary.Load(LibraryPath("libggml-base.so")), name);
    }

    /// <summary>
    /// quantize_row_q8_K_ref, called by name: ggml's type traits leave Q8_K's from_float_ref empty.
    /// </summary>
    public static byte[] QuantizeRowQ8KRef(ReadOnlySpan<float> src)
    {
        var fn = (delegate* unmanaged<float*, void*, long, void>)BaseExport("quantize_row_q8_K_ref");
        var dst = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_K, src.Length)];
        fixed (float* s = src)
        fixed (byte* d = dst)
            fn(s, d, src.Length);
        return dst;
    }

    /// <summary>type_traits.to_float: blocks to f32.</summary>
    public static float[] Dequantize(GgmlType type, ReadOnlySpan<byte> src, int count)
    {
        EnsureLoaded();
        var fn = _getTypeTraits(type)->ToFloat;
        // Q8_K has no to_float in the traits; its dequantizer is exported by name.
        if (fn == null && type == GgmlType.Q8_K) fn = (delegate* unmanaged<void*, float*, long, void>)BaseExport("dequantize_row_q8_K");
        if (fn == null) throw new NotSupportedException($"ggml has no to_float for {type}");
        var dst = new float[count];
        fixed (byte* s = src)
        fixed (float* d = dst)
            fn(s, d, count);
        return dst;
    }

    /// <summary>The activation type ggml's CPU backend pairs with weights of this type (vec_dot_type).</summary>
    public static GgmlType VecDotType(GgmlType type)
    {
        EnsureLoaded();
        return CpuTraits(type)->VecDotType;
    }

    /// <summary>ggml-cpu's from_float (the SIMD activation quantizer for the machine's build) for the given type.</summary>
    public static byte[] FromFloatCpu(GgmlType type, ReadOnlySpan<float> src)
    {
        EnsureLoaded();
        var fn = CpuTraits(type)->FromFloat;
        if (fn == null) throw new NotSupportedException($"ggml-cpu has no from_float for {type}");
        var dst = new byte[GgmlTypeInfo.RowBytes(type, src.Length)];
        fixed (float* s = src)
        fixed (byte* d = dst)
            fn(s, d, src.Length);
        return dst;
    }

    /// <summary>ggml-cpu's vec_dot for weights of <paramref name="type"/> against an activation already in VecDotType(type).</summary>
    public static float VecDot(GgmlType type, int n, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activation)
    {
        EnsureLoaded();
        var fn = CpuTraits(type)->VecDot;
        if (fn == null) throw new NotSupportedException($"ggml-cpu has no vec_dot for {type}");
        float s = 0;
        fixed (byte* w = weights)
        fixed (byte* a = activation)
            fn(n, &s, 0, w, 0, a, 0, 1);
        return s;
    }

    /// <summary>Raw from_float pointer (ggml-cpu's activation quantizer), for benchmarks.</summary>
    public static delegate* unmanaged<float*, void*, long, void> FromFloatPointer(GgmlType type)
    {
        EnsureLoaded();
        return CpuTraits(type)->FromFloat;
    }

    /// <summary>Raw vec_dot pointer, for benchmarks that must not pay for the managed wrapper.</summary>
    public static delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void> VecDotPointer(GgmlType type)
    {
        EnsureLoaded();
        return CpuTraits(type)->VecDot;
    }
}

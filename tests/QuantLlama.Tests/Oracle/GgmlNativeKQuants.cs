using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Oracle;

/// <summary>
/// Minimal bindings to llama.cpp's own ggml (from LLamaSharp.Backend.Cpu) for the k-quant differential tests:
/// the reference quantizer behind ggml_quantize_chunk, dequantize_row_*, the Q8_K activation quantizer and the CPU
/// vec_dot kernels. Temporary: to be replaced by the shared Oracle/GgmlNative once it lands on main.
/// </summary>
internal static unsafe class GgmlNativeKQuants
{
    private static readonly Lazy<Library?> Loaded = new(Load);

    public static bool IsAvailable => Loaded.Value is not null;

    private static Library Lib => Loaded.Value ?? throw new InvalidOperationException("llama.cpp's native ggml is not available");

    private sealed class Library
    {
        public nint Base, Cpu;
        public delegate* unmanaged<int, float*, void*, long, long, long, float*, nuint> QuantizeChunk;
        public delegate* unmanaged<float*, void*, long, void> QuantizeQ8KRef;
        public delegate* unmanaged<float*, void*, long, void> QuantizeQ8KCpu;
        public readonly Dictionary<GgmlType, nint> Dequantize = new();
        public readonly Dictionary<GgmlType, nint> VecDot = new();
    }

    private static Library? Load()
    {
        string variant = Avx512F.IsSupported ? "avx512" : Avx2.IsSupported ? "avx2" : Avx.IsSupported ? "avx" : "noavx";
        string dir = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", variant);
        string basePath = Path.Combine(dir, "libggml-base.so"), cpuPath = Path.Combine(dir, "libggml-cpu.so");
        if (!OperatingSystem.IsLinux() || !File.Exists(basePath) || !File.Exists(cpuPath)) return null;
        var lib = new Library { Base = NativeLibrary.Load(basePath) };
        lib.Cpu = NativeLibrary.Load(cpuPath);
        lib.QuantizeChunk = (delegate* unmanaged<int, float*, void*, long, long, long, float*, nuint>)
            NativeLibrary.GetExport(lib.Base, "ggml_quantize_chunk");
        lib.QuantizeQ8KRef = (delegate* unmanaged<float*, void*, long, void>)NativeLibrary.GetExport(lib.Base, "quantize_row_q8_K_ref");
        lib.QuantizeQ8KCpu = (delegate* unmanaged<float*, void*, long, void>)NativeLibrary.GetExport(lib.Cpu, "quantize_row_q8_K");
        ((delegate* unmanaged<void>)NativeLibrary.GetExport(lib.Cpu, "ggml_cpu_init"))();
        foreach (var (type, name) in new[] { (GgmlType.Q2_K, "q2_K"), (GgmlType.Q3_K, "q3_K"), (GgmlType.Q4_K, "q4_K"),
                     (GgmlType.Q5_K, "q5_K"), (GgmlType.Q6_K, "q6_K") })
        {
            lib.Dequantize[type] = NativeLibrary.GetExport(lib.Base, "dequantize_row_" + name);
            lib.VecDot[type] = NativeLibrary.GetExport(lib.Cpu, $"ggml_vec_dot_{name}_q8_K");
        }
        lib.Dequantize[GgmlType.Q8_K] = NativeLibrary.GetExport(lib.Base, "dequantize_row_q8_K");
        return lib;
    }

    /// <summary>ggml_quantize_chunk without an importance matrix: one row of values.</summary>
    public static byte[] Quantize(GgmlType type, ReadOnlySpan<float> row)
    {
        var dst = new byte[GgmlTypeInfo.RowBytes(type, row.Length)];
        fixed (float* s = row)
        fixed (byte* d = dst)
            Lib.QuantizeChunk((int)type, s, d, 0, 1, row.Length, null);
        return dst;
    }

    /// <summary>quantize_row_q8_K_ref (reference) or quantize_row_q8_K (what the CPU backend uses before vec_dot).</summary>
    public static byte[] QuantizeQ8K(ReadOnlySpan<float> row, bool cpuVariant = false)
    {
        var dst = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q8_K, row.Length)];
        fixed (float* s = row)
        fixed (byte* d = dst)
        {
            if (cpuVariant) Lib.QuantizeQ8KCpu(s, d, row.Length);
            else Lib.QuantizeQ8KRef(s, d, row.Length);
        }
        return dst;
    }

    public static float[] Dequantize(GgmlType type, ReadOnlySpan<byte> blocks, int count)
    {
        var dst = new float[count];
        var fn = (delegate* unmanaged<void*, float*, long, void>)Lib.Dequantize[type];
        fixed (byte* s = blocks)
        fixed (float* d = dst)
            fn(s, d, count);
        return dst;
    }

    /// <summary>ggml_vec_dot_{type}_q8_K over <paramref name="count"/> values (the CPU backend's fastest path here).</summary>
    public static float VecDot(GgmlType type, ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8k, int count)
    {
        var fn = (delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void>)Lib.VecDot[type];
        float result;
        fixed (byte* w = weights)
        fixed (byte* a = q8k)
            fn(count, &result, 0, w, 0, a, 0, 1);
        return result;
    }
}

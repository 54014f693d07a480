using System.Runtime.CompilerServices;

namespace QuantLlama.Quants;

/// <summary>
/// Half- and bfloat16 conversions exactly as ggml does them: float to half rounds to nearest even (ggml's
/// bit-trick version, NaN becomes 0x7E00), float to bf16 rounds to nearest even (NaN made quiet), and half to
/// float goes through a 64K-entry table (what F16C does in one instruction, without needing F16C).
/// </summary>
public static class Fp16
{
    // Native memory, never freed: a static readonly pointer is a constant to the JIT, so a lookup is one load.
    private static readonly unsafe float* HalfToFloatTable = BuildTable();

    private static unsafe float* BuildTable()
    {
        var t = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int i = 0; i < 65536; i++) t[i] = (float)BitConverter.UInt16BitsToHalf((ushort)i);
        return t;
    }

    /// <summary>Half bits to float (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float ToFloat(ushort h) => HalfToFloatTable[h];

    /// <summary>Float to half bits, rounding to nearest even (ggml_compute_fp32_to_fp16).</summary>
    public static ushort FromFloat(float f)
    {
        float scaleToInf = BitConverter.UInt32BitsToSingle(0x77800000u);
        float scaleToZero = BitConverter.UInt32BitsToSingle(0x08800000u);
        float @base = (MathF.Abs(f) * scaleToInf) * scaleToZero;
        uint w = BitConverter.SingleToUInt32Bits(f);
        uint shl1W = w + w;
        uint sign = w & 0x80000000u;
        uint bias = shl1W & 0xFF000000u;
        if (bias < 0x71000000u) bias = 0x71000000u;
        @base = BitConverter.UInt32BitsToSingle((bias >> 1) + 0x07800000u) + @base;
        uint bits = BitConverter.SingleToUInt32Bits(@base);
        uint expBits = (bits >> 13) & 0x00007C00u;
        uint mantissaBits = bits & 0x00000FFFu;
        uint nonsign = expBits + mantissaBits;
        return (ushort)((sign >> 16) | (shl1W > 0xFF000000u ? 0x7E00u : nonsign));
    }

    /// <summary>Float rounded through half precision and back (the value a stored fp16 scale really has).</summary>
    public static float Round(float f) => ToFloat(FromFloat(f));

    /// <summary>bfloat16 bits to float (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BF16ToFloat(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    /// <summary>Float to bfloat16 bits, rounding to nearest even (ggml_compute_fp32_to_bf16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FloatToBF16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
    }
}

/// <summary>Float-to-integer conversions as ggml's C code compiles on x86.</summary>
internal static class X86Convert
{
    /// <summary>
    /// cvttss2si: truncation toward zero, and the "integer indefinite" 0x80000000 for NaN and out-of-range values
    /// (C leaves those undefined; ggml's reference quantizers hit them when a subnormal scale makes 1/d infinite).
    /// Casting the result to a byte type then keeps its low byte, as C's narrowing does.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static int Truncate(float x) => x >= -2147483648f && x < 2147483648f ? (int)x : int.MinValue;
}

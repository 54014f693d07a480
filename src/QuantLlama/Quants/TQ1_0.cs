using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// TQ1_0 (ternary): super-blocks of 256 values as 52 bytes of base-3 digits packed five (the last 4 bytes: four) to a
/// byte as a fixed-point fraction, then one fp16 scale d; value = d · (q − 1). 1.69 bits per weight. Digit n of byte
/// b is ((b · 3ⁿ mod 256) · 3) >> 8. Bytes 0-31 hold values 32n + m, bytes 32-47 values 160 + 16n + m, bytes 48-51
/// values 240 + 4n + m. Activation partner: Q8_K, whose block sums take off the −1. No quantizer.
/// </summary>
public static unsafe partial class TQ1_0
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 54;

    /// <summary>TQ1_0 as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.TQ1_0, BlockSize, BlockBytes, null, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot });

    private const int Scale = 52;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Digit(byte packed, int n) => (byte)(packed * Powers[n]) * 3 >> 8;

    private static ReadOnlySpan<byte> Powers => [1, 3, 9, 27, 81];

    /// <summary>The 256 digits of a super-block, in value order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack(byte* x, sbyte* digits)
    {
        for (int n = 0; n < 5; n++)
        {
            for (int m = 0; m < 32; m++) digits[32 * n + m] = (sbyte)Digit(x[m], n);
            for (int m = 0; m < 16; m++) digits[160 + 16 * n + m] = (sbyte)Digit(x[32 + m], n);
        }
        for (int n = 0; n < 4; n++)
            for (int m = 0; m < 4; m++) digits[240 + 4 * n + m] = (sbyte)Digit(x[48 + m], n);
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        sbyte* digits = stackalloc sbyte[BlockSize];
        fixed (byte* x0 = src)
        fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* x = x0 + i * BlockBytes;
                float d = Fp16.ToFloat(*(ushort*)(x + Scale));
                Unpack(x, digits);
                float* y = y0 + i * BlockSize;
                for (int v = 0; v < BlockSize; v++) y[v] = (float)(digits[v] - 1) * d;
            }
        }
    }

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    /// <summary>The reference: ggml's generic row dot (one integer sum per super-block).</summary>
    internal static float DotScalar(byte* w, byte* a, int n)
    {
        sbyte* digits = stackalloc sbyte[BlockSize];
        float sum = 0;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            Unpack(x, digits);
            int sumi = 0;
            for (int v = 0; v < BlockSize; v++) sumi += (digits[v] - 1) * y->Qs[v];
            sum += (float)sumi * (Fp16.ToFloat(*(ushort*)(x + Scale)) * y->D);
        }
        return sum;
    }

    /// <summary>Bytes times 9 (mod 256): a 16-bit shift by 3 with each byte's spill from its neighbour masked off.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> TimesNine(Vector256<byte> q)
        => (Avx2.ShiftLeftLogical(q.AsUInt16(), 3).AsByte() & Vector256.Create((byte)0xF8)) + q;

    /// <summary>
    /// The top base-3 digit of each byte as ggml's AVX2 kernel takes it: (q − 1 saturated) averaged with half of
    /// itself (about 3q/4), bits 6-7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> TopDigit(Vector256<byte> q)
    {
        q = Avx2.SubtractSaturate(q, Vector256.Create((byte)1));
        q = Avx2.Average(q, Avx2.Average(q, Vector256<byte>.Zero));
        return Avx2.ShiftRightLogical(q.AsUInt16(), 6).AsByte() & Vector256.Create((byte)3);
    }

    /// <summary>
    /// ggml's AVX2 row dot to the bit: digits times activation quants in 16 short lanes (three sums), the
    /// activation's block sums taken off, pairs of lanes widened to eight ints, converted, multiplied by the
    /// scales and added in one FMA.
    /// </summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        var acc = Vector256<float>.Zero;
        // Multipliers of the four 4-value groups of the last 4 bytes' digits: 1, 3, 9, 27.
        var powers = Vector256.Create((short)1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            sbyte* qy = y->Qs;

            // Bytes 0-31: five digits each, against values 0-159.
            var q0 = Avx.LoadVector256(x);
            var q1 = q0 + q0 + q0;
            var q2 = TimesNine(q0);
            var q3 = TimesNine(q1);
            var q4 = TimesNine(q2);
            var sum0 = Avx2.Add(Avx2.MultiplyAddAdjacent(TopDigit(q0), Avx.LoadVector256(qy)), Avx2.MultiplyAddAdjacent(TopDigit(q1), Avx.LoadVector256(qy + 32)));
            var sum1 = Avx2.Add(Avx2.MultiplyAddAdjacent(TopDigit(q2), Avx.LoadVector256(qy + 64)), Avx2.MultiplyAddAdjacent(TopDigit(q3), Avx.LoadVector256(qy + 96)));
            var sum2 = Avx2.MultiplyAddAdjacent(TopDigit(q4), Avx.LoadVector256(qy + 128));

            // Bytes 32-47 (five digits) and 48-51 (four), against values 160-255.
            var r0 = Sse2.LoadVector128(x + 32);
            var r1 = r0 + r0 + r0;
            var r2 = TimesNine(r0.ToVector256Unsafe()).GetLower();
            var r3 = TimesNine(r1.ToVector256Unsafe()).GetLower();
            var r4 = TimesNine(r2.ToVector256Unsafe()).GetLower();
            var tail = Avx2.MultiplyLow(Avx2.ConvertToVector256Int16(Vector128.Create(Unsafe.ReadUnaligned<uint>(x + 48)).AsByte()), powers) & Vector256.Create((short)0xFF);
            var r5 = Sse2.PackUnsignedSaturate(tail.GetLower(), tail.GetUpper());
            sum0 = Avx2.Add(sum0, Avx2.MultiplyAddAdjacent(TopDigit(Vector256.Create(r0, r1)), Avx.LoadVector256(qy + 160)));
            sum1 = Avx2.Add(sum1, Avx2.MultiplyAddAdjacent(TopDigit(Vector256.Create(r2, r3)), Avx.LoadVector256(qy + 192)));
            sum2 = Avx2.Add(sum2, Avx2.MultiplyAddAdjacent(TopDigit(Vector256.Create(r4, r5)), Avx.LoadVector256(qy + 224)));

            var blockSums = Avx.LoadVector256(y->BSums);
            var total = Avx2.Add(Avx2.Subtract(sum0, blockSums), Avx2.Add(sum1, sum2));
            var sums = Avx2.MultiplyAddAdjacent(total, Vector256.Create((short)1));
            var d = Vector256.Create(y->D * Fp16.ToFloat(*(ushort*)(x + Scale)));
            // ggml writes a multiply and an add; llama.cpp's x64 build fuses them.
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), d, acc);
        }
        return X86Simd.HSum(acc);
    }
}

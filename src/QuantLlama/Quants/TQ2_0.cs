using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// TQ2_0 (ternary): super-blocks of 256 values as 64 bytes of 2-bit digits q (value j·32·4 + l·32 + m in bits
/// 2l, 2l + 1 of byte 32j + m), then one fp16 scale d; value = d · (q − 1). 2.06 bits per weight. Activation
/// partner: Q8_K, whose block sums take off the −1. No quantizer.
/// </summary>
public static unsafe partial class TQ2_0
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 66;

    /// <summary>TQ2_0 as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.TQ2_0, BlockSize, BlockBytes, null, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot });

    private const int Scale = 64;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* x0 = src)
        fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* x = x0 + i * BlockBytes;
                float d = Fp16.ToFloat(*(ushort*)(x + Scale));
                float* y = y0 + i * BlockSize;
                for (int v = 0; v < BlockSize; v++) y[v] = (float)(Digit(x, v) - 1) * d;
            }
        }
    }

    /// <summary>Digit v (0 … 255) of a super-block.</summary>
    private static int Digit(byte* x, int v) => x[v / 128 * 32 + v % 32] >> (2 * (v / 32 % 4)) & 3;

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    /// <summary>The reference: ggml's generic row dot (one integer sum per super-block).</summary>
    internal static float DotScalar(byte* w, byte* a, int n)
    {
        float sum = 0;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            int sumi = 0;
            for (int v = 0; v < BlockSize; v++) sumi += y->Qs[v] * (Digit(x, v) - 1);
            sum += (float)sumi * (y->D * Fp16.ToFloat(*(ushort*)(x + Scale)));
        }
        return sum;
    }

    /// <summary>
    /// ggml's AVX2 row dot to the bit: digits times activation quants in 16 short lanes, the activation's block
    /// sums taken off, pairs of lanes widened to eight ints, converted, multiplied by the scales and added in one FMA.
    /// </summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        var acc = Vector256<float>.Zero;
        var three = Vector256.Create((byte)3);
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            var sum01 = Vector256<short>.Zero;
            var sum23 = Vector256<short>.Zero;
            for (int j = 0; j < 64; j += 32)
            {
                var q = Avx.LoadVector256(x + j).AsUInt16();
                sbyte* qy = y->Qs + 4 * j;
                var p0 = Avx2.MultiplyAddAdjacent(q.AsByte() & three, Avx.LoadVector256(qy));
                var p1 = Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(q, 2).AsByte() & three, Avx.LoadVector256(qy + 32));
                var p2 = Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(q, 4).AsByte() & three, Avx.LoadVector256(qy + 64));
                var p3 = Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(q, 6).AsByte() & three, Avx.LoadVector256(qy + 96));
                sum01 = Avx2.Add(sum01, Avx2.Add(p0, p1));
                sum23 = Avx2.Add(sum23, Avx2.Add(p2, p3));
            }
            var blockSums = Avx.LoadVector256(y->BSums);
            var sums = Avx2.MultiplyAddAdjacent(Avx2.Subtract(Avx2.Add(sum01, sum23), blockSums), Vector256.Create((short)1));
            var d = Vector256.Create(y->D * Fp16.ToFloat(*(ushort*)(x + Scale)));
            // ggml writes a multiply and an add; llama.cpp's x64 build fuses them.
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), d, acc);
        }
        return X86Simd.HSum(acc);
    }
}

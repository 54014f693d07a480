using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// Q5_1: blocks of 32 values as fp16 scale d, fp16 minimum m, 32 high bits qh and 16 bytes of low nibbles;
/// value = d * q + m. Activation partner: Q8_1.
/// </summary>
public static unsafe class Q5_1
{
    public const int BlockSize = 32;
    public const int BlockBytes = 24;

    /// <summary>Q5_1 as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q5_1, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = Q8_1.Activation, Dot = &Dot });

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Block
    {
        public ushort D;
        public ushort M;
        public fixed byte Qh[4];
        public fixed byte Qs[BlockSize / 2];
    }

    /// <summary>Reference quantizer, byte for byte ggml's quantize_row_q5_1_ref.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        fixed (float* x0 = src)
        fixed (byte* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                float* x = x0 + i * BlockSize;
                var y = (Block*)(y0 + i * BlockBytes);
                Blocks.MinMax(x, BlockSize, out float min, out float max);
                float d = (max - min) / ((1 << 5) - 1);
                float id = d != 0 ? 1.0f / d : 0.0f;
                y->D = Fp16.FromFloat(d);
                y->M = Fp16.FromFloat(min);
                uint qh = 0;
                for (int j = 0; j < BlockSize / 2; j++)
                {
                    float v0 = (x[j] - min) * id;
                    float v1 = (x[BlockSize / 2 + j] - min) * id;
                    uint q0 = (byte)X86Convert.Truncate(v0 + 0.5f);
                    uint q1 = (byte)X86Convert.Truncate(v1 + 0.5f);
                    y->Qs[j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                    qh |= ((q0 & 0x10u) >> 4) << j;
                    qh |= ((q1 & 0x10u) >> 4) << (j + BlockSize / 2);
                }
                Unsafe.WriteUnaligned(y->Qh, qh);
            }
        }
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* x0 = src)
        fixed (float* y = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                var x = (Block*)(x0 + i * BlockBytes);
                float d = Fp16.ToFloat(x->D), m = Fp16.ToFloat(x->M);
                uint qh = Unsafe.ReadUnaligned<uint>(x->Qh);
                for (int j = 0; j < BlockSize / 2; j++)
                {
                    int h0 = (int)(((qh >> j) << 4) & 0x10);
                    int h1 = (int)((qh >> (j + 12)) & 0x10);
                    y[i * BlockSize + j] = ((x->Qs[j] & 0x0F) | h0) * d + m;
                    y[i * BlockSize + j + BlockSize / 2] = ((x->Qs[j] >> 4) | h1) * d + m;
                }
            }
        }
    }

    /// <summary>Dot of a Q5_1 weight row with a Q8_1 activation row.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8_1Activation)
        => Blocks.Dot(weights, q8_1Activation, BlockSize, BlockBytes, Q8_1.BlockBytes, &Dot);

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    internal static float DotScalar(byte* w, byte* a, int n)
    {
        int nb = n / BlockSize;
        float sum = 0, summs = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (Block*)(w + i * BlockBytes);
            var y = (Q8_1.Block*)(a + i * Q8_1.BlockBytes);
            uint qh = Unsafe.ReadUnaligned<uint>(x->Qh);
            int sumi = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int h0 = (int)(((qh >> j) << 4) & 0x10);
                int h1 = (int)((qh >> (j + 12)) & 0x10);
                sumi += ((x->Qs[j] & 0x0F) | h0) * y->Qs[j];
                sumi += ((x->Qs[j] >> 4) | h1) * y->Qs[j + BlockSize / 2];
            }
            sum += Fp16.ToFloat(x->D) * Fp16.ToFloat(y->D) * sumi;
            summs += Fp16.ToFloat(x->M) * Fp16.ToFloat(y->S);
        }
        return sum + summs;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        int nb = n / BlockSize;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        float summs0 = 0, summs1 = 0;
        var bit4 = Vector256.Create((byte)0x10);
        byte* x = w, y = a;
        byte* end = w + (nb & ~1) * BlockBytes;
        for (; x < end; x += 2 * BlockBytes, y += 2 * Q8_1.BlockBytes)
        {
            X86Simd.PrefetchWeights(x, 2 * BlockBytes);
            summs0 += Fp16.ToFloat(*(ushort*)(x + 2)) * Fp16.ToFloat(*(ushort*)(y + 2));
            summs1 += Fp16.ToFloat(*(ushort*)(x + BlockBytes + 2)) * Fp16.ToFloat(*(ushort*)(y + Q8_1.BlockBytes + 2));
            var d0 = Vector256.Create(Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y));
            var d1 = Vector256.Create(Fp16.ToFloat(*(ushort*)(x + BlockBytes)) * Fp16.ToFloat(*(ushort*)(y + Q8_1.BlockBytes)));
            var qx0 = X86Simd.BytesFromNibbles32(x + 8) | (X86Simd.BytesFromBits32(x + 4) & bit4);
            var qx1 = X86Simd.BytesFromNibbles32(x + BlockBytes + 8) | (X86Simd.BytesFromBits32(x + BlockBytes + 4) & bit4);
            acc0 = Fma.MultiplyAdd(d0, X86Simd.MulSumU8I8Float(qx0, Avx.LoadVector256((sbyte*)(y + 4))), acc0);
            acc1 = Fma.MultiplyAdd(d1, X86Simd.MulSumU8I8Float(qx1, Avx.LoadVector256((sbyte*)(y + Q8_1.BlockBytes + 4))), acc1);
        }
        if ((nb & 1) != 0)
        {
            summs0 += Fp16.ToFloat(*(ushort*)(x + 2)) * Fp16.ToFloat(*(ushort*)(y + 2));
            var d0 = Vector256.Create(Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y));
            var qx0 = X86Simd.BytesFromNibbles32(x + 8) | (X86Simd.BytesFromBits32(x + 4) & bit4);
            acc0 = Fma.MultiplyAdd(d0, X86Simd.MulSumU8I8Float(qx0, Avx.LoadVector256((sbyte*)(y + 4))), acc0);
        }
        return X86Simd.HSum(Avx.Add(acc0, acc1)) + (summs0 + summs1);
    }

    /// <summary>ARM64 AdvSimd: <see cref="ArmSimd.DotWithMin"/> with the fifth bits (the reference's result to the bit).</summary>
    internal static float DotAdvSimd(byte* w, byte* a, int n)
        => AdvSimd.Arm64.IsSupported ? ArmSimd.DotWithMin(w, a, n, BlockBytes, fifthBits: true) : DotScalar(w, a, n);
}

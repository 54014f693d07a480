using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// Q5_0: blocks of 32 values as fp16 scale d, 32 high bits qh (bit j = fifth bit of value j) and 16 bytes of
/// low nibbles (as Q4_0); value = d * (q - 16). Activation partner: Q8_0.
/// </summary>
public static unsafe class Q5_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 22;

    /// <summary>Q5_0 as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q5_0, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = Q8_0.Activation, Dot = &Dot });

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Block
    {
        public ushort D;
        public fixed byte Qh[4];
        public fixed byte Qs[BlockSize / 2];
    }

    /// <summary>Reference quantizer, byte for byte ggml's quantize_row_q5_0_ref.</summary>
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
                float max = Blocks.SignedAbsMax(x, BlockSize);
                float d = max / -16;
                float id = d != 0 ? 1.0f / d : 0.0f;
                y->D = Fp16.FromFloat(d);
                uint qh = 0;
                for (int j = 0; j < BlockSize / 2; j++)
                {
                    float v0 = x[j] * id;
                    float v1 = x[BlockSize / 2 + j] * id;
                    uint q0 = (uint)Math.Min(31, (int)(sbyte)X86Convert.Truncate(v0 + 16.5f));
                    uint q1 = (uint)Math.Min(31, (int)(sbyte)X86Convert.Truncate(v1 + 16.5f));
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
                float d = Fp16.ToFloat(x->D);
                uint qh = Unsafe.ReadUnaligned<uint>(x->Qh);
                for (int j = 0; j < BlockSize / 2; j++)
                {
                    int h0 = (int)(((qh >> j) << 4) & 0x10);
                    int h1 = (int)((qh >> (j + 12)) & 0x10);
                    y[i * BlockSize + j] = (((x->Qs[j] & 0x0F) | h0) - 16) * d;
                    y[i * BlockSize + j + BlockSize / 2] = (((x->Qs[j] >> 4) | h1) - 16) * d;
                }
            }
        }
    }

    /// <summary>Dot of a Q5_0 weight row with a Q8_0 activation row.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8Activation)
        => Blocks.Dot(weights, q8Activation, BlockSize, BlockBytes, Q8_0.BlockBytes, &Dot);

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    internal static float DotScalar(byte* w, byte* a, int n) => Q8Products.DotBlockSums<ScalarSum>(w, a, n);

    /// <summary>The reference's block sum: Σ (q − 16)·y with q the nibble and its fifth bit from qh.</summary>
    private readonly struct ScalarSum : IQ8BlockSum
    {
        public static int BlockBytes => Q5_0.BlockBytes;

        public static int Sum(byte* block, sbyte* q8)
        {
            var x = (Block*)block;
            uint qh = Unsafe.ReadUnaligned<uint>(x->Qh);
            int sumi = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int h0 = (int)(((qh >> j) << 4) & 0x10);
                int h1 = (int)((qh >> (j + 12)) & 0x10);
                sumi += (((x->Qs[j] & 0x0F) | h0) - 16) * q8[j];
                sumi += (((x->Qs[j] >> 4) | h1) - 16) * q8[j + BlockSize / 2];
            }
            return sumi;
        }
    }

    /// <summary>ggml_vec_dot_q5_0_q8_0's AVX2 arithmetic: one 8-lane accumulator chained over the blocks in order.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        int nb = n / BlockSize;
        var acc = Vector256<float>.Zero;
        var high = Vector256.Create((byte)0xF0);
        byte* x = w, y = a;
        for (int i = 0; i < nb; i++, x += BlockBytes, y += Q8_0.BlockBytes)
        {
            if ((i & 1) == 0) X86Simd.PrefetchWeights(x, 2 * BlockBytes);
            var d = Vector256.Create(Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y));
            // Where the fifth bit is clear the value is nibble - 16: set the top nibble (two's complement).
            var qx = X86Simd.BytesFromNibbles32(x + 6) | Avx2.AndNot(X86Simd.BytesFromBits32(x + 2), high);
            acc = Fma.MultiplyAdd(d, X86Simd.MulSumI8Float(qx.AsSByte(), Avx.LoadVector256((sbyte*)(y + 2))), acc);
        }
        return X86Simd.HSum(acc);
    }

    /// <summary>ARM64 AdvSimd: each block's integer sum by <see cref="ArmSimd"/>, then the reference's float steps (its result to the bit).</summary>
    internal static float DotAdvSimd(byte* w, byte* a, int n)
        => AdvSimd.Arm64.IsSupported ? Q8Products.DotBlockSums<ArmSum>(w, a, n) : DotScalar(w, a, n);

    private readonly struct ArmSum : IQ8BlockSum
    {
        public static int BlockBytes => Q5_0.BlockBytes;

        public static int Sum(byte* block, sbyte* q8)
        {
            var x = (Block*)block;
            uint qh = Unsafe.ReadUnaligned<uint>(x->Qh);
            return ArmSimd.NibbleBlockDot(x->Qs, q8, ArmSimd.BitsAsSixteens(qh), ArmSimd.BitsAsSixteens(qh >> 16), 16);
        }
    }
}

using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// Q8_1: blocks of 32 values as fp16 scale d, fp16 s = d * sum(q), and 32 int8 quants; value = d * q.
/// The activation partner of Q4_1 and Q5_1 weights (s carries their min term).
/// </summary>
public static unsafe class Q8_1
{
    public const int BlockSize = 32;
    public const int BlockBytes = 36;

    /// <summary>Q8_1 as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q8_1, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = Q8_0.Activation, Dot = &Dot });

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Block
    {
        public ushort D;
        public ushort S;
        public fixed sbyte Qs[BlockSize];
    }

    /// <summary>Reference quantizer, byte for byte ggml's quantize_row_q8_1_ref.</summary>
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
                float amax = 0;
                for (int j = 0; j < BlockSize; j++) amax = MathF.Max(amax, MathF.Abs(x[j]));
                float d = amax / ((1 << 7) - 1);
                float id = d != 0 ? 1.0f / d : 0.0f;
                y->D = Fp16.FromFloat(d);
                int sum = 0;
                for (int j = 0; j < BlockSize / 2; j++)
                {
                    float v0 = x[j] * id;
                    float v1 = x[BlockSize / 2 + j] * id;
                    y->Qs[j] = (sbyte)X86Convert.Truncate(MathF.Round(v0, MidpointRounding.AwayFromZero));
                    y->Qs[BlockSize / 2 + j] = (sbyte)X86Convert.Truncate(MathF.Round(v1, MidpointRounding.AwayFromZero));
                    sum += y->Qs[j];
                    sum += y->Qs[BlockSize / 2 + j];
                }
                y->S = Fp16.FromFloat(sum * d);
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
                for (int j = 0; j < BlockSize; j++) y[i * BlockSize + j] = x->Qs[j] * d;
            }
        }
    }

    /// <summary>Activation quantizer, byte for byte ggml-cpu's x86 quantize_row_q8_1 (see Q8_0.QuantizeActivation).</summary>
    public static void QuantizeActivation(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        fixed (float* x = src)
        fixed (byte* y = dst)
            QuantizeActivation(x, y, nb * BlockSize);
    }

    /// <summary>ggml's Q8_1 activation form (the partner of Q4_1 and Q5_1 weights).</summary>
    internal static ActivationForm Activation => new() { Type = GgmlType.Q8_1, Quantize = &QuantizeActivation };

    /// <summary>n values (a whole number of blocks) from x to <see cref="QuantizeActivation(ReadOnlySpan{float}, Span{byte})"/>'s blocks at y.</summary>
    internal static void QuantizeActivation(float* x, byte* y, int n)
    {
        for (int i = 0; i < n / BlockSize; i++, x += BlockSize, y += BlockBytes)
        {
            float d = Q8_0.QuantizeActivationBlock(x, (sbyte*)(y + 4), withSum: true, out int sum);
            *(ushort*)y = Fp16.FromFloat(d);
            *(ushort*)(y + 2) = Fp16.FromFloat(d * sum);
        }
    }

    /// <summary>
    /// Q8_1 as a weight (ggml has no kernel for it): dot with a Q8_0 activation, the scale-only part of the block.
    /// </summary>
    internal static float Dot(byte* w, byte* a, int n)
    {
        if (Kernels.UseAvx2)
        {
            var acc = Vector256<float>.Zero;
            for (int i = 0; i < n / BlockSize; i++)
            {
                byte* x = w + i * BlockBytes;
                byte* y = a + i * Q8_0.BlockBytes;
                var q = X86Simd.MulSumI8Float(Avx.LoadVector256((sbyte*)(x + 4)), Avx.LoadVector256((sbyte*)(y + 2)));
                acc = Fma.MultiplyAdd(Vector256.Create(Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y)), q, acc);
            }
            return X86Simd.HSum(acc);
        }
        return Kernels.UseAdvSimd && AdvSimd.Arm64.IsSupported ? Q8Products.DotBlockSums<ArmSum>(w, a, n) : Q8Products.DotBlockSums<ScalarSum>(w, a, n);
    }

    /// <summary>The reference's block sum: Σ q·y over the 32 values.</summary>
    private readonly struct ScalarSum : IQ8BlockSum
    {
        public static int BlockBytes => Q8_1.BlockBytes;

        public static int Sum(byte* block, sbyte* q8)
        {
            sbyte* q = ((Block*)block)->Qs;
            int sumi = 0;
            for (int j = 0; j < BlockSize; j++) sumi += q[j] * q8[j];
            return sumi;
        }
    }

    /// <summary>ARM64: the same sum by <see cref="ArmSimd"/> (SDOT or widening multiplies), exact.</summary>
    private readonly struct ArmSum : IQ8BlockSum
    {
        public static int BlockBytes => Q8_1.BlockBytes;

        public static int Sum(byte* block, sbyte* q8)
        {
            sbyte* q = ((Block*)block)->Qs;
            return AdvSimd.Arm64.AddAcross(ArmSimd.DotI8(AdvSimd.LoadVector128(q), AdvSimd.LoadVector128(q8),
                AdvSimd.LoadVector128(q + 16), AdvSimd.LoadVector128(q8 + 16))).ToScalar();
        }
    }
}

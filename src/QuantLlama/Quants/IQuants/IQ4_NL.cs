using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ4_NL: blocks of 32 values as one fp16 scale d and 16 bytes of 4-bit indices into the non-linear levels
/// (<see cref="NonLinear4"/>; index j in the low nibble of byte j, index j+16 in its high nibble);
/// value = d · level. 4.5 bits per weight. Activation partner: Q8_0.
/// </summary>
public static unsafe class IQ4_NL
{
    public const int BlockSize = 32;
    public const int BlockBytes = 18;

    /// <summary>IQ4_NL as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ4_NL, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = Q8_0.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Block
    {
        public ushort D;
        public fixed byte Qs[BlockSize / 2];
    }

    /// <summary>The quantizer without an importance matrix.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>Quantizer, byte for byte ggml's quantize_iq4_nl (what llama-quantize writes), with the row's
    /// column importance [src.Length] from an importance matrix or without (empty).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        int nb = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        Blocks.CheckImportance(importance.Length, src.Length);
        float* weight = stackalloc float[BlockSize];
        fixed (float* x0 = src)
        fixed (float* q0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                float* x = x0 + i * BlockSize;
                var y = (Block*)(y0 + i * BlockBytes);
                if (q0 != null) NonLinear4.ImportanceWeights(x, q0 + i * BlockSize, weight, BlockSize);
                float d = NonLinear4.BestScale(x, q0 != null ? weight : null);
                y->D = Fp16.FromFloat(d);
                NonLinear4.PackIndices(x, d != 0 ? 1 / d : 0, y->Qs);
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
                NonLinear4.Dequantize(x->Qs, Fp16.ToFloat(x->D), y + i * BlockSize);
            }
        }
    }

    /// <summary>The dispatching row dot over a Q8_0 activation.</summary>
    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    /// <summary>The reference: ggml's generic row dot, one float term per block.</summary>
    internal static float DotScalar(byte* w, byte* a, int n) => NonLinear4.DotReference<Row>(w, a, n, advSimd: false);

    /// <summary>The reference's float steps over block sums from <see cref="NonLinear4.BlockDotAdvSimd"/>: its result to the bit.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAdvSimd(byte* w, byte* a, int n) => NonLinear4.DotReference<Row>(w, a, n, advSimd: AdvSimd.Arm64.IsSupported);

    private readonly struct Row : INonLinear4Row
    {
        public static int BlockSize => IQ4_NL.BlockSize;
        public static int BlockBytes => IQ4_NL.BlockBytes;
        public static int ActivationBlockBytes => Q8_0.BlockBytes;
        public static float Scale(byte* x, byte* y) => Fp16.ToFloat(*(ushort*)y) * Fp16.ToFloat(*(ushort*)x);
        public static float SubBlockScale(float d, byte* x, int ib) => d;
        public static byte* Indices(byte* x, int ib) => x + 2;
        public static sbyte* Quants(byte* y, int ib) => (sbyte*)(y + 2);
    }

    /// <summary>
    /// ggml's AVX2 row dot to the bit: blocks in pairs, even ones into one FMA accumulator and odd ones into
    /// another, summed across lanes; a last odd block is added by one fused multiply-add (its C compiler
    /// contracts d·sum + total there).
    /// </summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        int nb = n / BlockSize;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 1 < nb; i += 2)
        {
            acc0 = BlockFma(w + i * BlockBytes, a + i * Q8_0.BlockBytes, acc0);
            acc1 = BlockFma(w + (i + 1) * BlockBytes, a + (i + 1) * Q8_0.BlockBytes, acc1);
        }
        float sum = X86Simd.HSum(Avx.Add(acc0, acc1));
        for (; i < nb; i++)
        {
            byte* x = w + i * BlockBytes, y = a + i * Q8_0.BlockBytes;
            float d = Fp16.ToFloat(*(ushort*)y) * Fp16.ToFloat(*(ushort*)x);
            sum = MathF.FusedMultiplyAdd(d, NonLinear4.BlockDotScalar(x + 2, (sbyte*)(y + 2)), sum);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockFma(byte* x, byte* y, Vector256<float> acc)
    {
        var products = X86Simd.MulSumI8Float(NonLinear4.LevelsAvx2(x + 2), Avx.LoadVector256((sbyte*)(y + 2)));
        float d = Fp16.ToFloat(*(ushort*)y) * Fp16.ToFloat(*(ushort*)x);
        return Fma.MultiplyAdd(Vector256.Create(d), products, acc);
    }
}

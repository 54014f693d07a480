using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ4_XS: super-blocks of 256 values as one fp16 scale d, eight 6-bit block scales (low 4 bits in ScalesL, two
/// per byte; high 2 bits in ScalesH, two per block) and 128 bytes of 4-bit indices into the non-linear levels
/// (<see cref="NonLinear4"/>, packed per block of 32 as IQ4_NL packs them); value = d · (scale - 32) · level.
/// 4.25 bits per weight. Activation partner: Q8_K.
/// </summary>
public static unsafe class IQ4_XS
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 136;

    /// <summary>IQ4_XS as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ4_XS, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    private const int SubBlocks = BlockSize / NonLinear4.SubBlock;

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Block
    {
        public ushort D;
        public ushort ScalesH;
        public fixed byte ScalesL[SubBlocks / 2];
        public fixed byte Qs[BlockSize / 2];
    }

    /// <summary>Block ib's 6-bit scale, offset by 32 (so -32 … 31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int BlockScale(Block* x, int ib)
        => (((x->ScalesL[ib / 2] >> (4 * (ib % 2))) & 0x0F) | (((x->ScalesH >> (2 * ib)) & 3) << 4)) - 32;

    /// <summary>The quantizer without an importance matrix.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>Quantizer, byte for byte ggml's quantize_iq4_xs (what llama-quantize writes), with the row's
    /// column importance [src.Length] from an importance matrix or without (empty).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        int nb = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        Blocks.CheckImportance(importance.Length, src.Length);
        float* scales = stackalloc float[SubBlocks];
        float* weight = stackalloc float[BlockSize];
        fixed (float* x0 = src)
        fixed (float* q0 = importance)
        fixed (byte* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                float* x = x0 + i * BlockSize;
                var y = (Block*)(y0 + i * BlockBytes);
                float maxScale = 0, amaxScale = 0;
                if (q0 != null) NonLinear4.ImportanceWeights(x, q0 + i * BlockSize, weight, BlockSize);
                for (int ib = 0; ib < SubBlocks; ib++)
                {
                    scales[ib] = NonLinear4.BestScale(x + ib * NonLinear4.SubBlock, q0 != null ? weight + ib * NonLinear4.SubBlock : null);
                    if (MathF.Abs(scales[ib]) > amaxScale)
                    {
                        amaxScale = MathF.Abs(scales[ib]);
                        maxScale = scales[ib];
                    }
                }
                // The block scales are stored as multiples of d = -maxScale/32, the indices refit to them (the f32 d,
                // not its fp16 rounding, as ggml does).
                float d = -maxScale / 32;
                y->D = Fp16.FromFloat(d);
                y->ScalesH = 0;
                float id = d != 0 ? 1 / d : 0f;
                for (int ib = 0; ib < SubBlocks; ib++)
                {
                    int l = Math.Clamp(KQuantMath.NearestInt(id * scales[ib]), -32, 31);
                    float dl = d * l;
                    NonLinear4.PackIndices(x + ib * NonLinear4.SubBlock, dl != 0 ? 1 / dl : 0f, y->Qs + ib * 16);
                    l += 32;
                    if (ib % 2 == 0) y->ScalesL[ib / 2] = (byte)(l & 0x0F);
                    else y->ScalesL[ib / 2] |= (byte)((l & 0x0F) << 4);
                    y->ScalesH |= (ushort)((l >> 4) << (2 * ib));
                }
            }
        }
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* x0 = src)
        fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                var x = (Block*)(x0 + i * BlockBytes);
                float d = Fp16.ToFloat(x->D);
                for (int ib = 0; ib < SubBlocks; ib++)
                    NonLinear4.Dequantize(x->Qs + ib * 16, d * BlockScale(x, ib), y0 + i * BlockSize + ib * NonLinear4.SubBlock);
            }
        }
    }

    /// <summary>The dispatching row dot over a Q8_K activation.</summary>
    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    /// <summary>The reference: ggml's generic row dot, one float term per block of 32.</summary>
    internal static float DotScalar(byte* w, byte* a, int n) => NonLinear4.DotReference<Row>(w, a, n, advSimd: false);

    /// <summary>The reference's float steps over block sums from <see cref="NonLinear4.BlockDotAdvSimd"/>: its result to the bit.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAdvSimd(byte* w, byte* a, int n) => NonLinear4.DotReference<Row>(w, a, n, advSimd: AdvSimd.Arm64.IsSupported);

    private readonly struct Row : INonLinear4Row
    {
        public static int BlockSize => IQ4_XS.BlockSize;
        public static int BlockBytes => IQ4_XS.BlockBytes;
        public static int ActivationBlockBytes => Q8_K.BlockBytes;
        public static float Scale(byte* x, byte* y) => Fp16.ToFloat(((Block*)x)->D) * ((BlockQ8K*)y)->D;
        public static float SubBlockScale(float d, byte* x, int ib) => d * BlockScale((Block*)x, ib);
        public static byte* Indices(byte* x, int ib) => ((Block*)x)->Qs + ib * 16;
        public static sbyte* Quants(byte* y, int ib) => ((BlockQ8K*)y)->Qs + ib * NonLinear4.SubBlock;
    }

    /// <summary>
    /// ggml's AVX2 row dot to the bit: each super-block's scaled integer sums in eight int32 lanes, converted once
    /// and added by one FMA per super-block, summed across lanes at the end.
    /// </summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        var table = NonLinear4.LevelTable256;
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < n / BlockSize; i++)
        {
            var x = (Block*)(w + i * BlockBytes);
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            // Two blocks per step into two sums, as ggml does, so consecutive multiply-adds do not wait on each other.
            var sums0 = Vector256<int>.Zero;
            var sums1 = Vector256<int>.Zero;
            uint high = x->ScalesH;
            for (int ib = 0; ib < SubBlocks; ib += 2, high >>= 4)
            {
                int low = x->ScalesL[ib / 2];
                sums0 = Avx2.Add(sums0, ScaledBlockAvx2(table, x->Qs + ib * 16, y->Qs + ib * 32, ((low & 0x0F) | (int)(high << 4 & 0x30)) - 32));
                sums1 = Avx2.Add(sums1, ScaledBlockAvx2(table, x->Qs + ib * 16 + 16, y->Qs + ib * 32 + 32, ((low >> 4) | (int)(high << 2 & 0x30)) - 32));
            }
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16.ToFloat(x->D) * y->D), Avx.ConvertToVector256Single(Avx2.Add(sums0, sums1)), acc);
        }
        return X86Simd.HSum(acc);
    }

    /// <summary>scale · Σ level·q8 of one block of 32, in eight int32 lanes of four adjacent products each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScaledBlockAvx2(Vector256<sbyte> table, byte* packed, sbyte* q8, int scale)
    {
        var levels = Avx2.Shuffle(table, X86Simd.BytesFromNibbles32(packed).AsSByte());
        var pairs = Avx2.MultiplyAddAdjacent(Avx2.Sign(levels, levels).AsByte(), Avx2.Sign(Avx.LoadVector256(q8), levels));
        return Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)scale));
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// Q4_0: blocks of 32 values as one fp16 scale d and 16 bytes of 4-bit quants (value j in the low nibble of
/// byte j, value j+16 in its high nibble); value = d * (q - 8). Activation partner: Q8_0.
/// </summary>
public static unsafe partial class Q4_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 18;

    /// <summary>Q4_0 as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q4_0, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel
        {
            Activation = Q8Products.Activation, Dot = &Dot, Dot8PackedAvx2 = &Dot8PackedAvx2,
            PackActivationTile = &Q8Products.PackActivationTile, PackedTileBytes = &Q8Products.PackedTileBytes,
            Dot8PackedAvx512 = &Dot8PackedAvx512, PackActivationTileAvx512 = &PackActivationTileAvx512,
            Dot8PackedAvxVnni = &Dot8PackedAvxVnni,
            Dot4PackedAvx2 = &Tiles.Q4_0QuadTiles.Dot4PackedAvx2, Dot4PackedAvx512 = &Tiles.Q4_0QuadTiles.Dot4PackedAvx512,
            PackActivationQuad = &Tiles.Q4_0QuadTiles.PackActivationQuad, PackedQuadBytes = &Tiles.Q4_0QuadTiles.PackedBytes,
        });

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Block
    {
        public ushort D;
        public fixed byte Qs[BlockSize / 2];
    }

    /// <summary>Reference quantizer, byte for byte ggml's quantize_row_q4_0_ref.</summary>
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
                float d = max / -8;
                float id = d != 0 ? 1.0f / d : 0.0f;
                y->D = Fp16.FromFloat(d);
                for (int j = 0; j < BlockSize / 2; j++)
                {
                    float v0 = x[j] * id;
                    float v1 = x[BlockSize / 2 + j] * id;
                    int q0 = Math.Min(15, (int)(sbyte)X86Convert.Truncate(v0 + 8.5f));
                    int q1 = Math.Min(15, (int)(sbyte)X86Convert.Truncate(v1 + 8.5f));
                    y->Qs[j] = (byte)(q0 | (q1 << 4));
                }
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
                for (int j = 0; j < BlockSize / 2; j++)
                {
                    y[i * BlockSize + j] = ((x->Qs[j] & 0x0F) - 8) * d;
                    y[i * BlockSize + j + BlockSize / 2] = ((x->Qs[j] >> 4) - 8) * d;
                }
            }
        }
    }

    /// <summary>Dot of a Q4_0 weight row with a Q8_0 activation row.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8Activation)
    {
        int nb = Blocks.CheckDot(weights.Length, BlockBytes, q8Activation.Length, Q8_0.BlockBytes);
        fixed (byte* w = weights)
        fixed (byte* a = q8Activation)
            return Kernels.UseAvx2 ? DotAvx2(w, a, nb * BlockSize) : Dot(w, a, nb * BlockSize);
    }

    /// <summary>
    /// The matrix kernels' row dot, over <see cref="Q8Products.Activation"/>'s form: ggml's Q8_0 row followed by its
    /// blocks' scales and sums, which the AVX2 path reads (the others read the Q8_0 row alone).
    /// </summary>
    internal static float Dot(byte* w, byte* a, int n)
    {
        if (Kernels.UseAvx2) return DotAvx2(w, a, Q8Products.BlockInfo(a, n), n);
        if (Kernels.UseAdvSimd) return DotAdvSimd(w, a, n);
        return DotScalar(w, a, n);
    }

    internal static float DotScalar(byte* w, byte* a, int n)
    {
        int nb = n / BlockSize;
        float sum = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (Block*)(w + i * BlockBytes);
            var y = (Q8_0.Block*)(a + i * Q8_0.BlockBytes);
            int sumi = 0;
            for (int j = 0; j < BlockSize / 2; j++)
            {
                sumi += ((x->Qs[j] & 0x0F) - 8) * y->Qs[j];
                sumi += ((x->Qs[j] >> 4) - 8) * y->Qs[j + BlockSize / 2];
            }
            sum += Fp16.ToFloat(x->D) * Fp16.ToFloat(y->D) * sumi;
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAdvSimd(byte* w, byte* a, int n)
    {
        if (!AdvSimd.Arm64.IsSupported) return DotScalar(w, a, n);
        int nb = n / BlockSize;
        var acc = Vector128<float>.Zero;
        var mask = Vector128.Create((byte)0x0F);
        var eight = Vector128.Create((sbyte)8);
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + i * BlockBytes;
            byte* y = a + i * Q8_0.BlockBytes;
            var v = AdvSimd.LoadVector128(x + 2);
            var lo = AdvSimd.Subtract(AdvSimd.And(v, mask).AsSByte(), eight);
            var hi = AdvSimd.Subtract(AdvSimd.ShiftRightLogical(v, 4).AsSByte(), eight);
            var y0 = AdvSimd.LoadVector128((sbyte*)(y + 2));
            var y1 = AdvSimd.LoadVector128((sbyte*)(y + 18));
            var p = ArmSimd.DotI8(lo, y0, hi, y1);
            float d = Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(p), Vector128.Create(d));
        }
        return ArmSimd.HSum(acc);
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants;

/// <summary>
/// Q4_0: blocks of 32 values as one fp16 scale d and 16 bytes of 4-bit quants (value j in the low nibble of
/// byte j, value j+16 in its high nibble); value = d * (q - 8). Activation partner: Q8_0.
/// </summary>
public static unsafe class Q4_0
{
    public const int BlockSize = 32;
    public const int TypeSize = 18;

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Block
    {
        public ushort D;
        public fixed byte Qs[BlockSize / 2];
    }

    /// <summary>Reference quantizer, byte for byte ggml's quantize_row_q4_0_ref.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = Blocks.Check(src.Length, BlockSize, dst.Length, TypeSize);
        fixed (float* x0 = src)
        fixed (byte* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                float* x = x0 + i * BlockSize;
                var y = (Block*)(y0 + i * TypeSize);
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
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, TypeSize);
        fixed (byte* x0 = src)
        fixed (float* y = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                var x = (Block*)(x0 + i * TypeSize);
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
        int nb = weights.Length / TypeSize;
        if (weights.Length % TypeSize != 0 || q8Activation.Length < nb * Q8_0.TypeSize) throw new ArgumentException("row lengths do not match");
        fixed (byte* w = weights)
        fixed (byte* a = q8Activation)
            return Dot(w, a, nb * BlockSize);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(byte* w, byte* a, int n)
    {
        if (Kernels.UseAvx512) return DotAvx512(w, a, n);
        if (Kernels.UseAvx2) return DotAvx2(w, a, n);
        if (Kernels.UseAdvSimd) return DotAdvSimd(w, a, n);
        return DotScalar(w, a, n);
    }

    internal static float DotScalar(byte* w, byte* a, int n)
    {
        int nb = n / BlockSize;
        float sum = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (Block*)(w + i * TypeSize);
            var y = (Q8_0.Block*)(a + i * Q8_0.TypeSize);
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> WeightsAvx2(byte* x)
        => Avx2.Subtract(Simd.BytesFromNibbles32(x + 2), Vector256.Create((byte)8)).AsSByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockAvx2(byte* x, byte* y)
        => Simd.MulSumI8Float(WeightsAvx2(x), Avx.LoadVector256((sbyte*)(y + 2)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ScaleAvx2(byte* x, byte* y)
        => Vector256.Create(Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y));

    /// <summary>Bytes of the matrix kernels' activation row (<see cref="QuantizeActivation"/>) of n values.</summary>
    internal static long ActivationRowBytes(int n) => (long)(n / BlockSize) * (Q8_0.TypeSize + sizeof(float));

    /// <summary>
    /// The matrix kernels' activation: the Q8_0 row ggml's dot takes, then each block's scale again as f32, so that
    /// the row dot loads 8 activation scales in one vector instead of converting them for every weight row.
    /// </summary>
    internal static void QuantizeActivation(float* x, byte* y, int n)
    {
        int nb = n / BlockSize;
        Q8_0.QuantizeActivation(x, y, nb, withSum: false);
        float* scales = (float*)(y + nb * Q8_0.TypeSize);
        for (int b = 0; b < nb; b++) scales[b] = Fp16.ToFloat(*(ushort*)(y + b * Q8_0.TypeSize));
    }

    /// <summary>The matrix kernels' row dot, over <see cref="QuantizeActivation"/>'s form.</summary>
    internal static float DotScaled(byte* w, byte* a, int n)
    {
        if (Kernels.UseAvx512) return DotAvx512(w, a, n);
        if (Kernels.UseAvx2) return DotScaledAvx2(w, a, n);
        if (Kernels.UseAdvSimd) return DotAdvSimd(w, a, n);
        return DotScalar(w, a, n);
    }

    internal static float DotScaledAvx2(byte* w, byte* a, int n) => DotAvx2(w, a, (float*)(a + n / BlockSize * Q8_0.TypeSize), n);

    /// <summary>ggml's form of the activation (Q8_0 only): its scales converted here first.</summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        int nb = n / BlockSize;
        var scales = nb <= 1024 ? stackalloc float[nb] : new float[nb];
        for (int b = 0; b < nb; b++) scales[b] = Fp16.ToFloat(*(ushort*)(a + b * Q8_0.TypeSize));
        fixed (float* s = scales) return DotAvx2(w, a, s, n);
    }

    /// <summary>
    /// The AVX2 row dot, in the arithmetic that the 8-row tiles (<see cref="Dot8PackedAvx2"/>) repeat with one
    /// activation row per lane: each block's Σ (q - 8)·y as an exact integer first, then
    /// chain[b mod 8] = fma(d_w·d_y, Σ, chain[b mod 8]) over the blocks in order, and the 8 chains summed as
    /// ((c0 + c4) + (c2 + c6)) + ((c1 + c5) + (c3 + c7)). Here the lanes are the chains: 8 blocks' integer sums
    /// meet in one vector, and one vector FMA does their float step.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* w, byte* a, float* aScales, int n)
    {
        int nb = n / BlockSize;
        var chains = Vector256<float>.Zero;
        var mask = Vector256.Create((byte)0x0F);
        int i = 0;
        for (; i + 8 <= nb; i += 8)
        {
            byte* x = w + i * TypeSize, y = a + i * Q8_0.TypeSize;
            var sums = Simd.Sum8(
                BlockSums(x, y, mask), BlockSums(x + TypeSize, y + Q8_0.TypeSize, mask),
                BlockSums(x + 2 * TypeSize, y + 2 * Q8_0.TypeSize, mask), BlockSums(x + 3 * TypeSize, y + 3 * Q8_0.TypeSize, mask),
                BlockSums(x + 4 * TypeSize, y + 4 * Q8_0.TypeSize, mask), BlockSums(x + 5 * TypeSize, y + 5 * Q8_0.TypeSize, mask),
                BlockSums(x + 6 * TypeSize, y + 6 * Q8_0.TypeSize, mask), BlockSums(x + 7 * TypeSize, y + 7 * Q8_0.TypeSize, mask));
            var dw = Vector256.Create(
                Fp16.ToFloat(*(ushort*)x), Fp16.ToFloat(*(ushort*)(x + TypeSize)),
                Fp16.ToFloat(*(ushort*)(x + 2 * TypeSize)), Fp16.ToFloat(*(ushort*)(x + 3 * TypeSize)),
                Fp16.ToFloat(*(ushort*)(x + 4 * TypeSize)), Fp16.ToFloat(*(ushort*)(x + 5 * TypeSize)),
                Fp16.ToFloat(*(ushort*)(x + 6 * TypeSize)), Fp16.ToFloat(*(ushort*)(x + 7 * TypeSize)));
            chains = Fma.MultiplyAdd(Avx.Multiply(dw, Avx.LoadVector256(aScales + i)), Avx.ConvertToVector256Single(sums), chains);
        }
        float* c = stackalloc float[8];
        Avx.Store(c, chains);
        for (; i < nb; i++)
        {
            byte* x = w + i * TypeSize, y = a + i * Q8_0.TypeSize;
            c[i & 7] = MathF.FusedMultiplyAdd(Fp16.ToFloat(*(ushort*)x) * aScales[i], Simd.HSum(BlockSums(x, y, mask)), c[i & 7]);
        }
        return ((c[0] + c[4]) + (c[2] + c[6])) + ((c[1] + c[5]) + (c[3] + c[7]));
    }

    /// <summary>
    /// One block's Σ (q - 8)·y in 8 int32 lanes, computed as q·y - 8·y in pairs (the same int16 values as ggml's
    /// sign trick, one operation fewer).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockSums(byte* x, byte* y, Vector256<byte> mask)
    {
        var q8 = Avx.LoadVector256((sbyte*)(y + 2));
        var pairs = Avx2.Subtract(Avx2.MultiplyAddAdjacent(Nibbles(x + 2, mask), q8), Avx2.MultiplyAddAdjacent(Vector256.Create((byte)8), q8));
        return Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Nibbles(byte* p, Vector256<byte> mask)
        => Avx2.ShiftRightLogicalVariable(Avx2.BroadcastVector128ToVector256(p).AsUInt64(), Vector256.Create(0ul, 0ul, 4ul, 4ul)).AsByte() & mask;

    /// <summary>
    /// Bytes per block of a packed activation tile: the quants of 8 rows in groups of 4 values (group g holds rows
    /// 0-7's values 4g..4g+3, 4 bytes per row), then the 8 rows' scales as f32, then 8 times each row's sum of quants.
    /// </summary>
    internal const int PackedBlockBytes = 8 * 32 + 8 * 4 + 8 * 4;

    /// <summary>Bytes of one packed tile of 8 activation rows of <paramref name="n"/> values.</summary>
    internal static long PackedTileBytes(int n) => (long)(n / BlockSize) * PackedBlockBytes;

    /// <summary>8 Q8_0 activation rows (<paramref name="stride"/> bytes apart) into the tile form <see cref="Dot8PackedAvx2"/> reads.</summary>
    internal static void PackActivationTile(byte* rows, nint stride, int n, byte* tile)
    {
        int nb = n / BlockSize;
        for (int b = 0; b < nb; b++)
        {
            byte* t = tile + (long)b * PackedBlockBytes;
            for (int r = 0; r < 8; r++)
            {
                byte* src = rows + r * stride + (long)b * Q8_0.TypeSize;
                int sum = 0;
                for (int k = 0; k < BlockSize; k++) sum += (sbyte)src[2 + k];
                for (int g = 0; g < 8; g++) *(uint*)(t + 32 * g + 4 * r) = *(uint*)(src + 2 + 4 * g);
                ((float*)(t + 256))[r] = Fp16.ToFloat(*(ushort*)src);
                ((int*)(t + 288))[r] = 8 * sum;
            }
        }
    }

    /// <summary>
    /// One weight row against a packed tile of 8 activation rows (<see cref="PackActivationTile"/>), one row per
    /// lane: each 4-value group of the weights is broadcast and multiplied with all 8 rows at once, the integer
    /// sums need no horizontal reduction, and each block's float step (scale, convert, fma) is done once for the
    /// 8 rows. Per row exactly <see cref="DotAvx2(byte*, byte*, float*, int)"/>'s arithmetic (8 chains, one
    /// register each), so the results are bit-identical to it. The int16 pair sums cannot overflow: 8 groups of
    /// |2 · 15 · 128| stay below 32768.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void Dot8PackedAvx2(byte* w, byte* tile, int n, float* y, nint yStride)
    {
        int nb = n / BlockSize;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        uint* q = stackalloc uint[8];
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            c0 = TileStep(w, tile, b, q, c0); c1 = TileStep(w, tile, b + 1, q, c1);
            c2 = TileStep(w, tile, b + 2, q, c2); c3 = TileStep(w, tile, b + 3, q, c3);
            c4 = TileStep(w, tile, b + 4, q, c4); c5 = TileStep(w, tile, b + 5, q, c5);
            c6 = TileStep(w, tile, b + 6, q, c6); c7 = TileStep(w, tile, b + 7, q, c7);
        }
        if (b < nb)
        {
            var chains = stackalloc Vector256<float>[8] { c0, c1, c2, c3, c4, c5, c6, c7 };
            for (; b < nb; b++) chains[b & 7] = TileStep(w, tile, b, q, chains[b & 7]);
            c0 = chains[0]; c1 = chains[1]; c2 = chains[2]; c3 = chains[3]; c4 = chains[4]; c5 = chains[5]; c6 = chains[6]; c7 = chains[7];
        }
        var total = Avx.Add(Avx.Add(Avx.Add(c0, c4), Avx.Add(c2, c6)), Avx.Add(Avx.Add(c1, c5), Avx.Add(c3, c7)));
        for (int k = 0; k < 8; k++) y[k * yStride] = total.GetElement(k);
    }

    /// <summary>One block of <see cref="Dot8PackedAvx2"/>: chain = fma(d_w·d_y, Σ (q - 8)·y, chain) for 8 activation rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TileStep(byte* w, byte* tile, int b, uint* q, Vector256<float> chain)
    {
        byte* x = w + (long)b * TypeSize;
        byte* t = tile + (long)b * PackedBlockBytes;
        Avx.Store((byte*)q, Nibbles(x + 2, Vector256.Create((byte)0x0F)));
        var pairs = Avx2.MultiplyAddAdjacent(Vector256.Create(q[0]).AsByte(), Avx.LoadVector256((sbyte*)t));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Vector256.Create(q[1]).AsByte(), Avx.LoadVector256((sbyte*)(t + 32))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Vector256.Create(q[2]).AsByte(), Avx.LoadVector256((sbyte*)(t + 64))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Vector256.Create(q[3]).AsByte(), Avx.LoadVector256((sbyte*)(t + 96))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Vector256.Create(q[4]).AsByte(), Avx.LoadVector256((sbyte*)(t + 128))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Vector256.Create(q[5]).AsByte(), Avx.LoadVector256((sbyte*)(t + 160))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Vector256.Create(q[6]).AsByte(), Avx.LoadVector256((sbyte*)(t + 192))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Vector256.Create(q[7]).AsByte(), Avx.LoadVector256((sbyte*)(t + 224))));
        var sums = Avx2.Subtract(Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1)), Avx.LoadVector256((int*)(t + 288)));
        var d = Avx.Multiply(Vector256.Create(Fp16.ToFloat(*(ushort*)x)), Avx.LoadVector256((float*)(t + 256)));
        return Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sums), chain);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx512(byte* w, byte* a, int n)
    {
        if (!Avx512BW.IsSupported) return DotAvx2(w, a, n);
        int nb = n / BlockSize;
        var acc = Vector512<float>.Zero;
        int i = 0;
        for (; i + 1 < nb; i += 2)
        {
            byte* x = w + i * TypeSize;
            byte* y = a + i * Q8_0.TypeSize;
            var qx = Vector512.Create(WeightsAvx2(x), WeightsAvx2(x + TypeSize));
            var qy = Vector512.Create(Avx.LoadVector256((sbyte*)(y + 2)), Avx.LoadVector256((sbyte*)(y + Q8_0.TypeSize + 2)));
            var d = Simd512.Scales(Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y),
                Fp16.ToFloat(*(ushort*)(x + TypeSize)) * Fp16.ToFloat(*(ushort*)(y + Q8_0.TypeSize)));
            acc = Avx512F.FusedMultiplyAdd(d, Simd512.MulSumI8Float(qx, qy), acc);
        }
        float sum = Simd.HSum(acc);
        if (i < nb)
        {
            byte* x = w + i * TypeSize;
            byte* y = a + i * Q8_0.TypeSize;
            sum += Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y) * Simd.HSum(BlockAvx2(x, y));
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
            byte* x = w + i * TypeSize;
            byte* y = a + i * Q8_0.TypeSize;
            var v = AdvSimd.LoadVector128(x + 2);
            var lo = AdvSimd.Subtract(AdvSimd.And(v, mask).AsSByte(), eight);
            var hi = AdvSimd.Subtract(AdvSimd.ShiftRightLogical(v, 4).AsSByte(), eight);
            var y0 = AdvSimd.LoadVector128((sbyte*)(y + 2));
            var y1 = AdvSimd.LoadVector128((sbyte*)(y + 18));
            var p = ArmDot.DotI8(lo, y0, hi, y1);
            float d = Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(p), Vector128.Create(d));
        }
        return Simd.HSum(acc);
    }
}

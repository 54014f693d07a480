using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.KQuants;

/// <summary>
/// ggml's block_q3_K: 256 values in 16 groups of 16; value = D·(scale_g − 32)·(q − 4) with q's low two bits in Qs
/// (as Q2_K) and the third bit in HMask (bit c of byte l for value 32c + l), and 6-bit scales packed in 12 bytes.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ3K
{
    public fixed byte HMask[GgmlTypeInfo.QK_K / 8];
    /// <summary>Byte 32h + l: bits 2j…2j+1 hold value 128h + 32j + l.</summary>
    public fixed byte Qs[GgmlTypeInfo.QK_K / 4];
    public fixed byte Scales[12];
    public ushort D;
}

/// <summary>Q3_K: 3.4375 bits per weight.</summary>
public static unsafe class Q3_K
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = BlockSize / 8 + BlockSize / 4 + 12 + 2;

    /// <summary>Q3_K as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q3_K, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = Q8_K.Activation, Dot = &Dot });

    /// <summary>quantize_row_q3_K_ref, bit for bit.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        fixed (byte* p = dst)
        {
            for (int i = 0; i < blocks; i++)
                QuantizeBlock(src.Slice(i * BlockSize, BlockSize), (BlockQ3K*)(p + i * BlockBytes));
        }
    }

    private static void QuantizeBlock(ReadOnlySpan<float> x, BlockQ3K* y)
    {
        Span<sbyte> levels = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        float maxScale = 0, amax = 0;
        for (int g = 0; g < 16; g++)
        {
            scales[g] = KQuantMath.MakeQ3Quants(16, 4, x.Slice(16 * g, 16), levels.Slice(16 * g, 16));
            float scale = MathF.Abs(scales[g]);
            if (scale > amax) { amax = scale; maxScale = scales[g]; }
        }

        byte* table = y->Scales;
        new Span<byte>(table, 12).Clear();
        if (maxScale != 0)
        {
            float iscale = -32f / maxScale;
            for (int g = 0; g < 16; g++)
            {
                sbyte l8 = (sbyte)KQuantMath.NearestInt(iscale * scales[g]);
                int l = Math.Max(-32, Math.Min(31, (int)l8)) + 32;
                if (g < 8) table[g] = (byte)(l & 0xF);
                else table[g - 8] |= (byte)((l & 0xF) << 4);
                l >>= 4;
                table[g % 4 + 8] |= (byte)(l << (2 * (g / 4)));
            }
            y->D = KQuantMath.ToHalfBits(1 / iscale);
        }
        else
        {
            y->D = KQuantMath.ToHalfBits(0f);
        }

        float dAll = KQuantMath.FromHalfBits(y->D);
        for (int g = 0; g < 16; g++)
        {
            int sc = g < 8 ? table[g] & 0xF : table[g - 8] >> 4;
            sc = (sc | (((table[8 + g % 4] >> (2 * (g / 4))) & 3) << 4)) - 32;
            float d = dAll * sc;
            if (d == 0) continue;
            for (int k = 0; k < 16; k++)
            {
                int l = KQuantMath.NearestInt(x[16 * g + k] / d);
                levels[16 * g + k] = (sbyte)(Math.Max(-4, Math.Min(3, l)) + 4);
            }
        }

        new Span<byte>(y->HMask, 32).Clear();
        int m = 0;
        byte hm = 1;
        for (int j = 0; j < BlockSize; j++)
        {
            if (levels[j] > 3)
            {
                y->HMask[m] |= hm;
                levels[j] -= 4;
            }
            if (++m == 32)
            {
                m = 0;
                hm <<= 1;
            }
        }
        for (int h = 0; h < 2; h++)
        {
            int o = 128 * h;
            for (int l = 0; l < 32; l++)
                y->Qs[32 * h + l] = (byte)((byte)levels[o + l] | ((byte)levels[o + l + 32] << 2) | ((byte)levels[o + l + 64] << 4) | ((byte)levels[o + l + 96] << 6));
        }
    }

    /// <summary>dequantize_row_q3_K, bit for bit.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        sbyte* scales = stackalloc sbyte[16];
        fixed (byte* p = src)
        fixed (float* yp = dst)
        {
            float* y = yp;
            for (int i = 0; i < blocks; i++)
            {
                var x = (BlockQ3K*)(p + i * BlockBytes);
                float dAll = KQuantMath.FromHalfBits(x->D);
                KQuantMath.UnpackQ3Scales(x->Scales, scales);
                byte* q = x->Qs;
                byte* hmask = x->HMask;
                int m = 1, g = 0;
                for (int h = 0; h < 2; h++)
                {
                    for (int shift = 0; shift < 8; shift += 2)
                    {
                        float dl = dAll * scales[g++];
                        for (int l = 0; l < 16; l++) *y++ = dl * (((q[l] >> shift) & 3) - ((hmask[l] & m) != 0 ? 0 : 4));
                        dl = dAll * scales[g++];
                        for (int l = 0; l < 16; l++) *y++ = dl * (((q[l + 16] >> shift) & 3) - ((hmask[l + 16] & m) != 0 ? 0 : 4));
                        m <<= 1;
                    }
                    q += 32;
                }
            }
        }
    }

    /// <summary>Dot product of a Q3_K row with a Q8_K-quantized activation row of as many blocks.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8k)
        => Blocks.Dot(weights, q8k, BlockSize, BlockBytes, Q8_K.BlockBytes, &Dot);

    /// <summary>The dot of <paramref name="n"/> values on the kernel path in use (<see cref="Kernels.Path"/>).</summary>
    internal static float Dot(byte* weights, byte* q8k, int n)
        => Kernels.UseAvx2 ? DotAvx2(weights, q8k, n)
            : Kernels.UseAdvSimd ? DotAdvSimd(weights, q8k, n)
            : DotScalar(weights, q8k, n);

    internal static float DotScalar(byte* weights, byte* q8k, int n) => DotBlocks<ScalarSums>(weights, q8k, n / BlockSize);

    /// <summary>
    /// Σ over the blocks of (y.d·d)·Σ scale·q·y in the reference's float steps, the integer sum from
    /// <typeparamref name="TSums"/>: the scalar dot and its ARM64 twin share everything else, so that their results
    /// are the same to the bit.
    /// </summary>
    private static float DotBlocks<TSums>(byte* weights, byte* q8k, int blocks) where TSums : struct, IScaledSums
    {
        float sum = 0;
        sbyte* scales = stackalloc sbyte[16];
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ3K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            KQuantMath.UnpackQ3Scales(x->Scales, scales);
            sum += y->D * KQuantMath.FromHalfBits(x->D) * TSums.ScaledSum(x, y, scales);
        }
        return sum;
    }

    /// <summary>One block's exact Σ over its 16 groups of scale · (q·y), given the unpacked signed scales.</summary>
    private interface IScaledSums
    {
        static abstract int ScaledSum(BlockQ3K* x, BlockQ8K* y, sbyte* scales);
    }

    /// <summary>The reference: q − 4 where the HMask bit is clear, chunk c from bits 2(c mod 4)… of bytes 32(c / 4)….</summary>
    private readonly struct ScalarSums : IScaledSums
    {
        public static int ScaledSum(BlockQ3K* x, BlockQ8K* y, sbyte* scales)
        {
            int sumi = 0;
            for (int c = 0; c < 8; c++)
            {
                byte* q = x->Qs + 32 * (c / 4);
                int shift = 2 * (c % 4);
                sbyte* q8 = y->Qs + 32 * c;
                int lo = 0, hi = 0;
                for (int l = 0; l < 16; l++)
                {
                    lo += (((q[l] >> shift) & 3) - (((x->HMask[l] >> c) & 1) != 0 ? 0 : 4)) * q8[l];
                    hi += (((q[l + 16] >> shift) & 3) - (((x->HMask[l + 16] >> c) & 1) != 0 ? 0 : 4)) * q8[l + 16];
                }
                sumi += scales[2 * c] * lo + scales[2 * c + 1] * hi;
            }
            return sumi;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* weights, byte* q8k, int n)
    {
        int blocks = n / BlockSize;
        var m3 = Vector256.Create((byte)0x03);
        var bias = Vector128.Create((sbyte)32);
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ3K*)(weights + i * BlockBytes);
            X86Simd.PrefetchWeights((byte*)x, BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            float d = y->D * Fp16.ToFloat(x->D);
            Vector128<sbyte> scales = Sse2.Subtract(KQuantMath.UnpackQ3ScalesBiased(x->Scales).AsSByte(), bias);
            Vector256<short> scales16 = Avx2.ConvertToVector256Int16(scales);
            var (low, high) = X86Simd.ScalePairs(scales16);
            // Quants are used as q + 4·h in [0, 8): take 4·Σ scale·bsum off once per block.
            Vector256<int> offset = Avx2.MultiplyAddAdjacent(scales16, Avx.LoadVector256(y->BSums));
            Vector256<int> sumi = Avx2.Subtract(Vector256<int>.Zero, Avx2.ShiftLeftLogical(offset, 2));
            Vector256<ushort> hbits = Avx.LoadVector256(x->HMask).AsUInt16();
            // The third bit of chunk c is bit c of each HMask byte, walked to bit 2 (value 4) one chunk at a time.
            // 16-bit shifts: start from hbits << 2 for bits 0–3 and from hbits >> 2 for bits 4–7, so no bit of the
            // upper byte is shifted out before its turn.
            sumi = Avx2.Add(sumi, Half(Avx.LoadVector256(x->Qs).AsUInt16(), Avx2.ShiftLeftLogical(hbits, 2).AsByte(), y->Qs, low, m3));
            sumi = Avx2.Add(sumi, Half(Avx.LoadVector256(x->Qs + 32).AsUInt16(), Avx2.ShiftRightLogical(hbits, 2).AsByte(), y->Qs + 128, high, m3));
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
        }
        return X86Simd.HSum(acc);

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        static Vector256<int> Half(Vector256<ushort> bits, Vector256<byte> h4, sbyte* q8, Vector256<byte> scalePairs, Vector256<byte> m3)
        {
            var four = Vector256.Create((byte)4);
            Vector256<byte> q0 = Avx2.Or(Avx2.And(bits.AsByte(), m3), Avx2.And(h4, four));
            h4 = Avx2.ShiftRightLogical(h4.AsUInt16(), 1).AsByte();
            Vector256<byte> q1 = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits, 2).AsByte(), m3), Avx2.And(h4, four));
            h4 = Avx2.ShiftRightLogical(h4.AsUInt16(), 1).AsByte();
            Vector256<byte> q2 = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits, 4).AsByte(), m3), Avx2.And(h4, four));
            h4 = Avx2.ShiftRightLogical(h4.AsUInt16(), 1).AsByte();
            Vector256<byte> q3 = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits, 6).AsByte(), m3), Avx2.And(h4, four));
            return X86Simd.QuarterSums(q0, q1, q2, q3, q8, scalePairs);
        }
    }

    /// <summary>
    /// ARM64 AdvSimd: exact int32 dots per group of 16 (SDOT where the CPU has the dot-product extension) over
    /// q − 4·(1 − h), the 2-bit fields taken by shifting each 32-byte quant group 2 bits per step and h tested in
    /// HMask, scaled in integers as the scalar reference does, so the result is the reference's to the bit.
    /// </summary>
    internal static float DotAdvSimd(byte* weights, byte* q8k, int n)
        => AdvSimd.Arm64.IsSupported ? DotBlocks<ArmSums>(weights, q8k, n / BlockSize) : DotScalar(weights, q8k, n);

    private readonly struct ArmSums : IScaledSums
    {
        public static int ScaledSum(BlockQ3K* x, BlockQ8K* y, sbyte* scales)
        {
            Vector128<byte> h0 = AdvSimd.LoadVector128(x->HMask), h1 = AdvSimd.LoadVector128(x->HMask + 16);
            int sumi = 0;
            for (int half = 0; half < 2; half++)
            {
                Vector128<byte> q0 = AdvSimd.LoadVector128(x->Qs + 32 * half), q1 = AdvSimd.LoadVector128(x->Qs + 32 * half + 16);
                for (int step = 0; step < 4; step++)
                {
                    int c = 4 * half + step;
                    var bit = Vector128.Create((byte)(1 << c));
                    sbyte* q8 = y->Qs + 32 * c;
                    int lo = ArmSimd.Dot16(Values(q0, h0, bit), q8);
                    int hi = ArmSimd.Dot16(Values(q1, h1, bit), q8 + 16);
                    sumi += scales[2 * c] * lo + scales[2 * c + 1] * hi;
                    q0 = AdvSimd.ShiftRightLogical(q0, 2);
                    q1 = AdvSimd.ShiftRightLogical(q1, 2);
                }
            }
            return sumi;
        }

        // The low 2 bits, less 4 where the high bit is clear: values in [-4, 4).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector128<sbyte> Values(Vector128<byte> quants, Vector128<byte> hmask, Vector128<byte> bit)
            => AdvSimd.Subtract(AdvSimd.And(quants, Vector128.Create((byte)3)),
                AdvSimd.BitwiseClear(Vector128.Create((byte)4), AdvSimd.CompareTest(hmask, bit))).AsSByte();
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.KQuants;

/// <summary>
/// ggml's block_q2_K: 256 values in 16 groups of 16; value = D·(scale_g &amp; 15)·q − DMin·(scale_g &gt;&gt; 4) with 2-bit q
/// (bits 2j…2j+1 of byte 32h + l hold value 128h + 32j + l).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ2K
{
    /// <summary>Low nibble: the group's scale; high nibble: its min.</summary>
    public fixed byte Scales[GgmlTypeInfo.QK_K / 16];
    public fixed byte Qs[GgmlTypeInfo.QK_K / 4];
    public ushort D;
    public ushort DMin;
}

/// <summary>Q2_K: 2.625 bits per weight.</summary>
public static unsafe class Q2_K
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = BlockSize / 16 + BlockSize / 4 + 2 + 2;

    /// <summary>Q2_K as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q2_K, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    /// <summary>quantize_row_q2_K_ref, bit for bit.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        fixed (byte* p = dst)
        {
            for (int i = 0; i < blocks; i++)
                QuantizeBlock(src.Slice(i * BlockSize, BlockSize), (BlockQ2K*)(p + i * BlockBytes));
        }
    }

    /// <summary>ggml's quantize_q2_K, bit for bit: with an importance matrix its quantize_row_q2_K_impl, without the reference.</summary>
    /// <param name="importance">Empty, or the row's column importance [src.Length] from an importance matrix.</param>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        Blocks.CheckImportance(importance.Length, src.Length);
        if (importance.IsEmpty)
        {
            Quantize(src, dst);
            return;
        }
        int blocks = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        fixed (byte* p = dst)
        {
            for (int i = 0; i < blocks; i++)
                QuantizeBlockWeighted(src.Slice(i * BlockSize, BlockSize), (BlockQ2K*)(p + i * BlockBytes), importance.Slice(i * BlockSize, BlockSize));
        }
    }

    /// <summary>
    /// quantize_row_q2_K_impl for one super-block: each group of 16 fitted by the weighted search (importance times
    /// sqrt(σ² + x²)), the 4-bit scales and mins fitted to the groups' by make_qp_quants weighted by the groups' total
    /// weight, then every value requantized at its stored scale and min.
    /// </summary>
    private static void QuantizeBlockWeighted(ReadOnlySpan<float> x, BlockQ2K* y, ReadOnlySpan<float> importance)
    {
        Span<byte> levels = stackalloc byte[BlockSize];
        Span<byte> scratch = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> sumWeights = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        Span<byte> ls = stackalloc byte[16];
        Span<byte> lm = stackalloc byte[16];
        float sumX2 = 0;
        for (int j = 0; j < BlockSize; j++) sumX2 += x[j] * x[j];
        float sigma2 = sumX2 / BlockSize;
        for (int g = 0; g < 16; g++)
        {
            var xs = x.Slice(16 * g, 16);
            for (int l = 0; l < 16; l++) weights[l] = importance[16 * g + l] * MathF.Sqrt(sigma2 + xs[l] * xs[l]);
            float sumW = 0;
            for (int l = 0; l < 16; l++) sumW += weights[l];
            sumWeights[g] = sumW;
            // make_qkx3_quants is make_qkx2_quants but for its all-equal test, which cannot differ once min <= 0 <= max.
            scales[g] = KQuantMath.MakeQkx2Quants(16, 3, xs, weights, levels.Slice(16 * g, 16), out mins[g], scratch,
                -0.9f, 0.05f, 36, false);
        }
        y->D = KQuantMath.ToHalfBits(ImportanceSearch.MakeQpQuants(16, 15, scales, ls, sumWeights));
        y->DMin = KQuantMath.ToHalfBits(ImportanceSearch.MakeQpQuants(16, 15, mins, lm, sumWeights));
        for (int g = 0; g < 16; g++) y->Scales[g] = (byte)(ls[g] | (lm[g] << 4));
        PackRequantized(x, y, levels);
    }

    private static void QuantizeBlock(ReadOnlySpan<float> x, BlockQ2K* y)
    {
        const float q4scale = 15f;
        Span<byte> levels = stackalloc byte[BlockSize];
        Span<byte> scratch = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        float maxScale = 0, maxMin = 0;
        for (int g = 0; g < 16; g++)
        {
            var xs = x.Slice(16 * g, 16);
            for (int l = 0; l < 16; l++) weights[l] = MathF.Abs(xs[l]);
            scales[g] = KQuantMath.MakeQkx2Quants(16, 3, xs, weights, levels.Slice(16 * g, 16), out mins[g], scratch,
                -0.5f, 0.1f, 15, true);
            if (scales[g] > maxScale) maxScale = scales[g];
            if (mins[g] > maxMin) maxMin = mins[g];
        }

        if (maxScale > 0)
        {
            float iscale = q4scale / maxScale;
            for (int g = 0; g < 16; g++) y->Scales[g] = (byte)KQuantMath.NearestInt(iscale * scales[g]);
            y->D = KQuantMath.ToHalfBits(maxScale / q4scale);
        }
        else
        {
            for (int g = 0; g < 16; g++) y->Scales[g] = 0;
            y->D = KQuantMath.ToHalfBits(0f);
        }
        if (maxMin > 0)
        {
            float iscale = q4scale / maxMin;
            for (int g = 0; g < 16; g++) y->Scales[g] |= (byte)(KQuantMath.NearestInt(iscale * mins[g]) << 4);
            y->DMin = KQuantMath.ToHalfBits(maxMin / q4scale);
        }
        else
        {
            y->DMin = KQuantMath.ToHalfBits(0f);
        }

        PackRequantized(x, y, levels);
    }

    /// <summary>Every group's values requantized at its stored scale and min (groups of scale 0 keep their first levels), then packed.</summary>
    private static void PackRequantized(ReadOnlySpan<float> x, BlockQ2K* y, Span<byte> levels)
    {
        float dAll = KQuantMath.FromHalfBits(y->D), mAll = KQuantMath.FromHalfBits(y->DMin);
        for (int g = 0; g < 16; g++)
        {
            float d = dAll * (y->Scales[g] & 0xF);
            if (d == 0) continue;
            float dm = mAll * (y->Scales[g] >> 4);
            for (int k = 0; k < 16; k++)
            {
                int l = KQuantMath.NearestInt((x[16 * g + k] + dm) / d);
                levels[16 * g + k] = (byte)Math.Max(0, Math.Min(3, l));
            }
        }

        for (int h = 0; h < 2; h++)
        {
            int o = 128 * h;
            for (int l = 0; l < 32; l++)
                y->Qs[32 * h + l] = (byte)(levels[o + l] | (levels[o + l + 32] << 2) | (levels[o + l + 64] << 4) | (levels[o + l + 96] << 6));
        }
    }

    /// <summary>dequantize_row_q2_K, bit for bit.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* p = src)
        fixed (float* yp = dst)
        {
            float* y = yp;
            for (int i = 0; i < blocks; i++)
            {
                var x = (BlockQ2K*)(p + i * BlockBytes);
                float d = KQuantMath.FromHalfBits(x->D), min = KQuantMath.FromHalfBits(x->DMin);
                byte* q = x->Qs;
                int g = 0;
                for (int h = 0; h < 2; h++)
                {
                    for (int shift = 0; shift < 8; shift += 2)
                    {
                        int sc = x->Scales[g++];
                        float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                        for (int l = 0; l < 16; l++) *y++ = dl * ((q[l] >> shift) & 3) - ml;
                        sc = x->Scales[g++];
                        dl = d * (sc & 0xF);
                        ml = min * (sc >> 4);
                        for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16] >> shift) & 3) - ml;
                    }
                    q += 32;
                }
            }
        }
    }

    /// <summary>Dot product of a Q2_K row with a Q8_K-quantized activation row of as many blocks.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8k)
        => Blocks.Dot(weights, q8k, BlockSize, BlockBytes, Q8_K.BlockBytes, &Dot);

    /// <summary>The dot of <paramref name="n"/> values on the kernel path in use (<see cref="Kernels.Path"/>).</summary>
    internal static float Dot(byte* weights, byte* q8k, int n)
        => Kernels.UseAvx2 ? DotAvx2(weights, q8k, n)
            : Kernels.UseAdvSimd ? DotAdvSimd(weights, q8k, n)
            : DotScalar(weights, q8k, n);

    internal static float DotScalar(byte* weights, byte* q8k, int n) => DotBlocks<ScalarSums>(weights, q8k, n / BlockSize);

    /// <summary>
    /// Σ over the blocks of dAll·Σ scale·q·y − dMin·Σ min·bsum in the reference's float steps, the first integer sum
    /// from <typeparamref name="TSums"/>: the scalar dot and its ARM64 twin share everything else, so that their
    /// results are the same to the bit.
    /// </summary>
    private static float DotBlocks<TSums>(byte* weights, byte* q8k, int blocks) where TSums : struct, IScaledSums
    {
        float sum = 0;
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ2K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            int sumMins = SumMins(x, y);
            int sumi = TSums.ScaledSum(x, y);
            float dAll = y->D * KQuantMath.FromHalfBits(x->D);
            float dMin = y->D * KQuantMath.FromHalfBits(x->DMin);
            sum += dAll * sumi - dMin * sumMins;
        }
        return sum;
    }

    /// <summary>One block's exact Σ over its 16 groups of scale · (q·y): the part a kernel computes its own way.</summary>
    private interface IScaledSums
    {
        static abstract int ScaledSum(BlockQ2K* x, BlockQ8K* y);
    }

    /// <summary>The reference: chunk c is bits 2(c mod 4)… of quant bytes 32(c / 4)…, two groups of 16.</summary>
    private readonly struct ScalarSums : IScaledSums
    {
        public static int ScaledSum(BlockQ2K* x, BlockQ8K* y)
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
                    lo += ((q[l] >> shift) & 3) * q8[l];
                    hi += ((q[l + 16] >> shift) & 3) * q8[l + 16];
                }
                sumi += (x->Scales[2 * c] & 0xF) * lo + (x->Scales[2 * c + 1] & 0xF) * hi;
            }
            return sumi;
        }
    }

    /// <summary>Σ over the 16 groups of min · (the activation's sum over the group).</summary>
    private static int SumMins(BlockQ2K* x, BlockQ8K* y)
    {
        int sumMins = 0;
        for (int g = 0; g < 16; g++) sumMins += y->BSums[g] * (x->Scales[g] >> 4);
        return sumMins;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* weights, byte* q8k, int n)
    {
        int blocks = n / BlockSize;
        var m3 = Vector256.Create((byte)0x03);
        var m4 = Vector128.Create((byte)0x0F);
        var acc = Vector256<float>.Zero;
        var accMins = Vector256<float>.Zero;
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ2K*)(weights + i * BlockBytes);
            X86Simd.PrefetchWeights((byte*)x, BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            float dAll = y->D * Fp16.ToFloat(x->D);
            float dMin = -y->D * Fp16.ToFloat(x->DMin);
            Vector128<byte> packed = Sse2.LoadVector128(x->Scales);
            var (low, high) = X86Simd.ScalePairs(Avx2.ConvertToVector256Int16(Sse2.And(packed, m4)));
            Vector128<byte> mins = Sse2.And(Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte(), m4);
            Vector256<int> minProducts = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(mins), Avx.LoadVector256(y->BSums));
            accMins = Fma.MultiplyAdd(Vector256.Create(dMin), Avx.ConvertToVector256Single(minProducts), accMins);
            Vector256<int> sumi = Avx2.Add(
                Half(Avx.LoadVector256(x->Qs).AsUInt16(), y->Qs, low, m3),
                Half(Avx.LoadVector256(x->Qs + 32).AsUInt16(), y->Qs + 128, high, m3));
            acc = Fma.MultiplyAdd(Vector256.Create(dAll), Avx.ConvertToVector256Single(sumi), acc);
        }
        return X86Simd.HSum(acc) + X86Simd.HSum(accMins);

        // 128 values: bits 2j…2j+1 of the 32 bytes are chunk c + j.
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        static Vector256<int> Half(Vector256<ushort> bits, sbyte* q8, Vector256<byte> scalePairs, Vector256<byte> m3)
            => X86Simd.QuarterSums(Avx2.And(bits.AsByte(), m3), Avx2.And(Avx2.ShiftRightLogical(bits, 2).AsByte(), m3),
                Avx2.And(Avx2.ShiftRightLogical(bits, 4).AsByte(), m3), Avx2.And(Avx2.ShiftRightLogical(bits, 6).AsByte(), m3), q8, scalePairs);
    }

    /// <summary>
    /// ARM64 AdvSimd: exact int32 dots per group of 16 (SDOT where the CPU has the dot-product extension), the
    /// 2-bit fields taken by shifting each 32-byte quant group 2 bits per step, scaled in integers as the scalar
    /// reference does, so the result is the reference's to the bit.
    /// </summary>
    internal static float DotAdvSimd(byte* weights, byte* q8k, int n)
        => AdvSimd.Arm64.IsSupported ? DotBlocks<ArmSums>(weights, q8k, n / BlockSize) : DotScalar(weights, q8k, n);

    private readonly struct ArmSums : IScaledSums
    {
        public static int ScaledSum(BlockQ2K* x, BlockQ8K* y)
        {
            var m3 = Vector128.Create((byte)3);
            int sumi = 0;
            for (int half = 0; half < 2; half++)
            {
                Vector128<byte> q0 = AdvSimd.LoadVector128(x->Qs + 32 * half), q1 = AdvSimd.LoadVector128(x->Qs + 32 * half + 16);
                for (int step = 0; step < 4; step++)
                {
                    int c = 4 * half + step;
                    sbyte* q8 = y->Qs + 32 * c;
                    int lo = ArmSimd.Dot16(AdvSimd.And(q0, m3).AsSByte(), q8);
                    int hi = ArmSimd.Dot16(AdvSimd.And(q1, m3).AsSByte(), q8 + 16);
                    sumi += (x->Scales[2 * c] & 0xF) * lo + (x->Scales[2 * c + 1] & 0xF) * hi;
                    q0 = AdvSimd.ShiftRightLogical(q0, 2);
                    q1 = AdvSimd.ShiftRightLogical(q1, 2);
                }
            }
            return sumi;
        }
    }
}

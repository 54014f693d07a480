using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.KQuants;

/// <summary>
/// ggml's block_q6_K: 256 values in 16 groups of 16; value = D·scale_g·(q − 32) with 6-bit q split into low nibbles
/// (Ql) and high pairs of bits (Qh), and signed 8-bit group scales.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ6K
{
    /// <summary>Half 0/1 (values 128h…): byte 64h + l holds value 128h + l (low) and 128h + 64 + l (high);
    /// byte 64h + 32 + l holds 128h + 32 + l and 128h + 96 + l.</summary>
    public fixed byte Ql[GgmlTypeInfo.QK_K / 2];
    /// <summary>Byte 32h + l: bits 0–1, 2–3, 4–5, 6–7 are the top bits of values 128h + l, +32, +64, +96.</summary>
    public fixed byte Qh[GgmlTypeInfo.QK_K / 4];
    public fixed sbyte Scales[GgmlTypeInfo.QK_K / 16];
    public ushort D;
}

/// <summary>Q6_K: 6.5625 bits per weight (output heads and attention/feed-forward tensors of Q4_K_M).</summary>
public static unsafe class Q6_K
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = BlockSize / 2 + BlockSize / 4 + BlockSize / 16 + 2;

    /// <summary>Q6_K as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q6_K, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = Q8_K.Activation, Dot = &Dot, Dot4Avx2 = &Dot4Avx2, Dot8Avx2 = &Dot8Avx2, Dot8Avx512 = &Tiles.Q6KPairTiles.Dot8 }) { QuantizeWeighted = &Quantize };

    /// <summary>The quantizer without an importance matrix.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>quantize_row_q6_K_ref, bit for bit.</summary>
    /// <param name="importance">Empty, or the row's column importance [src.Length] from an importance matrix
    /// (ggml's quantize_q6_K with quant_weights).</param>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        int blocks = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        Blocks.CheckImportance(importance.Length, src.Length);
        fixed (byte* p = dst)
        {
            for (int i = 0; i < blocks; i++)
                QuantizeBlock(src.Slice(i * BlockSize, BlockSize), (BlockQ6K*)(p + i * BlockBytes),
                    importance.IsEmpty ? default : importance.Slice(i * BlockSize, BlockSize));
        }
    }

    private static void QuantizeBlock(ReadOnlySpan<float> x, BlockQ6K* y, ReadOnlySpan<float> importance)
    {
        Span<sbyte> levels = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        float maxScale = 0, maxAbsScale = 0;
        for (int g = 0; g < 16; g++)
        {
            float scale = KQuantMath.MakeQxQuants(16, 32, x.Slice(16 * g, 16), levels.Slice(16 * g, 16),
                importance.IsEmpty ? default : importance.Slice(16 * g, 16));
            scales[g] = scale;
            float abs = MathF.Abs(scale);
            if (abs > maxAbsScale) { maxAbsScale = abs; maxScale = scale; }
        }
        if (maxAbsScale < KQuantMath.GroupMaxEps)
        {
            *y = default;
            return;
        }

        float iscale = -128f / maxScale;
        y->D = KQuantMath.ToHalfBits(1 / iscale);
        for (int g = 0; g < 16; g++)
            y->Scales[g] = (sbyte)Math.Min(127, KQuantMath.NearestInt(iscale * scales[g]));

        float dAll = KQuantMath.FromHalfBits(y->D);
        for (int g = 0; g < 16; g++)
        {
            float d = dAll * y->Scales[g];
            if (d == 0) continue;
            for (int k = 0; k < 16; k++)
            {
                int l = KQuantMath.NearestInt(x[16 * g + k] / d);
                levels[16 * g + k] = (sbyte)(Math.Max(-32, Math.Min(31, l)) + 32);
            }
        }

        for (int h = 0; h < 2; h++)
        {
            byte* ql = y->Ql + 64 * h;
            byte* qh = y->Qh + 32 * h;
            int o = 128 * h;
            for (int l = 0; l < 32; l++)
            {
                int q1 = levels[o + l], q2 = levels[o + l + 32], q3 = levels[o + l + 64], q4 = levels[o + l + 96];
                ql[l] = (byte)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (byte)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }

    /// <summary>dequantize_row_q6_K, bit for bit.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* p = src)
        fixed (float* yp = dst)
        {
            for (int i = 0; i < blocks; i++)
            {
                var x = (BlockQ6K*)(p + i * BlockBytes);
                float d = KQuantMath.FromHalfBits(x->D);
                for (int h = 0; h < 2; h++)
                {
                    byte* ql = x->Ql + 64 * h;
                    byte* qh = x->Qh + 32 * h;
                    sbyte* sc = x->Scales + 8 * h;
                    float* y = yp + i * BlockSize + 128 * h;
                    for (int l = 0; l < 32; l++)
                    {
                        int g = l / 16;
                        int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                        int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        y[l] = d * sc[g] * q1;
                        y[l + 32] = d * sc[g + 2] * q2;
                        y[l + 64] = d * sc[g + 4] * q3;
                        y[l + 96] = d * sc[g + 6] * q4;
                    }
                }
            }
        }
    }

    /// <summary>Dot product of a Q6_K row with a Q8_K-quantized activation row of as many blocks.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8k)
        => Blocks.Dot(weights, q8k, BlockSize, BlockBytes, Q8_K.BlockBytes, &Dot);

    /// <summary>The dot of <paramref name="n"/> values on the kernel path in use (<see cref="Kernels.Path"/>).</summary>
    internal static float Dot(byte* weights, byte* q8k, int n)
    {
        if (Kernels.UseAvx2) return DotAvx2(weights, q8k, n);
        if (Kernels.UseAdvSimd) return DotAdvSimd(weights, q8k, n);
        return DotScalar(weights, q8k, n);
    }

    internal static float DotScalar(byte* weights, byte* q8k, int n)
    {
        int blocks = n / BlockSize;
        float sum = 0;
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ6K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            int sumi = 0;
            for (int h = 0; h < 2; h++)
            {
                byte* ql = x->Ql + 64 * h;
                byte* qh = x->Qh + 32 * h;
                sbyte* q8 = y->Qs + 128 * h;
                int s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
                for (int l = 0; l < 16; l++)
                {
                    s0 += (((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32) * q8[l];
                    s2 += (((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32) * q8[l + 32];
                    s4 += (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * q8[l + 64];
                    s6 += (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * q8[l + 96];
                    int m = l + 16;
                    s1 += (((ql[m] & 0xF) | ((qh[m] & 3) << 4)) - 32) * q8[m];
                    s3 += (((ql[m + 32] & 0xF) | (((qh[m] >> 2) & 3) << 4)) - 32) * q8[m + 32];
                    s5 += (((ql[m] >> 4) | (((qh[m] >> 4) & 3) << 4)) - 32) * q8[m + 64];
                    s7 += (((ql[m + 32] >> 4) | (((qh[m] >> 6) & 3) << 4)) - 32) * q8[m + 96];
                }
                sbyte* sc = x->Scales + 8 * h;
                sumi += sc[0] * s0 + sc[1] * s1 + sc[2] * s2 + sc[3] * s3 + sc[4] * s4 + sc[5] * s5 + sc[6] * s6 + sc[7] * s7;
            }
            sum += y->D * KQuantMath.FromHalfBits(x->D) * sumi;
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* weights, byte* q8k, int n)
    {
        int blocks = n / BlockSize;
        var acc = Vector256<float>.Zero;
        // Masks made once here: built inside the helpers, the JIT rebuilds them every iteration.
        var m4 = Vector256.Create((byte)0x0F);
        var m30 = Vector256.Create((byte)0x30);
        int i = 0;
        // Two blocks' integer sums before their float steps (in block order, so the bits are those of one block at a
        // time): more independent work in flight per iteration.
        for (; i + 1 < blocks; i += 2)
        {
            byte* x0 = weights + i * BlockBytes;
            byte* y0 = q8k + i * Q8_K.BlockBytes;
            // The per-pair loop of requests, kept: a fixed set of 7 lines per pair, without the loop, was as fast in
            // cache and slower past L3 (32768 x 4096 MatVec, paired median against llama.cpp 1.20-1.24 vs 1.30-1.32).
            X86Simd.PrefetchWeights(x0, 2 * BlockBytes);
            Vector256<int> sumi0 = BlockSum(x0, y0, m4, m30);
            Vector256<int> sumi1 = BlockSum(x0 + BlockBytes, y0 + Q8_K.BlockBytes, m4, m30);
            acc = Fma.MultiplyAdd(Vector256.Create(*(float*)y0 * Fp16.ToFloat(*(ushort*)(x0 + 208))), Avx.ConvertToVector256Single(sumi0), acc);
            acc = Fma.MultiplyAdd(Vector256.Create(*(float*)(y0 + Q8_K.BlockBytes) * Fp16.ToFloat(*(ushort*)(x0 + BlockBytes + 208))),
                Avx.ConvertToVector256Single(sumi1), acc);
        }
        if (i < blocks)
        {
            byte* x = weights + i * BlockBytes;
            byte* y = q8k + i * Q8_K.BlockBytes;
            acc = Fma.MultiplyAdd(Vector256.Create(*(float*)y * Fp16.ToFloat(*(ushort*)(x + 208))), Avx.ConvertToVector256Single(BlockSum(x, y, m4, m30)), acc);
        }
        return X86Simd.HSum(acc);
    }

    /// <summary>
    /// Σ over the block of scale_g · ((q − 32) · q8) in eight int32 lanes (exact). Fields are reached as offsets from
    /// the blocks' starts (Ql 0, Qh 128, Scales 192; the activation's Qs 4, BSums 260), so that every load folds
    /// into its instruction and no field access costs a null check.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockSum(byte* x, byte* y, Vector256<byte> m4, Vector256<byte> m30)
    {
        Vector256<short> scales16 = Avx2.ConvertToVector256Int16((sbyte*)(x + 192));
        // The −32 offset of every quant, applied once per block through the activation's group sums.
        Vector256<int> sumi = Offset(scales16, (BlockQ8K*)y);
        var (low, high) = X86Simd.ScalePairs(scales16);
        sumi = Avx2.Add(sumi, Half(x, y, 0, low, m4, m30));
        return Avx2.Add(sumi, Half(x, y, 1, high, m4, m30));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<int> Half(byte* x, byte* y, int h, Vector256<byte> scales, Vector256<byte> m4, Vector256<byte> m30)
        {
            Quants(x + 64 * h, x + 128 + 32 * h, m4, m30, out var q0, out var q1, out var q2, out var q3);
            return X86Simd.QuarterSums(q0, q1, q2, q3, (sbyte*)(y + 4 + 128 * h), scales);
        }
    }

    /// <summary>
    /// The 128 six-bit quants of one half block (64 bytes of low nibbles at <paramref name="ql"/>, 32 bytes of high
    /// bit pairs at <paramref name="qh"/>) as four groups of 32 unsigned values. Each bit pair is moved to bits 4–5
    /// by at most one 16-bit shift and kept by the one mask <paramref name="m30"/>: a pair that crosses into the neighbouring
    /// byte lands outside bits 4–5 and is masked off.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quants(byte* ql, byte* qh, Vector256<byte> m4, Vector256<byte> m30,
        out Vector256<byte> q0, out Vector256<byte> q1, out Vector256<byte> q2, out Vector256<byte> q3)
    {
        Vector256<byte> bits1 = Avx.LoadVector256(ql);
        Vector256<byte> bits2 = Avx.LoadVector256(ql + 32);
        Vector256<ushort> high = Avx.LoadVector256((ushort*)qh);
        q0 = Avx2.Or(Avx2.And(bits1, m4), Avx2.And(Avx2.ShiftLeftLogical(high, 4).AsByte(), m30));
        q1 = Avx2.Or(Avx2.And(bits2, m4), Avx2.And(Avx2.ShiftLeftLogical(high, 2).AsByte(), m30));
        q2 = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits1.AsUInt16(), 4).AsByte(), m4), Avx2.And(high.AsByte(), m30));
        q3 = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits2.AsUInt16(), 4).AsByte(), m4), Avx2.And(Avx2.ShiftRightLogical(high, 2).AsByte(), m30));
    }

    /// <summary>−32·Σ scale·bsum: the quants' offset, with which every block's integer sum starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Offset(Vector256<short> scales16, BlockQ8K* y)
        => Avx2.Subtract(Vector256<int>.Zero, Avx2.ShiftLeftLogical(Avx2.MultiplyAddAdjacent(scales16, Avx.LoadVector256(y->BSums)), 5));

    /// <summary>
    /// One weight row against 4 Q8_K activation rows (<paramref name="n"/> values each, rows
    /// <paramref name="aStride"/> bytes apart; results <paramref name="yStride"/> floats apart): each block's 6-bit
    /// quants and scales are decoded once; the integer sums per row are those of <see cref="DotAvx2"/> (exact) and
    /// the float steps are DotAvx2's in the same order, so every result is bit-identical to DotAvx2 on that row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot4Avx2(byte* weights, byte* q8k, nint aStride, int n, float* result, nint yStride)
    {
        int blocks = n / BlockSize;
        var m4 = Vector256.Create((byte)0x0F);
        var m30 = Vector256.Create((byte)0x30);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ6K*)(weights + i * BlockBytes);
            byte* yb = q8k + i * Q8_K.BlockBytes;
            BlockQ8K* y0 = (BlockQ8K*)yb, y1 = (BlockQ8K*)(yb + aStride);
            BlockQ8K* y2 = (BlockQ8K*)(yb + 2 * aStride), y3 = (BlockQ8K*)(yb + 3 * aStride);
            float dx = KQuantMath.FromHalfBits(x->D);
            Vector128<sbyte> scales = Sse2.LoadVector128(x->Scales);
            Vector256<short> scales16 = Avx2.ConvertToVector256Int16(scales);
            Vector256<int> sumi0 = Offset(scales16, y0), sumi1 = Offset(scales16, y1);
            Vector256<int> sumi2 = Offset(scales16, y2), sumi3 = Offset(scales16, y3);
            for (int h = 0; h < 2; h++)
            {
                Quants(x->Ql + 64 * h, x->Qh + 32 * h, m4, m30, out var q0, out var q1, out var q2, out var q3);
                int k = 4 * h;
                Vector256<short> sc0 = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, X86Simd.ScalePairMask(k).AsSByte()));
                Vector256<short> sc1 = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, X86Simd.ScalePairMask(k + 1).AsSByte()));
                Vector256<short> sc2 = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, X86Simd.ScalePairMask(k + 2).AsSByte()));
                Vector256<short> sc3 = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, X86Simd.ScalePairMask(k + 3).AsSByte()));
                int o = 128 * h;
                sumi0 = Avx2.Add(sumi0, Half4(q0, q1, q2, q3, sc0, sc1, sc2, sc3, y0->Qs + o));
                sumi1 = Avx2.Add(sumi1, Half4(q0, q1, q2, q3, sc0, sc1, sc2, sc3, y1->Qs + o));
                sumi2 = Avx2.Add(sumi2, Half4(q0, q1, q2, q3, sc0, sc1, sc2, sc3, y2->Qs + o));
                sumi3 = Avx2.Add(sumi3, Half4(q0, q1, q2, q3, sc0, sc1, sc2, sc3, y3->Qs + o));
            }
            acc0 = Fma.MultiplyAdd(Vector256.Create(y0->D * dx), Avx.ConvertToVector256Single(sumi0), acc0);
            acc1 = Fma.MultiplyAdd(Vector256.Create(y1->D * dx), Avx.ConvertToVector256Single(sumi1), acc1);
            acc2 = Fma.MultiplyAdd(Vector256.Create(y2->D * dx), Avx.ConvertToVector256Single(sumi2), acc2);
            acc3 = Fma.MultiplyAdd(Vector256.Create(y3->D * dx), Avx.ConvertToVector256Single(sumi3), acc3);
        }
        result[0] = X86Simd.HSum(acc0);
        result[yStride] = X86Simd.HSum(acc1);
        result[2 * yStride] = X86Simd.HSum(acc2);
        result[3 * yStride] = X86Simd.HSum(acc3);

        // DotAvx2's Half for one activation row, from quants and scale vectors already decoded (integer, exact).
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        static Vector256<int> Half4(Vector256<byte> q0, Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3,
            Vector256<short> sc0, Vector256<short> sc1, Vector256<short> sc2, Vector256<short> sc3, sbyte* q8)
        {
            Vector256<int> s01 = Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q0, Avx.LoadVector256(q8)), sc0),
                Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q1, Avx.LoadVector256(q8 + 32)), sc1));
            Vector256<int> s23 = Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q2, Avx.LoadVector256(q8 + 64)), sc2),
                Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q3, Avx.LoadVector256(q8 + 96)), sc3));
            return Avx2.Add(s01, s23);
        }
    }

    /// <summary>
    /// One weight row against 8 Q8_K activation rows: as <see cref="Dot4Avx2"/>, each 32-value group's quants and
    /// scales decoded once and used by 8 rows. The integer sums per row are DotAvx2's (exact, any order) and each
    /// row's float accumulator gets DotAvx2's one FMA per block, so every result is bit-identical to DotAvx2. The 8
    /// float accumulators live on the stack (one load and store per row and block) so the integer sums keep the registers.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static void Dot8Avx2(byte* weights, byte* q8k, nint aStride, int n, float* result, nint yStride)
    {
        int blocks = n / BlockSize;
        var m4 = Vector256.Create((byte)0x0F);
        var m30 = Vector256.Create((byte)0x30);
        Vector256<float>* acc = stackalloc Vector256<float>[8];
        for (int k = 0; k < 8; k++) acc[k] = default;
        // The block's 8 groups of 32 quants and their scale pairs, decoded once for the 8 rows.
        Vector256<byte>* qs = stackalloc Vector256<byte>[8];
        Vector256<short>* scs = stackalloc Vector256<short>[8];
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ6K*)(weights + i * BlockBytes);
            byte* y0 = q8k + i * Q8_K.BlockBytes;
            byte* y4 = y0 + 4 * aStride;
            Vector128<sbyte> scales = Sse2.LoadVector128(x->Scales);
            Vector256<short> scales16 = Avx2.ConvertToVector256Int16(scales);
            Vector256<int> s0 = Offset(scales16, (BlockQ8K*)y0), s1 = Offset(scales16, (BlockQ8K*)(y0 + aStride));
            Vector256<int> s2 = Offset(scales16, (BlockQ8K*)(y0 + 2 * aStride)), s3 = Offset(scales16, (BlockQ8K*)(y0 + 3 * aStride));
            Vector256<int> s4 = Offset(scales16, (BlockQ8K*)y4), s5 = Offset(scales16, (BlockQ8K*)(y4 + aStride));
            Vector256<int> s6 = Offset(scales16, (BlockQ8K*)(y4 + 2 * aStride)), s7 = Offset(scales16, (BlockQ8K*)(y4 + 3 * aStride));
            Decode(x, 0, scales, qs, scs, m4, m30);
            Decode(x, 1, scales, qs + 4, scs + 4, m4, m30);
            for (int j = 0; j < 8; j++)
            {
                Vector256<byte> q = qs[j];
                Vector256<short> sc = scs[j];
                int o = 32 * j + 4; // 4: the activation block's f32 scale comes first
                s0 = Avx2.Add(s0, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y0 + o))), sc));
                s1 = Avx2.Add(s1, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y0 + aStride + o))), sc));
                s2 = Avx2.Add(s2, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y0 + 2 * aStride + o))), sc));
                s3 = Avx2.Add(s3, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y0 + 3 * aStride + o))), sc));
                s4 = Avx2.Add(s4, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y4 + o))), sc));
                s5 = Avx2.Add(s5, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y4 + aStride + o))), sc));
                s6 = Avx2.Add(s6, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y4 + 2 * aStride + o))), sc));
                s7 = Avx2.Add(s7, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y4 + 3 * aStride + o))), sc));
            }
            float dx = KQuantMath.FromHalfBits(x->D);
            acc[0] = Fma.MultiplyAdd(Vector256.Create(((BlockQ8K*)y0)->D * dx), Avx.ConvertToVector256Single(s0), acc[0]);
            acc[1] = Fma.MultiplyAdd(Vector256.Create(((BlockQ8K*)(y0 + aStride))->D * dx), Avx.ConvertToVector256Single(s1), acc[1]);
            acc[2] = Fma.MultiplyAdd(Vector256.Create(((BlockQ8K*)(y0 + 2 * aStride))->D * dx), Avx.ConvertToVector256Single(s2), acc[2]);
            acc[3] = Fma.MultiplyAdd(Vector256.Create(((BlockQ8K*)(y0 + 3 * aStride))->D * dx), Avx.ConvertToVector256Single(s3), acc[3]);
            acc[4] = Fma.MultiplyAdd(Vector256.Create(((BlockQ8K*)y4)->D * dx), Avx.ConvertToVector256Single(s4), acc[4]);
            acc[5] = Fma.MultiplyAdd(Vector256.Create(((BlockQ8K*)(y4 + aStride))->D * dx), Avx.ConvertToVector256Single(s5), acc[5]);
            acc[6] = Fma.MultiplyAdd(Vector256.Create(((BlockQ8K*)(y4 + 2 * aStride))->D * dx), Avx.ConvertToVector256Single(s6), acc[6]);
            acc[7] = Fma.MultiplyAdd(Vector256.Create(((BlockQ8K*)(y4 + 3 * aStride))->D * dx), Avx.ConvertToVector256Single(s7), acc[7]);
        }
        for (int k = 0; k < 8; k++) result[k * yStride] = X86Simd.HSum(acc[k]);

        // DotAvx2's q0..q3 and scale vectors of half h (values 128h .. 128h + 127).
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        static void Decode(BlockQ6K* x, int h, Vector128<sbyte> scales, Vector256<byte>* q, Vector256<short>* sc,
            Vector256<byte> m4, Vector256<byte> m30)
        {
            Quants(x->Ql + 64 * h, x->Qh + 32 * h, m4, m30, out q[0], out q[1], out q[2], out q[3]);
            int k = 4 * h;
            sc[0] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, X86Simd.ScalePairMask(k).AsSByte()));
            sc[1] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, X86Simd.ScalePairMask(k + 1).AsSByte()));
            sc[2] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, X86Simd.ScalePairMask(k + 2).AsSByte()));
            sc[3] = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, X86Simd.ScalePairMask(k + 3).AsSByte()));
        }
    }

    /// <summary>ARM64 AdvSimd: exact int32 dots per group of 16 (SDOT where available).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAdvSimd(byte* weights, byte* q8k, int n)
    {
        int blocks = n / BlockSize;
        if (!AdvSimd.Arm64.IsSupported) return DotScalar(weights, q8k, n);
        var m4 = Vector128.Create((byte)0x0F);
        var m2 = Vector128.Create((byte)0x03);
        var m2x4 = Vector128.Create((byte)0x30);
        float sum = 0;
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ6K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            int offset = 0;
            for (int g = 0; g < 16; g++) offset += x->Scales[g] * y->BSums[g];
            int sumi = -32 * offset;
            for (int h = 0; h < 2; h++)
            {
                byte* ql = x->Ql + 64 * h;
                byte* qh = x->Qh + 32 * h;
                sbyte* q8 = y->Qs + 128 * h;
                sbyte* sc = x->Scales + 8 * h;
                for (int half = 0; half < 2; half++)
                {
                    // Bytes l = 16·half … 16·half + 15: groups 2k + half of the four 32-value chunks.
                    int o = 16 * half;
                    Vector128<byte> b1 = AdvSimd.LoadVector128(ql + o);
                    Vector128<byte> b2 = AdvSimd.LoadVector128(ql + 32 + o);
                    Vector128<byte> hb = AdvSimd.LoadVector128(qh + o);
                    Vector128<byte> q0 = AdvSimd.Or(AdvSimd.And(b1, m4), AdvSimd.ShiftLeftLogical(AdvSimd.And(hb, m2), 4));
                    Vector128<byte> q1 = AdvSimd.Or(AdvSimd.And(b2, m4), AdvSimd.ShiftLeftLogical(AdvSimd.And(AdvSimd.ShiftRightLogical(hb, 2), m2), 4));
                    Vector128<byte> q2 = AdvSimd.Or(AdvSimd.ShiftRightLogical(b1, 4), AdvSimd.And(hb, m2x4));
                    Vector128<byte> q3 = AdvSimd.Or(AdvSimd.ShiftRightLogical(b2, 4), AdvSimd.And(AdvSimd.ShiftRightLogical(hb, 2), m2x4));
                    sumi += sc[half] * ArmSimd.Dot16(q0.AsSByte(), q8 + o)
                          + sc[2 + half] * ArmSimd.Dot16(q1.AsSByte(), q8 + 32 + o)
                          + sc[4 + half] * ArmSimd.Dot16(q2.AsSByte(), q8 + 64 + o)
                          + sc[6 + half] * ArmSimd.Dot16(q3.AsSByte(), q8 + 96 + o);
                }
            }
            sum += y->D * KQuantMath.FromHalfBits(x->D) * sumi;
        }
        return sum;
    }
}

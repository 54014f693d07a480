using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants.KQuants;

/// <summary>
/// ggml's block_q4_K: 256 values in 8 sub-blocks of 32; value = D·scale_j·q − DMin·min_j with 4-bit q and 6-bit
/// scale/min pairs packed into 12 bytes (see <see cref="KQuantMath.GetScaleMinK4"/>).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4K
{
    /// <summary>fp16 bits of the super-block scale of the scales.</summary>
    public ushort D;
    /// <summary>fp16 bits of the super-block scale of the mins.</summary>
    public ushort DMin;
    public fixed byte Scales[12];
    /// <summary>Nibbles: byte 32·c + l holds value 64·c + l (low) and 64·c + 32 + l (high).</summary>
    public fixed byte Qs[KQuantMath.QK_K / 2];
}

/// <summary>Q4_K: 4.5 bits per weight, the workhorse of Q4_K_M models.</summary>
public static unsafe class Q4_K
{
    public const int BlockSize = KQuantMath.QK_K;
    public const int BlockBytes = 2 + 2 + 12 + BlockSize / 2;

    /// <summary>quantize_row_q4_K_ref, bit for bit.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = KQuantRows.BlockCount(src.Length, dst.Length, BlockBytes);
        fixed (byte* p = dst)
        {
            for (int i = 0; i < blocks; i++)
                QuantizeBlock(src.Slice(i * BlockSize, BlockSize), (BlockQ4K*)(p + i * BlockBytes));
        }
    }

    private static void QuantizeBlock(ReadOnlySpan<float> x, BlockQ4K* y)
    {
        Span<byte> levels = stackalloc byte[BlockSize];
        KQuantMath.QuantizeScaleMinSuperBlock(x, 15, -1f, 20, (byte*)y, levels);

        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y->Qs[32 * c + l] = (byte)(levels[64 * c + l] | (levels[64 * c + l + 32] << 4));
    }

    /// <summary>dequantize_row_q4_K, bit for bit.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = KQuantRows.BlockCount(dst.Length, src.Length, BlockBytes);
        fixed (byte* p = src)
        fixed (float* yp = dst)
        {
            float* y = yp;
            for (int i = 0; i < blocks; i++)
            {
                var x = (BlockQ4K*)(p + i * BlockBytes);
                var table = new ReadOnlySpan<byte>(x->Scales, 12);
                float d = KQuantMath.FromHalfBits(x->D), min = KQuantMath.FromHalfBits(x->DMin);
                byte* q = x->Qs;
                for (int j = 0; j < 8; j += 2)
                {
                    KQuantMath.GetScaleMinK4(j, table, out byte sc, out byte m);
                    float d1 = d * sc, m1 = min * m;
                    KQuantMath.GetScaleMinK4(j + 1, table, out sc, out m);
                    float d2 = d * sc, m2 = min * m;
                    for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
                    for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
                    q += 32;
                }
            }
        }
    }

    /// <summary>Dot product of a Q4_K row with a Q8_K-quantized activation row of as many blocks.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8k)
    {
        int blocks = KQuantRows.DotBlockCount(weights.Length, BlockBytes, q8k.Length);
        fixed (byte* w = weights)
        fixed (byte* a = q8k)
            return Dot(w, a, blocks);
    }

    /// <summary>The dot over <paramref name="blocks"/> blocks on the kernel path in use (<see cref="Kernels.Path"/>).</summary>
    internal static float Dot(byte* weights, byte* q8k, int blocks)
    {
        if (Kernels.UseAvx512) return DotAvx512(weights, q8k, blocks);
        if (Kernels.UseAvx2) return DotAvx2(weights, q8k, blocks);
        if (Kernels.UseAdvSimd) return DotAdvSimd(weights, q8k, blocks);
        return DotScalar(weights, q8k, blocks);
    }

    /// <summary>
    /// Reference: exact integer sums per block, then d·Σ scale·(q·q8) − dmin·Σ min·bsum in single precision.
    /// </summary>
    internal static float DotScalar(byte* weights, byte* q8k, int blocks)
    {
        float sum = 0;
        uint* utmp = stackalloc uint[4];
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ4K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            KQuantMath.UnpackScaleMinK4(x->Scales, utmp);
            byte* sc = (byte*)utmp;
            byte* mn = sc + 8;
            int sumMins = KQuantMath.SumMinsK4(mn, y->BSums);
            int sumi = 0;
            for (int c = 0; c < 4; c++)
            {
                int lo = 0, hi = 0;
                for (int l = 0; l < 32; l++)
                {
                    int q = x->Qs[32 * c + l];
                    lo += (q & 0xF) * y->Qs[64 * c + l];
                    hi += (q >> 4) * y->Qs[64 * c + 32 + l];
                }
                sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
            }
            sum += KQuantMath.ScaleMinTerm(y->D, x->D, x->DMin, sumi, sumMins);
        }
        return sum;
    }

    /// <summary>
    /// AVX2, as ggml's: per 64-value chunk maddubs of the nibbles with the activation, scaled by the sub-block scales
    /// in 32-bit integers; mins through the activation's block sums. Two blocks' integer work is issued before their
    /// float steps (in block order, so the bits are those of one block at a time): the long per-block dependency
    /// chain (scale unpacking, fp16 scales) then overlaps with the other block's multiplies.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* weights, byte* q8k, int blocks)
    {
        var acc = Vector256<float>.Zero;
        var accMins = Vector128<float>.Zero;
        int i = 0;
        for (; i + 1 < blocks; i += 2)
        {
            var x0 = (BlockQ4K*)(weights + i * BlockBytes);
            var y0 = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            var x1 = (BlockQ4K*)((byte*)x0 + BlockBytes);
            var y1 = (BlockQ8K*)((byte*)y0 + Q8_K.BlockBytes);
            Vector256<short> scalesAndMins0 = SimdHelpers.ScalesAndMinsK4(x0->Scales);
            Vector256<short> scalesAndMins1 = SimdHelpers.ScalesAndMinsK4(x1->Scales);
            Vector256<int> sumi0 = BlockSum(x0->Qs, y0->Qs, scalesAndMins0.GetLower());
            Vector256<int> sumi1 = BlockSum(x1->Qs, y1->Qs, scalesAndMins1.GetLower());
            Accumulate(x0, y0, scalesAndMins0.GetUpper(), sumi0, ref acc, ref accMins);
            Accumulate(x1, y1, scalesAndMins1.GetUpper(), sumi1, ref acc, ref accMins);
        }
        if (i < blocks)
        {
            var x = (BlockQ4K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            Vector256<short> scalesAndMins = SimdHelpers.ScalesAndMinsK4(x->Scales);
            Accumulate(x, y, scalesAndMins.GetUpper(), BlockSum(x->Qs, y->Qs, scalesAndMins.GetLower()), ref acc, ref accMins);
        }
        return SimdHelpers.HorizontalSum(acc) + SimdHelpers.HorizontalSum(accMins);
    }

    /// <summary>Σ over the block of scale_j · (q4 · q8) in eight int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockSum(byte* q4, sbyte* q8, Vector128<short> scales8)
    {
        Vector256<byte> scales = Vector256.Create(scales8, scales8).AsByte();
        Vector256<int> sumi = Chunk(q4, q8, scales, SimdHelpers.WordBroadcastMask(0), SimdHelpers.WordBroadcastMask(1));
        sumi = Avx2.Add(sumi, Chunk(q4 + 32, q8 + 64, scales, SimdHelpers.WordBroadcastMask(2), SimdHelpers.WordBroadcastMask(3)));
        sumi = Avx2.Add(sumi, Chunk(q4 + 64, q8 + 128, scales, SimdHelpers.WordBroadcastMask(4), SimdHelpers.WordBroadcastMask(5)));
        return Avx2.Add(sumi, Chunk(q4 + 96, q8 + 192, scales, SimdHelpers.WordBroadcastMask(6), SimdHelpers.WordBroadcastMask(7)));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<int> Chunk(byte* q4, sbyte* q8, Vector256<byte> scales, Vector256<byte> maskLo, Vector256<byte> maskHi)
        {
            var m4 = Vector256.Create((byte)0x0F);
            Vector256<byte> bits = Avx.LoadVector256(q4);
            Vector256<byte> lo = Avx2.And(bits, m4);
            Vector256<byte> hi = Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4);
            Vector256<short> pLo = Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256(q8));
            Vector256<short> pHi = Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256(q8 + 32));
            Vector256<int> sLo = Avx2.MultiplyAddAdjacent(Avx2.Shuffle(scales, maskLo).AsInt16(), pLo);
            Vector256<int> sHi = Avx2.MultiplyAddAdjacent(Avx2.Shuffle(scales, maskHi).AsInt16(), pHi);
            return Avx2.Add(sLo, sHi);
        }
    }

    /// <summary>
    /// One block's float steps for one activation row: acc += d·x.d·sumi and accMins −= d·x.dmin·Σ min·bsum, with
    /// d·x.d and d·x.dmin rounded as the scalar reference rounds them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(BlockQ4K* x, BlockQ8K* y, Vector128<short> mins, Vector256<int> sumi,
        ref Vector256<float> acc, ref Vector128<float> accMins)
    {
        float d = y->D * Fp16.ToFloat(x->D), dmin = y->D * Fp16.ToFloat(x->DMin);
        accMins = Fma.MultiplyAddNegated(Vector128.Create(dmin), SimdHelpers.MinSums(mins, y->BSums), accMins);
        acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
    }

    /// <summary>
    /// One weight row against 4 Q8_K activation rows (<paramref name="n"/> values each, rows
    /// <paramref name="aStride"/> bytes apart; results <paramref name="yStride"/> floats apart): the nibbles and
    /// scales of each block are decoded once, and each row then runs exactly <see cref="DotAvx2"/>'s arithmetic,
    /// so every result is bit-identical to DotAvx2 on that row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot4Avx2(byte* weights, byte* q8k, nint aStride, int n, float* result, nint yStride)
    {
        int blocks = n / BlockSize;
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector128<float> mins0 = default, mins1 = default, mins2 = default, mins3 = default;
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ4K*)(weights + i * BlockBytes);
            byte* y0 = q8k + i * Q8_K.BlockBytes;
            sbyte* a0 = ((BlockQ8K*)y0)->Qs, a1 = ((BlockQ8K*)(y0 + aStride))->Qs;
            sbyte* a2 = ((BlockQ8K*)(y0 + 2 * aStride))->Qs, a3 = ((BlockQ8K*)(y0 + 3 * aStride))->Qs;
            Vector256<short> scalesAndMins = SimdHelpers.ScalesAndMinsK4(x->Scales);
            Vector128<short> mins = scalesAndMins.GetUpper();
            Vector128<short> sc128 = scalesAndMins.GetLower();
            Vector256<byte> scales = Vector256.Create(sc128, sc128).AsByte();

            Vector256<int> sumi0 = default, sumi1 = default, sumi2 = default, sumi3 = default;
            byte* q4 = x->Qs;
            for (int c = 0; c < 4; c++)
            {
                Vector256<byte> bits = Avx.LoadVector256(q4 + 32 * c);
                Vector256<byte> lo = Avx2.And(bits, m4);
                Vector256<byte> hi = Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4);
                Vector256<short> scLo = Avx2.Shuffle(scales, SimdHelpers.WordBroadcastMask(2 * c)).AsInt16();
                Vector256<short> scHi = Avx2.Shuffle(scales, SimdHelpers.WordBroadcastMask(2 * c + 1)).AsInt16();
                int o = 64 * c;
                sumi0 = Avx2.Add(sumi0, Chunk4(lo, hi, scLo, scHi, a0 + o));
                sumi1 = Avx2.Add(sumi1, Chunk4(lo, hi, scLo, scHi, a1 + o));
                sumi2 = Avx2.Add(sumi2, Chunk4(lo, hi, scLo, scHi, a2 + o));
                sumi3 = Avx2.Add(sumi3, Chunk4(lo, hi, scLo, scHi, a3 + o));
            }
            Accumulate(x, (BlockQ8K*)y0, mins, sumi0, ref acc0, ref mins0);
            Accumulate(x, (BlockQ8K*)(y0 + aStride), mins, sumi1, ref acc1, ref mins1);
            Accumulate(x, (BlockQ8K*)(y0 + 2 * aStride), mins, sumi2, ref acc2, ref mins2);
            Accumulate(x, (BlockQ8K*)(y0 + 3 * aStride), mins, sumi3, ref acc3, ref mins3);
        }
        result[0] = SimdHelpers.HorizontalSum(acc0) + SimdHelpers.HorizontalSum(mins0);
        result[yStride] = SimdHelpers.HorizontalSum(acc1) + SimdHelpers.HorizontalSum(mins1);
        result[2 * yStride] = SimdHelpers.HorizontalSum(acc2) + SimdHelpers.HorizontalSum(mins2);
        result[3 * yStride] = SimdHelpers.HorizontalSum(acc3) + SimdHelpers.HorizontalSum(mins3);

        // The same sub-block products as DotAvx2's Chunk, from nibbles already split.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<int> Chunk4(Vector256<byte> lo, Vector256<byte> hi, Vector256<short> scLo, Vector256<short> scHi, sbyte* q8)
        {
            Vector256<short> pLo = Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256(q8));
            Vector256<short> pHi = Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256(q8 + 32));
            return Avx2.Add(Avx2.MultiplyAddAdjacent(scLo, pLo), Avx2.MultiplyAddAdjacent(scHi, pHi));
        }
    }

    /// <summary>
    /// One weight row against 8 Q8_K activation rows: the block's 8 nibble groups and scale vectors decoded once
    /// into a stack buffer, 8 integer sums in registers (exact, so their order is free), then each row's float
    /// steps exactly as <see cref="DotAvx2"/> (accumulators on the stack); every result is bit-identical to DotAvx2.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot8Avx2(byte* weights, byte* q8k, nint aStride, int n, float* result, nint yStride)
    {
        int blocks = n / BlockSize;
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<float>* acc = stackalloc Vector256<float>[8];
        Vector128<float>* accMins = stackalloc Vector128<float>[8];
        for (int k = 0; k < 8; k++) { acc[k] = default; accMins[k] = default; }
        Vector256<byte>* qs = stackalloc Vector256<byte>[8];
        Vector256<short>* scs = stackalloc Vector256<short>[8];
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ4K*)(weights + i * BlockBytes);
            byte* y0 = q8k + i * Q8_K.BlockBytes;
            byte* y4 = y0 + 4 * aStride;
            Vector256<short> scalesAndMins = SimdHelpers.ScalesAndMinsK4(x->Scales);
            Vector128<short> mins = scalesAndMins.GetUpper();
            Vector128<short> sc128 = scalesAndMins.GetLower();
            Vector256<byte> scales = Vector256.Create(sc128, sc128).AsByte();
            Decode(x->Qs, 0, scales, qs, scs, m4);
            Decode(x->Qs, 1, scales, qs + 2, scs + 2, m4);
            Decode(x->Qs, 2, scales, qs + 4, scs + 4, m4);
            Decode(x->Qs, 3, scales, qs + 6, scs + 6, m4);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Vector256<int> s4 = default, s5 = default, s6 = default, s7 = default;
            for (int g = 0; g < 8; g++)
            {
                Vector256<byte> q = qs[g];
                Vector256<short> sc = scs[g];
                int o = 32 * g + 4; // 4: the activation block's f32 scale comes first
                s0 = Avx2.Add(s0, Avx2.MultiplyAddAdjacent(sc, Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y0 + o)))));
                s1 = Avx2.Add(s1, Avx2.MultiplyAddAdjacent(sc, Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y0 + aStride + o)))));
                s2 = Avx2.Add(s2, Avx2.MultiplyAddAdjacent(sc, Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y0 + 2 * aStride + o)))));
                s3 = Avx2.Add(s3, Avx2.MultiplyAddAdjacent(sc, Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y0 + 3 * aStride + o)))));
                s4 = Avx2.Add(s4, Avx2.MultiplyAddAdjacent(sc, Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y4 + o)))));
                s5 = Avx2.Add(s5, Avx2.MultiplyAddAdjacent(sc, Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y4 + aStride + o)))));
                s6 = Avx2.Add(s6, Avx2.MultiplyAddAdjacent(sc, Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y4 + 2 * aStride + o)))));
                s7 = Avx2.Add(s7, Avx2.MultiplyAddAdjacent(sc, Avx2.MultiplyAddAdjacent(q, Avx.LoadVector256((sbyte*)(y4 + 3 * aStride + o)))));
            }
            Accumulate(x, (BlockQ8K*)y0, mins, s0, ref acc[0], ref accMins[0]);
            Accumulate(x, (BlockQ8K*)(y0 + aStride), mins, s1, ref acc[1], ref accMins[1]);
            Accumulate(x, (BlockQ8K*)(y0 + 2 * aStride), mins, s2, ref acc[2], ref accMins[2]);
            Accumulate(x, (BlockQ8K*)(y0 + 3 * aStride), mins, s3, ref acc[3], ref accMins[3]);
            Accumulate(x, (BlockQ8K*)y4, mins, s4, ref acc[4], ref accMins[4]);
            Accumulate(x, (BlockQ8K*)(y4 + aStride), mins, s5, ref acc[5], ref accMins[5]);
            Accumulate(x, (BlockQ8K*)(y4 + 2 * aStride), mins, s6, ref acc[6], ref accMins[6]);
            Accumulate(x, (BlockQ8K*)(y4 + 3 * aStride), mins, s7, ref acc[7], ref accMins[7]);
        }
        for (int k = 0; k < 8; k++)
            result[k * yStride] = SimdHelpers.HorizontalSum(acc[k]) + SimdHelpers.HorizontalSum(accMins[k]);

        // Chunk c (values 64c .. 64c + 63): its low and high nibbles and their scale vectors, as DotAvx2's Chunk.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Decode(byte* q4, int c, Vector256<byte> scales, Vector256<byte>* q, Vector256<short>* sc, Vector256<byte> m4)
        {
            Vector256<byte> bits = Avx.LoadVector256(q4 + 32 * c);
            q[0] = Avx2.And(bits, m4);
            q[1] = Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4);
            sc[0] = Avx2.Shuffle(scales, SimdHelpers.WordBroadcastMask(2 * c)).AsInt16();
            sc[1] = Avx2.Shuffle(scales, SimdHelpers.WordBroadcastMask(2 * c + 1)).AsInt16();
        }
    }

    /// <summary>
    /// AVX-512BW: one 64-byte load covers two 64-value chunks; its low nibbles are values 0–31 and 64–95 (scales
    /// 0 and 2 of the pair), its high nibbles 32–63 and 96–127 (scales 1 and 3). Untested on this project's
    /// AVX2-only build machine; the SIMD-vs-scalar tests run it wherever the CPU has AVX-512BW.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAvx512(byte* weights, byte* q8k, int blocks)
    {
        if (!Avx512BW.IsSupported) return DotAvx2(weights, q8k, blocks);
        var m4 = Vector512.Create((byte)0x0F);
        var acc = Vector512<float>.Zero;
        var accMins = Vector128<float>.Zero;
        // vpermw indices: 16 copies of word a then 16 of word b.
        Vector512<short> lo0 = PairIndex(0, 2), hi0 = PairIndex(1, 3), lo1 = PairIndex(4, 6), hi1 = PairIndex(5, 7);
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ4K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            float d = y->D * KQuantMath.FromHalfBits(x->D);
            float dmin = -y->D * KQuantMath.FromHalfBits(x->DMin);
            Vector256<short> scalesAndMins = SimdHelpers.ScalesAndMinsK4(x->Scales);

            accMins = Fma.MultiplyAdd(Vector128.Create(dmin), SimdHelpers.MinSums(scalesAndMins.GetUpper(), y->BSums), accMins);

            Vector512<short> scales = Vector512.Create(scalesAndMins, scalesAndMins);
            Vector512<int> sumi = Pair(x->Qs, y->Qs, scales, lo0, hi0, m4);
            sumi = Avx512F.Add(sumi, Pair(x->Qs + 64, y->Qs + 128, scales, lo1, hi1, m4));
            acc = Avx512F.FusedMultiplyAdd(Vector512.Create(d), Avx512F.ConvertToVector512Single(sumi), acc);
        }
        return Vector512.Sum(acc) + SimdHelpers.HorizontalSum(accMins);

        static Vector512<short> PairIndex(int a, int b) => Vector512.Create(Vector256.Create((short)a), Vector256.Create((short)b));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector512<int> Pair(byte* q4, sbyte* q8, Vector512<short> scales, Vector512<short> loIndex,
            Vector512<short> hiIndex, Vector512<byte> m4)
        {
            Vector512<byte> bits = Avx512BW.LoadVector512(q4);
            Vector512<byte> lo = Avx512F.And(bits, m4);
            Vector512<byte> hi = Avx512F.And(Avx512BW.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4);
            Vector512<sbyte> q8Lo = Vector512.Create(Avx.LoadVector256(q8), Avx.LoadVector256(q8 + 64));
            Vector512<sbyte> q8Hi = Vector512.Create(Avx.LoadVector256(q8 + 32), Avx.LoadVector256(q8 + 96));
            Vector512<int> sLo = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(lo, q8Lo), Avx512BW.PermuteVar32x16(scales, loIndex));
            Vector512<int> sHi = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(hi, q8Hi), Avx512BW.PermuteVar32x16(scales, hiIndex));
            return Avx512F.Add(sLo, sHi);
        }
    }

    /// <summary>
    /// ARM64 AdvSimd: per 32-value sub-block an exact int32 dot (SDOT where the CPU has the dot-product
    /// extension), scaled in integers as the scalar reference does. Untested here (x86 build machine).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAdvSimd(byte* weights, byte* q8k, int blocks)
    {
        if (!AdvSimd.Arm64.IsSupported) return DotScalar(weights, q8k, blocks);
        var m4 = Vector128.Create((byte)0x0F);
        float sum = 0;
        uint* utmp = stackalloc uint[4];
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ4K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            KQuantMath.UnpackScaleMinK4(x->Scales, utmp);
            byte* sc = (byte*)utmp;
            byte* mn = sc + 8;
            int sumMins = KQuantMath.SumMinsK4(mn, y->BSums);
            int sumi = 0;
            for (int c = 0; c < 4; c++)
            {
                Vector128<byte> b0 = AdvSimd.LoadVector128(x->Qs + 32 * c);
                Vector128<byte> b1 = AdvSimd.LoadVector128(x->Qs + 32 * c + 16);
                sbyte* q8 = y->Qs + 64 * c;
                int lo = ArmDot.Dot32(AdvSimd.And(b0, m4).AsSByte(), AdvSimd.And(b1, m4).AsSByte(), q8);
                int hi = ArmDot.Dot32(AdvSimd.ShiftRightLogical(b0, 4).AsSByte(), AdvSimd.ShiftRightLogical(b1, 4).AsSByte(), q8 + 32);
                sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
            }
            sum += KQuantMath.ScaleMinTerm(y->D, x->D, x->DMin, sumi, sumMins);
        }
        return sum;
    }
}

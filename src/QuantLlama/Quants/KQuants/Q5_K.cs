using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.KQuants;

/// <summary>
/// ggml's block_q5_K: as Q4_K, plus a fifth bit per value in Qh (bit 2c of byte l for value 64c + l, bit 2c+1 for
/// value 64c + 32 + l).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ5K
{
    public ushort D;
    public ushort DMin;
    public fixed byte Scales[12];
    public fixed byte Qh[GgmlTypeInfo.QK_K / 8];
    public fixed byte Qs[GgmlTypeInfo.QK_K / 2];
}

/// <summary>Q5_K: 5.5 bits per weight.</summary>
public static unsafe class Q5_K
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 2 + 2 + 12 + BlockSize / 8 + BlockSize / 2;

    /// <summary>Q5_K as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q5_K, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    /// <summary>The quantizer without an importance matrix.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>quantize_row_q5_K_ref, bit for bit.</summary>
    /// <param name="importance">Empty, or the row's column importance [src.Length] from an importance matrix
    /// (ggml's quantize_q5_K with quant_weights).</param>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        int blocks = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        Blocks.CheckImportance(importance.Length, src.Length);
        fixed (byte* p = dst)
        {
            for (int i = 0; i < blocks; i++)
                QuantizeBlock(src.Slice(i * BlockSize, BlockSize), (BlockQ5K*)(p + i * BlockBytes),
                    importance.IsEmpty ? default : importance.Slice(i * BlockSize, BlockSize));
        }
    }

    private static void QuantizeBlock(ReadOnlySpan<float> x, BlockQ5K* y, ReadOnlySpan<float> importance)
    {
        Span<byte> levels = stackalloc byte[BlockSize];
        KQuantMath.QuantizeScaleMinSuperBlock(x, 31, -0.5f, 15, (byte*)y, levels, importance);

        new Span<byte>(y->Qh, 32).Clear();
        byte m1 = 1, m2 = 2;
        for (int c = 0; c < 4; c++)
        {
            for (int l = 0; l < 32; l++)
            {
                int l1 = levels[64 * c + l];
                if (l1 > 15) { l1 -= 16; y->Qh[l] |= m1; }
                int l2 = levels[64 * c + l + 32];
                if (l2 > 15) { l2 -= 16; y->Qh[l] |= m2; }
                y->Qs[32 * c + l] = (byte)(l1 | (l2 << 4));
            }
            m1 <<= 2;
            m2 <<= 2;
        }
    }

    /// <summary>dequantize_row_q5_K, bit for bit.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* p = src)
        fixed (float* yp = dst)
        {
            float* y = yp;
            for (int i = 0; i < blocks; i++)
            {
                var x = (BlockQ5K*)(p + i * BlockBytes);
                var table = new ReadOnlySpan<byte>(x->Scales, 12);
                float d = KQuantMath.FromHalfBits(x->D), min = KQuantMath.FromHalfBits(x->DMin);
                byte* ql = x->Qs;
                byte* qh = x->Qh;
                int u1 = 1, u2 = 2;
                for (int j = 0; j < 8; j += 2)
                {
                    KQuantMath.GetScaleMinK4(j, table, out byte sc, out byte m);
                    float d1 = d * sc, m1 = min * m;
                    KQuantMath.GetScaleMinK4(j + 1, table, out sc, out m);
                    float d2 = d * sc, m2 = min * m;
                    for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
                    for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
                    ql += 32;
                    u1 <<= 2;
                    u2 <<= 2;
                }
            }
        }
    }

    /// <summary>Dot product of a Q5_K row with a Q8_K-quantized activation row of as many blocks.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8k)
        => Blocks.Dot(weights, q8k, BlockSize, BlockBytes, Q8_K.BlockBytes, &Dot);

    /// <summary>The dot of <paramref name="n"/> values on the kernel path in use (<see cref="Kernels.Path"/>).</summary>
    internal static float Dot(byte* weights, byte* q8k, int n)
        => Kernels.UseAvx2 ? DotAvx2(weights, q8k, n)
            : Kernels.UseAdvSimd ? DotAdvSimd(weights, q8k, n)
            : DotScalar(weights, q8k, n);

    internal static float DotScalar(byte* weights, byte* q8k, int n)
    {
        int blocks = n / BlockSize;
        float sum = 0;
        uint* utmp = stackalloc uint[4];
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ5K*)(weights + i * BlockBytes);
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
                    int q = x->Qs[32 * c + l], h = x->Qh[l];
                    lo += ((q & 0xF) | (((h >> (2 * c)) & 1) << 4)) * y->Qs[64 * c + l];
                    hi += ((q >> 4) | (((h >> (2 * c + 1)) & 1) << 4)) * y->Qs[64 * c + 32 + l];
                }
                sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
            }
            sum += KQuantMath.ScaleMinTerm(y->D, x->D, x->DMin, sumi, sumMins);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* weights, byte* q8k, int n)
    {
        int blocks = n / BlockSize;
        var m4 = Vector256.Create((byte)0x0F);
        var sixteen = Vector256.Create((byte)0x10);
        var acc = Vector256<float>.Zero;
        var accMins = Vector128<float>.Zero;
        byte* broadcasts = (byte*)X86Simd.ScaleBroadcasts;
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ5K*)(weights + i * BlockBytes);
            X86Simd.PrefetchWeights((byte*)x, BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            float d = y->D * KQuantMath.FromHalfBits(x->D);
            float dmin = -y->D * KQuantMath.FromHalfBits(x->DMin);
            // 8 scale bytes then 8 min bytes.
            Vector128<byte> packed = X86Simd.PackedScalesAndMinsK4(x->Scales);
            accMins = Fma.MultiplyAdd(Vector128.Create(dmin), X86Simd.MinSums(Sse2.UnpackHigh(packed, Vector128<byte>.Zero).AsInt16(), y->BSums), accMins);
            ulong scales = X86Simd.ScaleKeys(packed);
            Vector256<ushort> hbits = Avx.LoadVector256(x->Qh).AsUInt16();
            // The fifth bit of value 64c + l (+32) is bit 2c (2c+1) of Qh byte l, walked to bit 4 (value 16) one
            // step per half-chunk. 16-bit shifts: bits 0–3 start from hbits << 4 and bits 4–7 from hbits itself,
            // so no bit of the upper byte is shifted out before its turn.
            Vector256<byte> h16 = Avx2.ShiftLeftLogical(hbits, 4).AsByte();
            Vector256<int> sumi = Chunk(x->Qs, y->Qs, broadcasts, scales, ref h16, 0, m4, sixteen);
            sumi = Avx2.Add(sumi, Chunk(x->Qs + 32, y->Qs + 64, broadcasts, scales, ref h16, 1, m4, sixteen));
            h16 = hbits.AsByte();
            sumi = Avx2.Add(sumi, Chunk(x->Qs + 64, y->Qs + 128, broadcasts, scales, ref h16, 2, m4, sixteen));
            sumi = Avx2.Add(sumi, Chunk(x->Qs + 96, y->Qs + 192, broadcasts, scales, ref h16, 3, m4, sixteen));
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
        }
        return X86Simd.HSum(acc) + X86Simd.HSum(accMins);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<int> Chunk(byte* q5, sbyte* q8, byte* broadcasts, ulong scales, ref Vector256<byte> h16, int c,
            Vector256<byte> m4, Vector256<byte> sixteen)
        {
            Vector256<byte> bits = Avx.LoadVector256(q5);
            Vector256<byte> lo = Avx2.Or(Avx2.And(bits, m4), Avx2.And(h16, sixteen));
            h16 = Avx2.ShiftRightLogical(h16.AsUInt16(), 1).AsByte();
            Vector256<byte> hi = Avx2.Or(Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4), Avx2.And(h16, sixteen));
            h16 = Avx2.ShiftRightLogical(h16.AsUInt16(), 1).AsByte();
            Vector256<short> pLo = Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256(q8));
            Vector256<short> pHi = Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256(q8 + 32));
            Vector256<int> sLo = Avx2.MultiplyAddAdjacent(pLo, X86Simd.ScaleBroadcast(broadcasts, scales, 2 * c));
            Vector256<int> sHi = Avx2.MultiplyAddAdjacent(pHi, X86Simd.ScaleBroadcast(broadcasts, scales, 2 * c + 1));
            return Avx2.Add(sLo, sHi);
        }
    }

    /// <summary>ARM64 AdvSimd: <see cref="ArmSimd.DotScaleMinK4"/> with the fifth bits (the reference's result to the bit).</summary>
    internal static float DotAdvSimd(byte* weights, byte* q8k, int n)
        => AdvSimd.Arm64.IsSupported ? ArmSimd.DotScaleMinK4(weights, q8k, n, BlockBytes, fifthBits: true) : DotScalar(weights, q8k, n);
}

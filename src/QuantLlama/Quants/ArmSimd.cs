using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// Building blocks shared by the ARM64 AdvSimd kernels: exact signed byte dot products (SDOT where the CPU has the
/// dot-product extension, widening multiplies where not) and sums across lanes.
/// </summary>
internal static unsafe class ArmSimd
{
    /// <summary>4 int32 lanes whose total is dot(x0, y0) + dot(x1, y1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> DotI8(Vector128<sbyte> x0, Vector128<sbyte> y0, Vector128<sbyte> x1, Vector128<sbyte> y1)
    {
        if (Dp.IsSupported)
            return Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, x0, y0), x1, y1);
        var p0 = AdvSimd.MultiplyWideningLower(x0.GetLower(), y0.GetLower());
        p0 = AdvSimd.MultiplyWideningUpperAndAdd(p0, x0, y0);
        var p1 = AdvSimd.MultiplyWideningLower(x1.GetLower(), y1.GetLower());
        p1 = AdvSimd.MultiplyWideningUpperAndAdd(p1, x1, y1);
        return AdvSimd.AddPairwiseWideningAndAdd(AdvSimd.AddPairwiseWidening(p0), p1);
    }

    /// <summary>4 int32 lanes whose total is dot(x, y) over 16 signed bytes (no two products of -128 · -128 in a lane pair).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> DotI8(Vector128<sbyte> x, Vector128<sbyte> y)
    {
        if (Dp.IsSupported)
            return Dp.DotProduct(Vector128<int>.Zero, x, y);
        var p = AdvSimd.MultiplyWideningLower(x.GetLower(), y.GetLower());
        return AdvSimd.AddPairwiseWidening(AdvSimd.MultiplyWideningUpperAndAdd(p, x, y));
    }

    /// <summary>Σ a[i]·q8[i] over 16 values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dot16(Vector128<sbyte> a, sbyte* q8)
    {
        Vector128<sbyte> b = AdvSimd.LoadVector128(q8);
        if (Dp.IsSupported)
            return AdvSimd.Arm64.AddAcross(Dp.DotProduct(Vector128<int>.Zero, a, b)).ToScalar();
        Vector128<short> p0 = AdvSimd.MultiplyWideningLower(a.GetLower(), b.GetLower());
        Vector128<short> p1 = AdvSimd.MultiplyWideningUpper(a, b);
        return AdvSimd.Arm64.AddAcross(AdvSimd.AddPairwiseWideningAndAdd(AdvSimd.AddPairwiseWidening(p0), p1)).ToScalar();
    }

    /// <summary>Σ over 32 values given as two 16-value halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dot32(Vector128<sbyte> a0, Vector128<sbyte> a1, sbyte* q8) => Dot16(a0, q8) + Dot16(a1, q8 + 16);

    /// <summary>The low 16 bits of <paramref name="bits"/> as 16 bytes, bit j giving 0x10 in byte j (else 0): Q5's fifth bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> BitsAsSixteens(uint bits)
    {
        var spread = Vector128.Create((bits & 0xFF) * 0x0101010101010101UL, ((bits >> 8) & 0xFF) * 0x0101010101010101UL).AsByte();
        var eachBit = Vector128.Create(0x8040201008040201UL).AsByte();
        return AdvSimd.And(AdvSimd.CompareTest(spread, eachBit), Vector128.Create((byte)0x10));
    }

    /// <summary>
    /// Σ over a 32-value block of 16 nibble-pair bytes: low nibbles (with <paramref name="lowFifth"/> or-ed in)
    /// against q8[0..16), high nibbles (with <paramref name="highFifth"/>) against q8[16..32), each less
    /// <paramref name="offset"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NibbleBlockDot(byte* nibbles, sbyte* q8, Vector128<byte> lowFifth, Vector128<byte> highFifth, byte offset)
    {
        var v = AdvSimd.LoadVector128(nibbles);
        var off = Vector128.Create(offset);
        var lo = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.And(v, Vector128.Create((byte)0x0F)), lowFifth), off).AsSByte();
        var hi = AdvSimd.Subtract(AdvSimd.Or(AdvSimd.ShiftRightLogical(v, 4), highFifth), off).AsSByte();
        return AdvSimd.Arm64.AddAcross(DotI8(lo, AdvSimd.LoadVector128(q8), hi, AdvSimd.LoadVector128(q8 + 16))).ToScalar();
    }

    /// <summary>Horizontal sum of 4 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HSum(Vector128<float> x) => Vector128.Sum(x);

    // Row dots that two formats share.

    /// <summary>
    /// The AdvSimd dot of Q4_1 and of Q5_1 against Q8_1: both blocks start with d and m and end with the 16 nibble
    /// bytes; Q5_1's 4 fifth-bit bytes sit between (<paramref name="fifthBits"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotWithMin(byte* w, byte* a, int n, int blockBytes, bool fifthBits)
    {
        int nb = n / Q4_1.BlockSize;
        float sum = 0, summs = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (Q4_1.Block*)(w + i * blockBytes); // d and m: the shared start of either block
            var y = (Q8_1.Block*)(a + i * Q8_1.BlockBytes);
            byte* qs = (byte*)x + blockBytes - Q4_1.BlockSize / 2;
            uint qh = fifthBits ? Unsafe.ReadUnaligned<uint>((byte*)x + 4) : 0;
            int sumi = NibbleBlockDot(qs, y->Qs, BitsAsSixteens(qh), BitsAsSixteens(qh >> 16), 0);
            sum += Fp16.ToFloat(x->D) * Fp16.ToFloat(y->D) * sumi;
            summs += Fp16.ToFloat(x->M) * Fp16.ToFloat(y->S);
        }
        return sum + summs;
    }

    /// <summary>
    /// The AdvSimd dot of Q4_K and of Q5_K, whose blocks start alike (d, dmin, the 12 scale bytes) and end with the
    /// 128 nibble bytes; Q5_K's 32 fifth-bit bytes sit between (<paramref name="fifthBits"/>): bit 2c (2c+1) of byte
    /// l adds 16 to value 64c + l (64c + 32 + l). The reference's integer scaling and float step per block, so its
    /// result to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotScaleMinK4(byte* weights, byte* q8k, int n, int blockBytes, bool fifthBits)
    {
        int blocks = n / GgmlTypeInfo.QK_K;
        var m4 = Vector128.Create((byte)0x0F);
        float sum = 0;
        uint* utmp = stackalloc uint[4];
        for (int i = 0; i < blocks; i++)
        {
            var x = (KQuants.BlockQ4K*)(weights + i * blockBytes); // the shared start of either block
            var y = (KQuants.BlockQ8K*)(q8k + i * KQuants.Q8_K.BlockBytes);
            byte* qs = (byte*)x + blockBytes - GgmlTypeInfo.QK_K / 2;
            Vector128<byte> h0 = default, h1 = default;
            if (fifthBits)
            {
                byte* qh = x->Scales + 12;
                h0 = AdvSimd.LoadVector128(qh);
                h1 = AdvSimd.LoadVector128(qh + 16);
            }
            KQuants.KQuantMath.UnpackScaleMinK4(x->Scales, utmp);
            byte* sc = (byte*)utmp;
            int sumMins = KQuants.KQuantMath.SumMinsK4(sc + 8, y->BSums);
            int sumi = 0;
            for (int c = 0; c < 4; c++)
            {
                Vector128<byte> b0 = AdvSimd.LoadVector128(qs + 32 * c), b1 = AdvSimd.LoadVector128(qs + 32 * c + 16);
                var loBit = Vector128.Create((byte)(1 << (2 * c)));
                var hiBit = Vector128.Create((byte)(2 << (2 * c)));
                sbyte* q8 = y->Qs + 64 * c;
                int lo = Dot32(WithFifthBit(AdvSimd.And(b0, m4), h0, loBit), WithFifthBit(AdvSimd.And(b1, m4), h1, loBit), q8);
                int hi = Dot32(WithFifthBit(AdvSimd.ShiftRightLogical(b0, 4), h0, hiBit),
                    WithFifthBit(AdvSimd.ShiftRightLogical(b1, 4), h1, hiBit), q8 + 32);
                sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
            }
            sum += KQuants.KQuantMath.ScaleMinTerm(y->D, x->D, x->DMin, sumi, sumMins);
        }
        return sum;

        // 16 where the bit is set in qh (never, for Q4_K's zero qh).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector128<sbyte> WithFifthBit(Vector128<byte> nibbles, Vector128<byte> qh, Vector128<byte> bit)
            => AdvSimd.Or(nibbles, AdvSimd.And(AdvSimd.CompareTest(qh, bit), Vector128.Create((byte)0x10))).AsSByte();
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace QuantLlama.Quants;

/// <summary>Exact signed byte dot products on ARM64: SDOT where the CPU has the dot-product extension, widening multiplies where not.</summary>
internal static unsafe class ArmDot
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
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants.IQuants;

/// <summary>A grid i-quant's block values as the ARM64 AdvSimd row dot takes them.</summary>
internal unsafe interface IGridFormatAdvSimd : IGridFormat
{
    /// <summary>Block ib's 32 signed magnitudes: values 0-15 in <paramref name="low"/>, 16-31 in <paramref name="high"/>.</summary>
    static abstract void ValuesAdvSimd(byte* x, int ib, out Vector128<sbyte> low, out Vector128<sbyte> high);
}

internal static unsafe partial class GridQuants
{
    /// <summary>
    /// The ARM64 row dot: ggml's NEON scheme (codebook entries loaded as vectors, signs applied by multiplying with
    /// ±1 bytes, SDOT or widening multiplies) over the scalar reference's float steps. The integer sum per
    /// super-block is exact in any order, so the result is the reference's to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    public static float DotAdvSimd<T>(byte* w, byte* a, int n) where T : IGridFormatAdvSimd
    {
        if (!AdvSimd.Arm64.IsSupported) return DotScalar<T>(w, a, n);
        float sum = 0;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * T.BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            float d = Fp16.ToFloat(*(ushort*)x) * y->D;
            // Four int32 lanes of scale · products; at most 256 · 62 · 127 · 31 in all, so no overflow.
            var sums = Vector128<int>.Zero;
            for (int ib = 0; ib < SubBlocks; ib++)
            {
                T.ValuesAdvSimd(x, ib, out var low, out var high);
                sbyte* q8 = y->Qs + ib * 32;
                sums = AdvSimd.MultiplyAdd(sums, ArmSimd.DotI8(low, AdvSimd.LoadVector128(q8)), Vector128.Create(T.Scale(x, ib, 0)));
                sums = AdvSimd.MultiplyAdd(sums, ArmSimd.DotI8(high, AdvSimd.LoadVector128(q8 + 16)), Vector128.Create(T.Scale(x, ib, 1)));
            }
            sum += d * AdvSimd.Arm64.AddAcross(sums).ToScalar();
        }
        return T.DotFactor * sum;
    }

    /// <summary>16 magnitudes (8 in each ulong) times 16 signs (±1 bytes, e.g. <see cref="EvenSignBytes"/>), for the AdvSimd path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<sbyte> SignedAdvSimd(ulong magnitudes0, ulong magnitudes1, ulong signs0, ulong signs1)
        => AdvSimd.Multiply(Vector128.Create(magnitudes0, magnitudes1).AsSByte(), Vector128.Create(signs0, signs1).AsSByte());

    /// <summary>32 magnitudes (8 in each ulong) with four 7-bit sign groups (bits 0-27 of <paramref name="packed"/>) applied.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void EvenSignedAdvSimd(ulong m0, ulong m1, ulong m2, ulong m3, uint packed, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        var table = EvenSignBytes;
        low = SignedAdvSimd(m0, m1, table[packed & 127], table[packed >> 7 & 127]);
        high = SignedAdvSimd(m2, m3, table[packed >> 14 & 127], table[packed >> 21 & 127]);
    }

    /// <summary>16 magnitudes negated where their bit of <paramref name="signBits"/> (two bytes, value j's in bit j % 8 of byte j / 8) is set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<sbyte> SignBitsAdvSimd(Vector128<byte> magnitudes, byte* signBits)
    {
        var spread = Vector128.Create(signBits[0] * 0x0101010101010101UL, signBits[1] * 0x0101010101010101UL).AsByte();
        // 0xFF (-1) where the bit is set, or 1 into ±1.
        var signs = AdvSimd.Or(AdvSimd.CompareTest(spread, Vector128.Create(0x8040201008040201UL).AsByte()), Vector128.Create((byte)1));
        return AdvSimd.Multiply(magnitudes.AsSByte(), signs.AsSByte());
    }
}

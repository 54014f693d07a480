using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants;

public static unsafe partial class TQ1_0
{
    /// <summary>
    /// The ARM64 row dot: ggml's NEON scheme (bytes times 3ⁿ mod 256, each top digit as a halving add of q and
    /// q/2, SDOT or widening multiplies) with the −1 taken off each digit, over the scalar reference's exact integer
    /// sum and float step per super-block, so its result to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAdvSimd(byte* w, byte* a, int n)
    {
        if (!AdvSimd.Arm64.IsSupported) return DotScalar(w, a, n);
        // Byte k of the last 4 bytes' multipliers: byte k % 4 times 3^(k / 4), so digit k / 4 of byte k % 4 lands in value 240 + k.
        var tailPowers = Vector128.Create((byte)1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
        var three = Vector128.Create((byte)3);
        float sum = 0;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            var sums = Vector128<int>.Zero;
            // Bytes 0-31: digit k of byte m is value 32k + m.
            for (int h = 0; h < 32; h += 16)
            {
                var q = AdvSimd.LoadVector128(x + h);
                for (int k = 0; k < 5; k++, q = AdvSimd.Multiply(q, three))
                    sums = AddTopDigits(sums, q, y->Qs + 32 * k + h);
            }
            // Bytes 32-47: digit k of byte m is value 160 + 16k + m.
            var r = AdvSimd.LoadVector128(x + 32);
            for (int k = 0; k < 5; k++, r = AdvSimd.Multiply(r, three))
                sums = AddTopDigits(sums, r, y->Qs + 160 + 16 * k);
            var tail = AdvSimd.Multiply(Vector128.Create(Unsafe.ReadUnaligned<uint>(x + 48)).AsByte(), tailPowers);
            sums = AddTopDigits(sums, tail, y->Qs + 240);
            int sumi = AdvSimd.Arm64.AddAcross(sums).ToScalar();
            sum += (float)sumi * (Fp16.ToFloat(*(ushort*)(x + Scale)) * y->D);
        }
        return sum;
    }

    /// <summary>
    /// sums plus (each byte's top base-3 digit − 1) times 16 activation quants. The digit, (3q) >> 8, as ggml's NEON
    /// kernel takes it: the halving add of q and q/2, bits 6-7 (the same for every byte).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> AddTopDigits(Vector128<int> sums, Vector128<byte> q, sbyte* q8)
    {
        var digits = AdvSimd.ShiftRightLogical(AdvSimd.FusedAddHalving(q, AdvSimd.ShiftRightLogical(q, 1)), 6);
        var values = AdvSimd.Subtract(digits, Vector128.Create((byte)1)).AsSByte();
        return AdvSimd.Add(sums, ArmSimd.DotI8(values, AdvSimd.LoadVector128(q8)));
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants;

public static unsafe partial class TQ2_0
{
    /// <summary>
    /// The ARM64 row dot: ggml's NEON scheme (each 2-bit digit plane shifted and masked out of 16 bytes, SDOT or
    /// widening multiplies) with the −1 taken off each digit, over the scalar reference's exact integer sum and
    /// float step per super-block, so its result to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAdvSimd(byte* w, byte* a, int n)
    {
        if (!AdvSimd.Arm64.IsSupported) return DotScalar(w, a, n);
        float sum = 0;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            var sums = Vector128<int>.Zero;
            // 16 bytes at a time: byte 32J + m holds values 128J + 32l + m in bits 2l, 2l + 1.
            for (int j = 0; j < 64; j += 16)
            {
                var q = AdvSimd.LoadVector128(x + j);
                sbyte* q8 = y->Qs + 128 * (j / 32) + j % 32;
                sums = AddDigits(sums, q, q8);
                sums = AddDigits(sums, AdvSimd.ShiftRightLogical(q, 2), q8 + 32);
                sums = AddDigits(sums, AdvSimd.ShiftRightLogical(q, 4), q8 + 64);
                sums = AddDigits(sums, AdvSimd.ShiftRightLogical(q, 6), q8 + 96);
            }
            int sumi = AdvSimd.Arm64.AddAcross(sums).ToScalar();
            sum += (float)sumi * (y->D * Fp16.ToFloat(*(ushort*)(x + Scale)));
        }
        return sum;
    }

    /// <summary>sums plus (q &amp; 3) − 1 times 16 activation quants.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> AddDigits(Vector128<int> sums, Vector128<byte> q, sbyte* q8)
    {
        var values = AdvSimd.Subtract(AdvSimd.And(q, Vector128.Create((byte)3)), Vector128.Create((byte)1)).AsSByte();
        return AdvSimd.Add(sums, ArmSimd.DotI8(values, AdvSimd.LoadVector128(q8)));
    }
}

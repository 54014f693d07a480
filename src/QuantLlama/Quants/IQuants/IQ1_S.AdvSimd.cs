using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants.IQuants;

public static unsafe partial class IQ1_S
{
    /// <summary>
    /// The ARM64 row dot: ggml's NEON scheme (a block's four codebook entries as two vectors, SDOT or widening
    /// multiplies) over the scalar reference's exact integer sums and float steps, so its result to the bit.
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
            var sums = Vector128<int>.Zero; // 4 lanes of scale · grid products
            int sumDelta = 0;
            for (int ib = 0; ib < 8; ib++)
            {
                int high = HighWord(x, ib), ls = Scale(high);
                sbyte* q8 = y->Qs + 32 * ib;
                var low = Vector128.Create(IQGrids.IQ1SAt(Index(x, ib, 0)), IQGrids.IQ1SAt(Index(x, ib, 1))).AsSByte();
                var upper = Vector128.Create(IQGrids.IQ1SAt(Index(x, ib, 2)), IQGrids.IQ1SAt(Index(x, ib, 3))).AsSByte();
                var products = ArmSimd.DotI8(low, AdvSimd.LoadVector128(q8), upper, AdvSimd.LoadVector128(q8 + 16));
                sums = AdvSimd.MultiplyAdd(sums, products, Vector128.Create(ls));
                sumDelta += ls * DeltaSign(high) * (y->BSums[2 * ib] + y->BSums[2 * ib + 1]);
            }
            int sumi = AdvSimd.Arm64.AddAcross(sums).ToScalar();
            sum += Fp16.ToFloat(*(ushort*)x) * y->D * (sumi + OneBitQuants.Delta * sumDelta);
        }
        return sum;
    }
}

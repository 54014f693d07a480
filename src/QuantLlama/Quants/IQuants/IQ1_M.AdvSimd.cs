using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using QuantLlama.Quants.KQuants;

namespace QuantLlama.Quants.IQuants;

public static unsafe partial class IQ1_M
{
    /// <summary>
    /// The ARM64 row dot: ggml's NEON scheme (each half-block's two codebook entries as one vector, the shift's
    /// signs as ±1 bytes against the same activation quants, SDOT or widening multiplies) over the scalar
    /// reference's exact integer sums and float steps, so its result to the bit.
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
            // 4 lanes each of scale · grid products and of scale · delta-signed activation quants.
            var sumGrid = Vector128<int>.Zero;
            var sumDelta = Vector128<int>.Zero;
            for (int ib = 0; ib < 8; ib++)
            {
                sbyte* q8 = y->Qs + 32 * ib;
                for (int half = 0; half < 2; half++)
                {
                    int l = 2 * half;
                    var q = AdvSimd.LoadVector128(q8 + 16 * half);
                    var scale = Vector128.Create(Scale(x, ib, half));
                    var grid = Vector128.Create(IQGrids.IQ1SAt(Index(x, ib, l)), IQGrids.IQ1SAt(Index(x, ib, l + 1))).AsSByte();
                    var deltaSigns = Vector128.Create(DeltaSignBytes(x, ib, l), DeltaSignBytes(x, ib, l + 1)).AsSByte();
                    sumGrid = AdvSimd.MultiplyAdd(sumGrid, ArmSimd.DotI8(grid, q), scale);
                    sumDelta = AdvSimd.MultiplyAdd(sumDelta, ArmSimd.DotI8(deltaSigns, q), scale);
                }
            }
            int gridSum = AdvSimd.Arm64.AddAcross(sumGrid).ToScalar(), deltaSum = AdvSimd.Arm64.AddAcross(sumDelta).ToScalar();
            sum += SuperScale(x) * y->D * (gridSum + OneBitQuants.Delta * deltaSum);
        }
        return sum;
    }

    /// <summary>Group l's delta sign as 8 bytes of -1 or +1, without a branch (random signs would defeat the predictor).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong DeltaSignBytes(byte* x, int ib, int l) => 0x0101010101010101 | (ulong)-(long)(Nibble(x, ib, l) >> 3);
}

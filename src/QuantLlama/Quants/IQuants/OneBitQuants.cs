using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// What IQ1_S and IQ1_M share: 11-bit indices into the codebook <see cref="IQGrids.IQ1S"/> of 8 values from
/// {-1, 0, 1}, each group of 8 shifted by ±<see cref="Delta"/>; value = block scale · (grid value ± delta).
/// The row dots keep the delta's part apart (an integer sum of the activation quants) as ggml does.
/// </summary>
internal static unsafe class OneBitQuants
{
    /// <summary>ggml's IQ1S_DELTA and IQ1M_DELTA.</summary>
    public const float Delta = 0.125f;

    /// <summary>8 values of one codebook entry, each shifted by delta, times dl: ggml's dequantizer's float steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void DequantizeEight(int index, float dl, float delta, float* y)
    {
        ulong grid = IQGrids.IQ1SAt(index);
        for (int j = 0; j < 8; j++) y[j] = dl * ((sbyte)(grid >> (8 * j)) + delta);
    }

    /// <summary>Sum of one entry's 8 values times 8 activation quants.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int DotEight(int index, sbyte* q8)
    {
        ulong grid = IQGrids.IQ1SAt(index);
        int sum = 0;
        for (int j = 0; j < 8; j++) sum += (sbyte)(grid >> (8 * j)) * q8[j];
        return sum;
    }

    /// <summary>Four entries as 32 signed bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> GridAvx2(int i0, int i1, int i2, int i3)
        => Vector256.Create(IQGrids.IQ1SAt(i0), IQGrids.IQ1SAt(i1), IQGrids.IQ1SAt(i2), IQGrids.IQ1SAt(i3)).AsSByte();

    /// <summary>
    /// 32 signed values times 32 activation quants as ggml's mul_add_epi8 and madd: eight int32 lanes, each 4
    /// adjacent products times the lane's scale (16 shorts, 8 per half).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> ProductsAvx2(Vector256<sbyte> values, Vector256<sbyte> q8, Vector256<short> scales)
        => Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(values), Avx2.Sign(q8, values)), scales);
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// One 1-bit i-quant's super-block layout (IQ1_S, IQ1_M), as <see cref="OneBitQuants"/>' reference dequantizer and
/// row dot read it: per block ib of 32 values, four groups l of 8, each with a codebook index, an odd integer scale
/// and a delta sign.
/// </summary>
internal unsafe interface IOneBitFormat
{
    static abstract int BlockBytes { get; }

    /// <summary>The super-block scale d.</summary>
    static abstract float SuperScale(byte* x);

    /// <summary>Group l (values 32·ib + 8·l …) of block ib: its 11-bit index into <see cref="IQGrids.IQ1S"/>.</summary>
    static abstract int Index(byte* x, int ib, int l);

    /// <summary>Group l's scale 2s + 1.</summary>
    static abstract int Scale(byte* x, int ib, int l);

    /// <summary>Group l's delta sign, -1 or 1.</summary>
    static abstract int DeltaSign(byte* x, int ib, int l);
}

/// <summary>
/// What IQ1_S and IQ1_M share: 11-bit indices into the codebook <see cref="IQGrids.IQ1S"/> of 8 values from
/// {-1, 0, 1}, each group of 8 shifted by ±<see cref="Delta"/>; value = block scale · (grid value ± delta).
/// The row dots keep the delta's part apart (an integer sum of the activation quants) as ggml does.
/// </summary>
internal static unsafe class OneBitQuants
{
    /// <summary>ggml's IQ1S_DELTA and IQ1M_DELTA.</summary>
    public const float Delta = 0.125f;

    private const int BlockSize = GgmlTypeInfo.QK_K;

    /// <summary>ggml's dequantizer, its float steps to the bit: d · scale, times (grid value ± delta).</summary>
    public static void Dequantize<T>(ReadOnlySpan<byte> src, Span<float> dst) where T : IOneBitFormat
    {
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, T.BlockBytes);
        fixed (byte* x0 = src)
        fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* x = x0 + i * T.BlockBytes;
                float d = T.SuperScale(x);
                for (int ib = 0; ib < 8; ib++)
                {
                    for (int l = 0; l < 4; l++)
                        DequantizeEight(T.Index(x, ib, l), d * T.Scale(x, ib, l), T.DeltaSign(x, ib, l) * Delta, y0 + i * BlockSize + 32 * ib + 8 * l);
                }
            }
        }
    }

    /// <summary>
    /// The reference: ggml's generic row dot (grid and delta sums per super-block, one float term each). The delta's
    /// sum takes each group's 8 activation quants (IQ1_S's in ggml takes Q8_K's block sums: the same integers).
    /// </summary>
    public static float DotScalar<T>(byte* w, byte* a, int n) where T : IOneBitFormat
    {
        float sum = 0;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * T.BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            int sumGrid = 0, sumDelta = 0;
            for (int ib = 0; ib < 8; ib++)
            {
                for (int l = 0; l < 4; l++)
                {
                    sbyte* q8 = y->Qs + 32 * ib + 8 * l;
                    int q8Sum = 0;
                    for (int j = 0; j < 8; j++) q8Sum += q8[j];
                    int ls = T.Scale(x, ib, l);
                    sumGrid += ls * DotEight(T.Index(x, ib, l), q8);
                    sumDelta += ls * T.DeltaSign(x, ib, l) * q8Sum;
                }
            }
            sum += T.SuperScale(x) * y->D * (sumGrid + Delta * sumDelta);
        }
        return sum;
    }

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

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ1_M: super-blocks of 256 values as 32 low bytes of 11-bit indices into the codebook <see cref="IQGrids.IQ1S"/>
/// (four per block of 32), 16 bytes of one nibble per index (3 high index bits and the delta's sign), and 8 bytes of
/// 3-bit scales s, one per half-block of 16, whose four spare top nibbles hold the fp16 super-block scale d;
/// value = d · (2s + 1) · (grid value ± 1/8). 1.75 bits per weight. Activation partner: Q8_K. No quantizer.
/// </summary>
public static unsafe partial class IQ1_M
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 56;

    /// <summary>IQ1_M as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ1_M, BlockSize, BlockBytes, null, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot });

    private const int High = 32, Scales = High + 16;

    /// <summary>The fp16 scale, gathered from the top nibbles of the four 16-bit scale words.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float SuperScale(byte* x)
    {
        var sc = (ushort*)(x + Scales);
        return Fp16.ToFloat((ushort)(sc[0] >> 12 | (sc[1] >> 8 & 0x00F0) | (sc[2] >> 4 & 0x0F00) | (sc[3] & 0xF000)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Scale(byte* x, int ib, int half) => 2 * (Unsafe.ReadUnaligned<ushort>(x + Scales + 2 * (ib / 2)) >> (6 * (ib % 2) + 3 * half) & 7) + 1;

    /// <summary>Nibble l of block ib: bits 0-2 are index l's high bits, bit 3 the sign of its delta.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Nibble(byte* x, int ib, int l) => x[High + 2 * ib + l / 2] >> (4 * (l % 2)) & 0x0F;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Index(byte* x, int ib, int l) => x[4 * ib + l] | (Nibble(x, ib, l) & 7) << 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool NegativeDelta(byte* x, int ib, int l) => (Nibble(x, ib, l) & 8) != 0;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* x0 = src)
        fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* x = x0 + i * BlockBytes;
                float d = SuperScale(x);
                for (int ib = 0; ib < 8; ib++)
                {
                    for (int l = 0; l < 4; l++)
                    {
                        float dl = d * Scale(x, ib, l / 2);
                        float delta = NegativeDelta(x, ib, l) ? -OneBitQuants.Delta : OneBitQuants.Delta;
                        OneBitQuants.DequantizeEight(Index(x, ib, l), dl, delta, y0 + i * BlockSize + 32 * ib + 8 * l);
                    }
                }
            }
        }
    }

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    /// <summary>The reference: ggml's generic row dot (grid and delta sums per super-block, one float term each).</summary>
    internal static float DotScalar(byte* w, byte* a, int n)
    {
        float sum = 0;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            int sumGrid = 0, sumDelta = 0;
            for (int ib = 0; ib < 8; ib++)
            {
                for (int l = 0; l < 4; l++)
                {
                    sbyte* q8 = y->Qs + 32 * ib + 8 * l;
                    int q8Sum = 0;
                    for (int j = 0; j < 8; j++) q8Sum += q8[j];
                    int ls = Scale(x, ib, l / 2);
                    sumGrid += ls * OneBitQuants.DotEight(Index(x, ib, l), q8);
                    sumDelta += ls * (NegativeDelta(x, ib, l) ? -q8Sum : q8Sum);
                }
            }
            sum += SuperScale(x) * y->D * (sumGrid + OneBitQuants.Delta * sumDelta);
        }
        return sum;
    }

    /// <summary>
    /// ggml's AVX2 row dot to the bit: grid products and delta-signed activation sums in two sets of eight int32
    /// lanes, each converted and added by one FMA per super-block, summed across lanes at the end.
    /// </summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        var accGrid = Vector256<float>.Zero;
        var accDelta = Vector256<float>.Zero;
        var ones = Vector256.Create((byte)1);
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            var sumGrid = Vector256<int>.Zero;
            var sumDelta = Vector256<int>.Zero;
            for (int ib = 0; ib < 8; ib++)
            {
                var q8 = Avx.LoadVector256(y->Qs + 32 * ib);
                var scales = Vector256.Create(Vector128.Create((short)Scale(x, ib, 0)), Vector128.Create((short)Scale(x, ib, 1)));
                var grid = OneBitQuants.GridAvx2(Index(x, ib, 0), Index(x, ib, 1), Index(x, ib, 2), Index(x, ib, 3));
                sumGrid = Avx2.Add(sumGrid, OneBitQuants.ProductsAvx2(grid, q8, scales));
                var deltaSigns = Vector256.Create(DeltaSign(x, ib, 0), DeltaSign(x, ib, 1), DeltaSign(x, ib, 2), DeltaSign(x, ib, 3)).AsSByte();
                var pairs = Avx2.MultiplyAddAdjacent(ones, Avx2.Sign(q8, deltaSigns));
                sumDelta = Avx2.Add(sumDelta, Avx2.MultiplyAddAdjacent(pairs, scales));
            }
            var d = Vector256.Create(y->D * SuperScale(x));
            accGrid = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sumGrid), accGrid);
            accDelta = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sumDelta), accDelta);
        }
        return X86Simd.HSum(accGrid) + OneBitQuants.Delta * X86Simd.HSum(accDelta);
    }

    /// <summary>Group l's delta sign as 8 bytes of -1 or +1, without a branch (random signs would defeat the predictor).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong DeltaSign(byte* x, int ib, int l) => 0x0101010101010101 | (ulong)-(long)(Nibble(x, ib, l) >> 3);
}

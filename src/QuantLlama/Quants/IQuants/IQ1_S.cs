using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ1_S: super-blocks of 256 values as one fp16 scale d, 32 low bytes of 11-bit indices into the codebook
/// <see cref="IQGrids.IQ1S"/> (four per block of 32), then per block a 16-bit word: the indices' high bits (3 per
/// index), a 3-bit scale s and the delta's sign; value = d · (2s + 1) · (grid value ± 1/8). 1.56 bits per weight.
/// Activation partner: Q8_K. No quantizer (llama.cpp's needs an importance matrix).
/// </summary>
public static unsafe partial class IQ1_S
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 50;

    /// <summary>IQ1_S as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ1_S, BlockSize, BlockBytes, null, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot });

    private const int High = 2 + 32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int HighWord(byte* x, int ib) => Unsafe.ReadUnaligned<ushort>(x + High + 2 * ib);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Index(byte* x, int ib, int l) => x[2 + 4 * ib + l] | (HighWord(x, ib) >> (3 * l) & 7) << 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Scale(int high) => 2 * (high >> 12 & 7) + 1;

    /// <summary>The delta's sign, -1 or 1, without a branch (random signs would defeat the predictor).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int DeltaSign(int high) => 1 - (high >> 14 & 2);

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* x0 = src)
        fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* x = x0 + i * BlockBytes;
                float d = Fp16.ToFloat(*(ushort*)x);
                for (int ib = 0; ib < 8; ib++)
                {
                    int high = HighWord(x, ib);
                    float dl = d * Scale(high);
                    float delta = DeltaSign(high) * OneBitQuants.Delta;
                    for (int l = 0; l < 4; l++)
                        OneBitQuants.DequantizeEight(Index(x, ib, l), dl, delta, y0 + i * BlockSize + 32 * ib + 8 * l);
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
            int sumi = 0, sumDelta = 0;
            for (int ib = 0; ib < 8; ib++)
            {
                int high = HighWord(x, ib), ls = Scale(high);
                int lsum = 0;
                for (int l = 0; l < 4; l++) lsum += OneBitQuants.DotEight(Index(x, ib, l), y->Qs + 32 * ib + 8 * l);
                sumi += ls * lsum;
                sumDelta += ls * DeltaSign(high) * (y->BSums[2 * ib] + y->BSums[2 * ib + 1]);
            }
            sum += Fp16.ToFloat(*(ushort*)x) * y->D * (sumi + OneBitQuants.Delta * sumDelta);
        }
        return sum;
    }

    /// <summary>
    /// ggml's AVX2 row dot to the bit: grid products in eight int32 lanes converted and added by one FMA per
    /// super-block; the delta's integer sum added as a float per super-block and scaled at the end.
    /// </summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        var acc = Vector256<float>.Zero;
        float accDelta = 0;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            var sums = Vector256<int>.Zero;
            int sumDelta = 0;
            for (int ib = 0; ib < 8; ib++)
            {
                int high = HighWord(x, ib), ls = Scale(high);
                var grid = OneBitQuants.GridAvx2(Index(x, ib, 0), Index(x, ib, 1), Index(x, ib, 2), Index(x, ib, 3));
                sums = Avx2.Add(sums, OneBitQuants.ProductsAvx2(grid, Avx.LoadVector256(y->Qs + 32 * ib), Vector256.Create((short)ls)));
                sumDelta += (y->BSums[2 * ib] + y->BSums[2 * ib + 1]) * DeltaSign(high) * ls;
            }
            float d = y->D * Fp16.ToFloat(*(ushort*)x);
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sums), acc);
            // llama.cpp's build contracts this multiply-add into one FMA.
            accDelta = MathF.FusedMultiplyAdd(d, sumDelta, accDelta);
        }
        return X86Simd.HSum(acc) + OneBitQuants.Delta * accDelta;
    }
}

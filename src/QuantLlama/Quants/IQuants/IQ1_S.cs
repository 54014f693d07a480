using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ1_S: super-blocks of 256 values as one fp16 scale d, 32 low bytes of 11-bit indices into the codebook
/// <see cref="IQGrids.IQ1S"/> (four per block of 32), then per block a 16-bit word: the indices' high bits (3 per
/// index), a 3-bit scale s and the delta's sign; value = d · (2s + 1) · (grid value ± 1/8). 1.56 bits per weight.
/// Activation partner: Q8_K. Quantized with an importance matrix only, as in ggml.
/// </summary>
public static unsafe partial class IQ1_S
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 50;

    /// <summary>IQ1_S as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ1_S, BlockSize, BlockBytes, null, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    /// <summary>Quantizer, byte for byte ggml's quantize_iq1_s, with the row's column importance [src.Length] (required).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
        => IQ1Quantizer.QuantizeS(src, dst, importance);

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

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst) => OneBitQuants.Dequantize<Format>(src, dst);

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    internal static float DotScalar(byte* w, byte* a, int n) => OneBitQuants.DotScalar<Format>(w, a, n);

    /// <summary>
    /// ggml's AVX2 row dot to the bit: grid products in eight int32 lanes converted and added by one FMA per
    /// super-block; the delta's integer sum added as a float per super-block and scaled at the end. The integer sums
    /// are exact, so they are formed in whatever order is cheapest: the indices from one 16-bit word per block with
    /// constant shifts, the delta's sum as one multiply-add of the 16 activation block sums by each block's ±scale.
    /// </summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        ref ulong grid = ref MemoryMarshal.GetReference(IQGrids.IQ1S);
        var acc = Vector256<float>.Zero;
        float accDelta = 0;
        var seven = Vector128.Create((short)7);
        var one = Vector128.Create((short)1);
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + (long)i * BlockBytes, qs = x + 2;
            var y = (BlockQ8K*)(a + (long)i * Q8_K.BlockBytes);
            ushort* qh = (ushort*)(x + High);
            sbyte* q8 = y->Qs;
            var sums = Vector256<int>.Zero;
            for (int ib = 0; ib < 8; ib++, qs += 4, q8 += 32)
            {
                uint h = qh[ib];
                var values = Vector256.Create(
                    Unsafe.Add(ref grid, qs[0] | (h << 8 & 0x700)), Unsafe.Add(ref grid, qs[1] | (h << 5 & 0x700)),
                    Unsafe.Add(ref grid, qs[2] | (h << 2 & 0x700)), Unsafe.Add(ref grid, qs[3] | (h >> 1 & 0x700))).AsSByte();
                var scale = Vector256.Create((short)(2 * (h >> 12 & 7) + 1));
                sums = Avx2.Add(sums, OneBitQuants.ProductsAvx2(values, Avx.LoadVector256(q8), scale));
            }
            // [8] ±(2s + 1) per block (sign taken from bit 15; | 1 keeps a zero word positive), each paired with the
            // block's two activation sums of 16.
            var words = Sse2.LoadVector128(qh).AsInt16();
            var scales = Ssse3.Sign(Sse2.Add(Sse2.ShiftLeftLogical(Sse2.And(Sse2.ShiftRightLogical(words, 12), seven), 1), one), Sse2.Or(words, one));
            var wide = Avx2.ConvertToVector256Int32(scales);
            var pairs = Avx2.Or(Avx2.And(wide, Vector256.Create(0xFFFF)), Avx2.ShiftLeftLogical(wide, 16)).AsInt16();
            var delta = Avx2.MultiplyAddAdjacent(Avx.LoadVector256(y->BSums), pairs);
            var half = Sse2.Add(delta.GetLower(), delta.GetUpper());
            half = Sse2.Add(half, Sse2.Shuffle(half, 0b_01_00_11_10));
            int sumDelta = Sse2.ConvertToInt32(Sse2.Add(half, Sse2.Shuffle(half, 0b_10_11_00_01)));
            float d = y->D * Fp16.ToFloat(*(ushort*)x);
            acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sums), acc);
            // llama.cpp's build contracts this multiply-add into one FMA.
            accDelta = MathF.FusedMultiplyAdd(d, sumDelta, accDelta);
        }
        return X86Simd.HSum(acc) + OneBitQuants.Delta * accDelta;
    }

    private readonly struct Format : IOneBitFormat
    {
        public static int BlockBytes => IQ1_S.BlockBytes;
        public static float SuperScale(byte* x) => Fp16.ToFloat(*(ushort*)x);
        public static int Index(byte* x, int ib, int l) => IQ1_S.Index(x, ib, l);
        public static int Scale(byte* x, int ib, int l) => IQ1_S.Scale(HighWord(x, ib));
        public static int DeltaSign(byte* x, int ib, int l) => IQ1_S.DeltaSign(HighWord(x, ib));
    }
}

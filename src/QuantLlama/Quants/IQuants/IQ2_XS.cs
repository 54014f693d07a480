using QuantLlama.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ2_XS: super-blocks of 256 values as one fp16 scale d, 32 16-bit words (four per block of 32: a 9-bit index
/// into the 8-value codebook <see cref="IQGrids.IQ2XS"/> and a 7-bit sign group), then per block one byte of two
/// 4-bit scales s, one per half of 16; value = d · (2s + 1)/8 · ±magnitude. 2.31 bits per weight. Activation
/// partner: Q8_K. Quantized only with an importance matrix, as ggml quantizes it.
/// </summary>
public static unsafe partial class IQ2_XS
{
    public const int BlockSize = GridQuants.BlockSize;
    public const int BlockBytes = 74;

    /// <summary>IQ2_XS as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ2_XS, BlockSize, BlockBytes, null, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    private const int Scales = 2 + 64;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst) => GridQuants.Dequantize<Format>(src, dst);

    /// <summary>Quantizer, byte for byte ggml's quantize_iq2_xs, with the row's column importance [src.Length] (required,
    /// as ggml requires it).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
        => IQ2Quantizer.QuantizeXs(src, dst, importance);

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    internal static float DotScalar(byte* w, byte* a, int n) => GridQuants.DotScalar<Format>(w, a, n);

    internal static float DotAvx2(byte* w, byte* a, int n) => GridQuants.DotAvx2<Format>(w, a, n);

    private readonly partial struct Format : IGridFormat
    {
        public static int BlockBytes => IQ2_XS.BlockBytes;
        public static float DotFactor => 0.125f;

        /// <summary>Word l of block ib: index in bits 0-8, sign group in bits 9-15.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static int Word(byte* x, int ib, int l) => Unsafe.ReadUnaligned<ushort>(x + 2 + 8 * ib + 2 * l);

        public static int Scale(byte* x, int ib, int half) => GridQuants.NibbleScale(x[Scales + ib], half);

        public static Vector256<short> ScalesAvx2(byte* x, int ib) => GridQuants.NibbleScalesAvx2(x[Scales + ib]);

        public static float DequantizeScale(float d, byte* x, int ib, int half) => GridQuants.NibbleDequantizeScale(d, x[Scales + ib], half);

        public static void Unpack(byte* x, int ib, sbyte* values)
        {
            for (int l = 0; l < 4; l++)
            {
                int word = Word(x, ib, l);
                GridQuants.SignEight(IQGrids.IQ2XSAt(word), (uint)word >> 9, values + 8 * l);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> MagnitudesAvx2(byte* x, int ib)
            => Vector256.Create(IQGrids.IQ2XSAt(Word(x, ib, 0)), IQGrids.IQ2XSAt(Word(x, ib, 1)),
                IQGrids.IQ2XSAt(Word(x, ib, 2)), IQGrids.IQ2XSAt(Word(x, ib, 3))).AsByte();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> SignsAvx2(byte* x, int ib)
        {
            var table = GridQuants.EvenSignBytes;
            return Vector256.Create(table[Word(x, ib, 0) >> 9], table[Word(x, ib, 1) >> 9], table[Word(x, ib, 2) >> 9], table[Word(x, ib, 3) >> 9]).AsSByte();
        }
    }
}

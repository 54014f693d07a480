using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ2_XXS: super-blocks of 256 values as one fp16 scale d and, per block of 32, two 32-bit words: four byte indices
/// into the 8-value codebook <see cref="IQGrids.IQ2XXS"/>, then four 7-bit sign groups and a 4-bit scale s;
/// value = d · (2s + 1)/8 · ±magnitude. 2.06 bits per weight. Activation partner: Q8_K. Quantized only with an
/// importance matrix, as ggml quantizes it.
/// </summary>
public static unsafe partial class IQ2_XXS
{
    public const int BlockSize = GridQuants.BlockSize;
    public const int BlockBytes = 66;

    /// <summary>IQ2_XXS as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ2_XXS, BlockSize, BlockBytes, null, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst) => GridQuants.Dequantize<Format>(src, dst);

    /// <summary>Quantizer, byte for byte ggml's quantize_iq2_xxs, with the row's column importance [src.Length] (required,
    /// as ggml requires it).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
        => IQ2Quantizer.QuantizeXxs(src, dst, importance);

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    internal static float DotScalar(byte* w, byte* a, int n) => GridQuants.DotScalar<Format>(w, a, n);

    internal static float DotAvx2(byte* w, byte* a, int n) => GridQuants.DotAvx2<Format>(w, a, n);

    private readonly partial struct Format : IGridFormat
    {
        public static int BlockBytes => IQ2_XXS.BlockBytes;
        public static float DotFactor => 0.125f;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static uint Indices(byte* x, int ib) => Unsafe.ReadUnaligned<uint>(x + 2 + 8 * ib);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static uint SignsAndScale(byte* x, int ib) => Unsafe.ReadUnaligned<uint>(x + 6 + 8 * ib);

        public static int Scale(byte* x, int ib, int half) => 2 * (int)(SignsAndScale(x, ib) >> 28) + 1;

        public static Vector256<short> ScalesAvx2(byte* x, int ib) => Vector256.Create((short)Scale(x, ib, 0));

        public static float DequantizeScale(float d, byte* x, int ib, int half) => d * (0.5f + (SignsAndScale(x, ib) >> 28)) * 0.25f;

        public static void Unpack(byte* x, int ib, sbyte* values)
        {
            uint indices = Indices(x, ib), signs = SignsAndScale(x, ib);
            var grid = IQGrids.IQ2XXS;
            for (int l = 0; l < 4; l++)
                GridQuants.SignEight(grid[(int)(indices >> (8 * l) & 0xFF)], signs >> (7 * l) & 127, values + 8 * l);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> MagnitudesAvx2(byte* x, int ib)
        {
            byte* i = x + 2 + 8 * ib;
            return Vector256.Create(IQGrids.IQ2XXSAt(i[0]), IQGrids.IQ2XXSAt(i[1]), IQGrids.IQ2XXSAt(i[2]), IQGrids.IQ2XXSAt(i[3])).AsByte();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> SignsAvx2(byte* x, int ib) => GridQuants.EvenSignsAvx2(SignsAndScale(x, ib));
    }
}

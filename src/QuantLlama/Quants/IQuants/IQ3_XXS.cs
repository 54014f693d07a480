using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ3_XXS: super-blocks of 256 values as one fp16 scale d, 64 byte indices into the 4-value codebook
/// <see cref="IQGrids.IQ3XXS"/> (8 per block of 32), then per block a 32-bit word of four 7-bit sign groups and a
/// 4-bit scale s; value = d · (2s + 1)/4 · ±magnitude. 3.06 bits per weight. Activation partner: Q8_K.
/// </summary>
public static unsafe partial class IQ3_XXS
{
    public const int BlockSize = GridQuants.BlockSize;
    public const int BlockBytes = 98;

    /// <summary>IQ3_XXS as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ3_XXS, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst) => GridQuants.Dequantize<Format>(src, dst);

    /// <summary>The quantizer without an importance matrix.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>Quantizer, byte for byte ggml's quantize_iq3_xxs, with the row's column importance [src.Length] or without (empty).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
        => IQ3Quantizer.QuantizeXxs(src, dst, importance);

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    internal static float DotScalar(byte* w, byte* a, int n) => GridQuants.DotScalar<Format>(w, a, n);

    internal static float DotAvx2(byte* w, byte* a, int n) => GridQuants.DotAvx2<Format>(w, a, n);

    private readonly partial struct Format : IGridFormat
    {
        public static int BlockBytes => IQ3_XXS.BlockBytes;
        public static float DotFactor => 0.25f;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static uint SignsAndScale(byte* x, int ib) => Unsafe.ReadUnaligned<uint>(x + 2 + 64 + 4 * ib);

        public static int Scale(byte* x, int ib, int half) => 2 * (int)(SignsAndScale(x, ib) >> 28) + 1;

        public static Vector256<short> ScalesAvx2(byte* x, int ib) => Vector256.Create((short)Scale(x, ib, 0));

        public static float DequantizeScale(float d, byte* x, int ib, int half) => d * (0.5f + (SignsAndScale(x, ib) >> 28)) * 0.5f;

        public static void Unpack(byte* x, int ib, sbyte* values)
        {
            byte* indices = x + 2 + 8 * ib;
            uint signs = SignsAndScale(x, ib);
            var grid = IQGrids.IQ3XXS;
            for (int l = 0; l < 4; l++)
            {
                ulong magnitudes = grid[indices[2 * l]] | (ulong)grid[indices[2 * l + 1]] << 32;
                GridQuants.SignEight(magnitudes, signs >> (7 * l) & 127, values + 8 * l);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> MagnitudesAvx2(byte* x, int ib)
        {
            byte* i = x + 2 + 8 * ib;
            return Vector256.Create(IQGrids.IQ3XXSAt(i[0]), IQGrids.IQ3XXSAt(i[1]), IQGrids.IQ3XXSAt(i[2]), IQGrids.IQ3XXSAt(i[3]),
                IQGrids.IQ3XXSAt(i[4]), IQGrids.IQ3XXSAt(i[5]), IQGrids.IQ3XXSAt(i[6]), IQGrids.IQ3XXSAt(i[7])).AsByte();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> SignsAvx2(byte* x, int ib) => GridQuants.EvenSignsAvx2(SignsAndScale(x, ib));
    }
}

using QuantLlama.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ2_S: super-blocks of 256 values as one fp16 scale d, 32 low bytes of 10-bit indices into the 8-value codebook
/// <see cref="IQGrids.IQ2S"/> (four per block of 32), 32 bytes of one sign bit per value, 8 bytes of the indices'
/// high bits (two per index, one byte per block), and per block one byte of two 4-bit scales s, one per half of 16;
/// value = d · (2s + 1)/8 · ±magnitude. 2.56 bits per weight. Activation partner: Q8_K.
/// </summary>
public static unsafe partial class IQ2_S
{
    public const int BlockSize = GridQuants.BlockSize;
    public const int BlockBytes = 82;

    /// <summary>IQ2_S as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ2_S, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    private const int Signs = 2 + 32, HighBits = Signs + 32, Scales = HighBits + 8;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst) => GridQuants.Dequantize<Format>(src, dst);

    /// <summary>The quantizer without an importance matrix.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>Quantizer, byte for byte ggml's quantize_iq2_s, with the row's column importance [src.Length] or without (empty).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
        => IQ2Quantizer.QuantizeS(src, dst, importance);

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    internal static float DotScalar(byte* w, byte* a, int n) => GridQuants.DotScalar<Format>(w, a, n);

    internal static float DotAvx2(byte* w, byte* a, int n) => GridQuants.DotAvx2<Format>(w, a, n);

    private readonly partial struct Format : IGridFormat
    {
        public static int BlockBytes => IQ2_S.BlockBytes;
        public static float DotFactor => 0.125f;

        public static int Scale(byte* x, int ib, int half) => GridQuants.NibbleScale(x[Scales + ib], half);

        public static Vector256<short> ScalesAvx2(byte* x, int ib) => GridQuants.NibbleScalesAvx2(x[Scales + ib]);

        public static float DequantizeScale(float d, byte* x, int ib, int half) => GridQuants.NibbleDequantizeScale(d, x[Scales + ib], half);

        /// <summary>Entry l of block ib: its low byte and bits 2l, 2l + 1 of the block's high-bit byte.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static ulong Magnitudes(byte* x, int ib, int l) => IQGrids.IQ2SAt(x[2 + 4 * ib + l] | (x[HighBits + ib] << (8 - 2 * l) & 0x300));

        public static void Unpack(byte* x, int ib, sbyte* values)
        {
            for (int l = 0; l < 4; l++)
                GridQuants.SignEightByBits(Magnitudes(x, ib, l), x[Signs + 4 * ib + l], values + 8 * l);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> MagnitudesAvx2(byte* x, int ib)
            => Vector256.Create(Magnitudes(x, ib, 0), Magnitudes(x, ib, 1), Magnitudes(x, ib, 2), Magnitudes(x, ib, 3)).AsByte();

        /// <summary>One sign bit per value: 0xFF where set (X86Simd.BytesFromBits32), or 1 into ±1.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> SignsAvx2(byte* x, int ib)
            => (X86Simd.BytesFromBits32(x + Signs + 4 * ib) | Vector256.Create((byte)1)).AsSByte();
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ3_S: super-blocks of 256 values as one fp16 scale d, 64 low bytes and 8 bytes of high bits of 9-bit indices
/// into the 4-value codebook <see cref="IQGrids.IQ3S"/> (8 indices and one high-bit byte per block of 32), 32 bytes
/// of one sign bit per value, and 4-bit block scales s two per byte; value = d · (2s + 1) · ±magnitude.
/// 3.44 bits per weight. Activation partner: Q8_K.
/// </summary>
public static unsafe partial class IQ3_S
{
    public const int BlockSize = GridQuants.BlockSize;
    public const int BlockBytes = 110;

    /// <summary>IQ3_S as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ3_S, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    private const int HighBits = 2 + 64, Signs = HighBits + 8, Scales = Signs + 32;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst) => GridQuants.Dequantize<Format>(src, dst);

    /// <summary>The quantizer without an importance matrix.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>Quantizer, byte for byte ggml's quantize_iq3_s, with the row's column importance [src.Length] or without (empty).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
        => IQ3Quantizer.QuantizeS(src, dst, importance);

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    internal static float DotScalar(byte* w, byte* a, int n) => GridQuants.DotScalar<Format>(w, a, n);

    internal static float DotAvx2(byte* w, byte* a, int n) => GridQuants.DotAvx2<Format>(w, a, n);

    private readonly partial struct Format : IGridFormat
    {
        public static int BlockBytes => IQ3_S.BlockBytes;
        public static float DotFactor => 1f;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static int ScaleBits(byte* x, int ib) => x[Scales + ib / 2] >> (4 * (ib % 2)) & 0x0F;

        public static int Scale(byte* x, int ib, int half) => 2 * ScaleBits(x, ib) + 1;

        public static Vector256<short> ScalesAvx2(byte* x, int ib) => Vector256.Create((short)Scale(x, ib, 0));

        public static float DequantizeScale(float d, byte* x, int ib, int half) => d * (1 + 2 * ScaleBits(x, ib));

        /// <summary>Index k of block ib: its low byte and bit k of the block's high-bit byte.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static uint Magnitudes(byte* x, int ib, int k)
            => IQGrids.IQ3SAt(x[2 + 8 * ib + k] | (x[HighBits + ib] << (8 - k) & 256));

        public static void Unpack(byte* x, int ib, sbyte* values)
        {
            byte* signs = x + Signs + 4 * ib;
            for (int k = 0; k < 8; k++)
            {
                uint m = Magnitudes(x, ib, k);
                for (int j = 0; j < 4; j++)
                {
                    int v = 4 * k + j, magnitude = (int)(m >> (8 * j) & 0xFF);
                    values[v] = (sbyte)((signs[v / 8] >> (v % 8) & 1) != 0 ? -magnitude : magnitude);
                }
            }
        }

        /// <summary>The 8 indices built in one vector (low bytes widened, bit k of the high byte moved to bit 8) and gathered.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> MagnitudesAvx2(byte* x, int ib)
        {
            var low = Avx2.ConvertToVector256Int32(x + 2 + 8 * ib);
            var high = Avx2.ShiftLeftLogicalVariable(Vector256.Create((int)x[HighBits + ib]), Vector256.Create(8u, 7, 6, 5, 4, 3, 2, 1)) & Vector256.Create(256);
            return Avx2.GatherVector256(IQGrids.IQ3SPointer, low | high, 4).AsByte();
        }

        /// <summary>One sign bit per value: 0xFF where set (X86Simd.BytesFromBits32), or 1 into ±1.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> SignsAvx2(byte* x, int ib)
            => (X86Simd.BytesFromBits32(x + Signs + 4 * ib) | Vector256.Create((byte)1)).AsSByte();
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// IQ1_M: super-blocks of 256 values as 32 low bytes of 11-bit indices into the codebook <see cref="IQGrids.IQ1S"/>
/// (four per block of 32), 16 bytes of one nibble per index (3 high index bits and the delta's sign), and 8 bytes of
/// 3-bit scales s, one per half-block of 16, whose four spare top nibbles hold the fp16 super-block scale d;
/// value = d · (2s + 1) · (grid value ± 1/8). 1.75 bits per weight. Activation partner: Q8_K.
/// </summary>
public static unsafe partial class IQ1_M
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 56;

    /// <summary>IQ1_M as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.IQ1_M, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel { Activation = KQuants.Q8_K.Activation, Dot = &Dot }) { QuantizeWeighted = &Quantize };

    /// <summary>The quantizer without an importance matrix (weights x², as ggml's).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>Quantizer, byte for byte ggml's quantize_iq1_m, with the row's column importance [src.Length] or without (empty).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
        => IQ1Quantizer.QuantizeM(src, dst, importance);

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

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst) => OneBitQuants.Dequantize<Format>(src, dst);

    internal static float Dot(byte* w, byte* a, int n)
        => Kernels.UseAvx2 ? DotAvx2(w, a, n) : Kernels.UseAdvSimd ? DotAdvSimd(w, a, n) : DotScalar(w, a, n);

    internal static float DotScalar(byte* w, byte* a, int n) => OneBitQuants.DotScalar<Format>(w, a, n);

    /// <summary>
    /// ggml's AVX2 row dot to the bit: grid products and delta-signed activation sums in two sets of eight int32
    /// lanes, each converted and added by one FMA per super-block, summed across lanes at the end. Blocks go in
    /// pairs, as in ggml: the scales unpacked once per super-block and picked per block by a byte shuffle, the delta
    /// signs of a pair made from its 32 bits of nibbles by variable shifts.
    /// </summary>
    internal static float DotAvx2(byte* w, byte* a, int n)
    {
        ref ulong grid = ref MemoryMarshal.GetReference(IQGrids.IQ1S);
        var accGrid = Vector256<float>.Zero;
        var accDelta = Vector256<float>.Zero;
        var ones = Vector256.Create((byte)1);
        // 64-bit lane k of the 8 scale bytes shifted by 0, 6, 3, 9: 16-bit lanes hold the first halves' scales of
        // blocks 0 2 4 6 1 3 5 7 (low 128 bits), then their second halves' (ggml's layout).
        var scaleShift = Vector256.Create(0ul, 6, 3, 9);
        // Dword pair l brings nibble l's delta-sign bit (bit 3 + 4l of the block's word) to bit 31; the second
        // block's word is the upper 16 bits.
        var firstSignShift = Vector256.Create(28u, 28, 24, 24, 20, 20, 16, 16);
        var secondSignShift = Vector256.Create(12u, 12, 8, 8, 4, 4, 0, 0);
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + (long)i * BlockBytes, qs = x;
            var y = (BlockQ8K*)(a + (long)i * Q8_K.BlockBytes);
            uint* qh = (uint*)(x + High);
            sbyte* q8 = y->Qs;
            var packed = Avx2.ShiftRightLogicalVariable(Vector256.Create(Unsafe.ReadUnaligned<ulong>(x + Scales)), scaleShift).AsInt16();
            var scales = Avx2.Add(Avx2.ShiftLeftLogical(Avx2.And(packed, Vector256.Create((short)7)), 1), Vector256.Create((short)1)).AsByte();
            // Byte shuffles that repeat one block's two scales over its two halves: element 0, then 4, then 1, 5 …
            var firstPick = Vector256.Create((short)0x0100).AsByte();
            var secondPick = Avx2.Add(firstPick, Vector256.Create((byte)8));
            var sumGrid = Vector256<int>.Zero;
            var sumDelta = Vector256<int>.Zero;
            for (int pair = 0; pair < 4; pair++, qs += 8, q8 += 64)
            {
                uint h = qh[pair];
                var first = Vector256.Create(
                    Unsafe.Add(ref grid, qs[0] | (h << 8 & 0x700)), Unsafe.Add(ref grid, qs[1] | (h << 4 & 0x700)),
                    Unsafe.Add(ref grid, qs[2] | (h & 0x700)), Unsafe.Add(ref grid, qs[3] | (h >> 4 & 0x700))).AsSByte();
                var second = Vector256.Create(
                    Unsafe.Add(ref grid, qs[4] | (h >> 8 & 0x700)), Unsafe.Add(ref grid, qs[5] | (h >> 12 & 0x700)),
                    Unsafe.Add(ref grid, qs[6] | (h >> 16 & 0x700)), Unsafe.Add(ref grid, qs[7] | (h >> 20 & 0x700))).AsSByte();
                var bits = Vector256.Create(h);
                var firstDelta = Avx2.Or(Avx2.ShiftRightArithmetic(Avx2.ShiftLeftLogicalVariable(bits, firstSignShift).AsInt32(), 31).AsByte(), ones).AsSByte();
                var secondDelta = Avx2.Or(Avx2.ShiftRightArithmetic(Avx2.ShiftLeftLogicalVariable(bits, secondSignShift).AsInt32(), 31).AsByte(), ones).AsSByte();
                var q8First = Avx.LoadVector256(q8);
                var q8Second = Avx.LoadVector256(q8 + 32);
                var firstScales = Avx2.Shuffle(scales, firstPick).AsInt16();
                var secondScales = Avx2.Shuffle(scales, secondPick).AsInt16();
                firstPick = Avx2.Add(firstPick, Vector256.Create((byte)2));
                secondPick = Avx2.Add(secondPick, Vector256.Create((byte)2));
                sumGrid = Avx2.Add(sumGrid, Avx2.Add(OneBitQuants.ProductsAvx2(first, q8First, firstScales),
                    OneBitQuants.ProductsAvx2(second, q8Second, secondScales)));
                var firstSums = Avx2.MultiplyAddAdjacent(ones, Avx2.Sign(q8First, firstDelta));
                var secondSums = Avx2.MultiplyAddAdjacent(ones, Avx2.Sign(q8Second, secondDelta));
                sumDelta = Avx2.Add(sumDelta, Avx2.Add(Avx2.MultiplyAddAdjacent(firstSums, firstScales),
                    Avx2.MultiplyAddAdjacent(secondSums, secondScales)));
            }
            var d = Vector256.Create(y->D * SuperScale(x));
            accGrid = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sumGrid), accGrid);
            accDelta = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sumDelta), accDelta);
        }
        return X86Simd.HSum(accGrid) + OneBitQuants.Delta * X86Simd.HSum(accDelta);
    }

    private readonly struct Format : IOneBitFormat
    {
        public static int BlockBytes => IQ1_M.BlockBytes;
        public static float SuperScale(byte* x) => IQ1_M.SuperScale(x);
        public static int Index(byte* x, int ib, int l) => IQ1_M.Index(x, ib, l);
        public static int Scale(byte* x, int ib, int l) => IQ1_M.Scale(x, ib, l / 2);
        public static int DeltaSign(byte* x, int ib, int l) => NegativeDelta(x, ib, l) ? -1 : 1;
    }
}

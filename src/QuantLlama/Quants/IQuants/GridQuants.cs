using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Quants.KQuants;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// One grid i-quant (IQ2_XXS, IQ3_XXS, IQ3_S): super-blocks of 256 values with one fp16 scale d, in 8 blocks of 32,
/// each block's values being codebook magnitudes (<see cref="IQGrids"/>) with signs and an odd integer scale per
/// block (IQ2_XXS, IQ3_XXS, IQ3_S) or per half-block of 16 (IQ2_XS, IQ2_S).
/// </summary>
internal unsafe interface IGridFormat
{
    static abstract int BlockBytes { get; }

    /// <summary>The constant ggml's row dots multiply their sum by (the block scales' common denominator).</summary>
    static abstract float DotFactor { get; }

    /// <summary>The odd integer scale of half <paramref name="half"/> (values 16·half … 16·half + 15) of block ib, as the row dots multiply by it.</summary>
    static abstract int Scale(byte* x, int ib, int half);

    /// <summary>That half's scale as ggml's dequantizer computes it from d (its float steps, to the bit).</summary>
    static abstract float DequantizeScale(float d, byte* x, int ib, int half);

    /// <summary>Block ib's scales as 16 shorts: 8 for each half, for the AVX2 path.</summary>
    static abstract Vector256<short> ScalesAvx2(byte* x, int ib);

    /// <summary>Block ib's 32 signed magnitudes.</summary>
    static abstract void Unpack(byte* x, int ib, sbyte* values);

    /// <summary>Block ib's 32 unsigned magnitudes, for the AVX2 path.</summary>
    static abstract Vector256<byte> MagnitudesAvx2(byte* x, int ib);

    /// <summary>Block ib's 32 signs as ±1 bytes, for the AVX2 path.</summary>
    static abstract Vector256<sbyte> SignsAvx2(byte* x, int ib);
}

/// <summary>Dequantizer and row dots shared by the grid i-quants; activation partner Q8_K.</summary>
internal static unsafe partial class GridQuants
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int SubBlocks = BlockSize / 32;

    /// <summary>
    /// ggml's sign scheme for 8 values in 7 bits: bit j negates value j, and the 8th sign is the parity of the seven
    /// (so an even number of values is negative).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint EvenSigns(uint sevenBits) => sevenBits | ((uint)(BitOperations.PopCount(sevenBits) & 1) << 7);

    /// <summary><see cref="EvenSigns"/> as 8 bytes of +1 or -1, for all 128 patterns.</summary>
    public static readonly ulong[] EvenSignBytes = BuildEvenSignBytes();

    private static ulong[] BuildEvenSignBytes()
    {
        var table = new ulong[128];
        for (uint i = 0; i < 128; i++)
        {
            uint signs = EvenSigns(i);
            for (int j = 0; j < 8; j++)
                table[i] |= (ulong)((signs >> j & 1) != 0 ? 0xFF : 0x01) << (8 * j);
        }
        return table;
    }

    /// <summary>8 magnitudes (one per byte of <paramref name="magnitudes"/>) with <see cref="EvenSigns"/> applied.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SignEight(ulong magnitudes, uint sevenBits, sbyte* values) => SignEightByBits(magnitudes, EvenSigns(sevenBits), values);

    /// <summary>8 magnitudes, value j negated where bit j of <paramref name="signs"/> is set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SignEightByBits(ulong magnitudes, uint signs, sbyte* values)
    {
        for (int j = 0; j < 8; j++)
        {
            int m = (int)(magnitudes >> (8 * j) & 0xFF);
            values[j] = (sbyte)((signs >> j & 1) != 0 ? -m : m);
        }
    }

    /// <summary>Four 7-bit sign groups (bits 0-27 of <paramref name="packed"/>) as 32 bytes of ±1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> EvenSignsAvx2(uint packed)
    {
        var table = EvenSignBytes;
        return Vector256.Create(table[packed & 127], table[packed >> 7 & 127], table[packed >> 14 & 127], table[packed >> 21 & 127]).AsSByte();
    }

    /// <summary>IQ2_XS's and IQ2_S's block scale byte: 4 bits per half; the row dots multiply by 2s + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NibbleScale(byte scales, int half) => 2 * (scales >> (4 * half) & 0x0F) + 1;

    /// <summary><see cref="NibbleScale"/> for both halves, 8 shorts each, for the AVX2 path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> NibbleScalesAvx2(byte scales)
        => Vector256.Create(Vector128.Create((short)NibbleScale(scales, 0)), Vector128.Create((short)NibbleScale(scales, 1)));

    /// <summary>ggml's dequantizer's float steps for a <see cref="NibbleScale"/>: d · (0.5 + s) · 0.25.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float NibbleDequantizeScale(float d, byte scales, int half) => d * (0.5f + (scales >> (4 * half) & 0x0F)) * 0.25f;

    public static void Dequantize<T>(ReadOnlySpan<byte> src, Span<float> dst) where T : IGridFormat
    {
        int blockBytes = T.BlockBytes;
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, blockBytes);
        sbyte* values = stackalloc sbyte[32];
        fixed (byte* x0 = src)
        fixed (float* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                byte* x = x0 + i * blockBytes;
                float d = Fp16.ToFloat(*(ushort*)x);
                for (int ib = 0; ib < SubBlocks; ib++)
                {
                    T.Unpack(x, ib, values);
                    float* y = y0 + i * BlockSize + ib * 32;
                    for (int half = 0; half < 2; half++)
                    {
                        // ggml multiplies by the magnitude, then by ±1: the same float as the scale times the signed magnitude.
                        float db = T.DequantizeScale(d, x, ib, half);
                        for (int j = 16 * half; j < 16 * half + 16; j++) y[j] = db * values[j];
                    }
                }
            }
        }
    }

    /// <summary>The reference: ggml's generic row dot (integer sums per super-block, one float term each).</summary>
    public static float DotScalar<T>(byte* w, byte* a, int n) where T : IGridFormat
    {
        sbyte* values = stackalloc sbyte[32];
        float sum = 0;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * T.BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            float d = Fp16.ToFloat(*(ushort*)x) * y->D;
            int bsum = 0;
            for (int ib = 0; ib < SubBlocks; ib++)
            {
                T.Unpack(x, ib, values);
                sbyte* q8 = y->Qs + ib * 32;
                for (int half = 0; half < 2; half++)
                {
                    int sumi = 0;
                    for (int j = 16 * half; j < 16 * half + 16; j++) sumi += values[j] * q8[j];
                    bsum += sumi * T.Scale(x, ib, half);
                }
            }
            sum += d * bsum;
        }
        return T.DotFactor * sum;
    }

    /// <summary>
    /// ggml's AVX2 row dot to the bit: per super-block, eight int32 lanes each summing 4 adjacent products of every
    /// block times their (half-)block's scale; converted and added by one FMA; summed across lanes and scaled at the end.
    /// </summary>
    public static float DotAvx2<T>(byte* w, byte* a, int n) where T : IGridFormat
    {
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < n / BlockSize; i++)
        {
            byte* x = w + i * T.BlockBytes;
            var y = (BlockQ8K*)(a + i * Q8_K.BlockBytes);
            var sums = Vector256<int>.Zero;
            for (int ib = 0; ib < SubBlocks; ib++)
            {
                var q8 = Avx2.Sign(Avx.LoadVector256(y->Qs + ib * 32), T.SignsAvx2(x, ib));
                var pairs = Avx2.MultiplyAddAdjacent(T.MagnitudesAvx2(x, ib), q8);
                sums = Avx2.Add(sums, Avx2.MultiplyAddAdjacent(pairs, T.ScalesAvx2(x, ib)));
            }
            acc = Fma.MultiplyAdd(Vector256.Create(Fp16.ToFloat(*(ushort*)x) * y->D), Avx.ConvertToVector256Single(sums), acc);
        }
        return T.DotFactor * X86Simd.HSum(acc);
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.KQuants;

/// <summary>ggml's block_q8_K: the activation partner of every k-quant (256 values, one f32 scale).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8K
{
    /// <summary>Scale: value = D · Qs[i].</summary>
    public float D;
    public fixed sbyte Qs[GgmlTypeInfo.QK_K];
    /// <summary>Sums of each 16 consecutive quants, which the kernels use to apply the weight blocks' offsets.</summary>
    public fixed short BSums[GgmlTypeInfo.QK_K / 16];
}

/// <summary>Q8_K: 8-bit quantization of activations in blocks of 256, exactly as ggml's quantize_row_q8_K.</summary>
public static unsafe class Q8_K
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 4 + BlockSize + BlockSize / 16 * 2;

    /// <summary>Q8_K as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q8_K, BlockSize, BlockBytes, &Quantize, &Dequantize);

    /// <summary>Quantizes a whole number of 256-value blocks.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        var y = MemoryMarshal.Cast<byte, BlockQ8K>(dst[..(blocks * BlockBytes)]);
        for (int i = 0; i < blocks; i++)
            QuantizeBlock(src.Slice(i * BlockSize, BlockSize), ref y[i]);
    }

    /// <summary>The activation form of every k-quant and of the 256-value i-quants.</summary>
    internal static ActivationForm Activation => new() { Type = GgmlType.Q8_K, Quantize = &Quantize };

    /// <summary>Quantizes n values (a whole number of blocks) from x into y; for the matrix products.</summary>
    internal static void Quantize(float* x, byte* y, int n)
    {
        for (int i = 0; i < n / BlockSize; i++)
            QuantizeBlock(new ReadOnlySpan<float>(x + i * BlockSize, BlockSize), ref *(BlockQ8K*)(y + i * BlockBytes));
    }

    private static void QuantizeBlock(ReadOnlySpan<float> x, ref BlockQ8K y)
    {
        if (Kernels.UseAvx2)
        {
            fixed (float* xp = x)
            fixed (BlockQ8K* b = &y)
                QuantizeBlockAvx2(xp, b);
            return;
        }
        QuantizeBlockScalar(x, ref y);
    }

    /// <summary>The reference: quantize_row_q8_K_ref for one block.</summary>
    internal static void QuantizeBlockScalar(ReadOnlySpan<float> x, ref BlockQ8K y)
    {
        float max = 0, amax = 0;
        for (int j = 0; j < BlockSize; j++)
        {
            float ax = MathF.Abs(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        fixed (BlockQ8K* b = &y)
        {
            if (amax == 0)
            {
                // ggml leaves the sums of an all-zero block unwritten; zero is what they would be.
                *b = default;
                return;
            }
            // -127 rather than -128: ggml's IQ kernels need the symmetric range, and the k-quants share it.
            float iscale = -127f / max;
            for (int j = 0; j < BlockSize; j++)
            {
                int v = KQuantMath.NearestInt(iscale * x[j]);
                b->Qs[j] = (sbyte)Math.Min(127, v);
            }
            for (int j = 0; j < BlockSize / 16; j++)
            {
                int sum = 0;
                for (int k = 0; k < 16; k++) sum += b->Qs[j * 16 + k];
                b->BSums[j] = (short)sum;
            }
            b->D = 1 / iscale;
        }
    }

    /// <summary>
    /// <see cref="QuantizeBlockScalar"/> in AVX2, byte for byte (NaN and infinity included): the same first
    /// largest-magnitude value, ggml's nearest_int through the 1.5·2^23 trick, the same truncation to a byte, and
    /// the block sums from the stored bytes. It runs once per activation row of every k-quant product.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void QuantizeBlockAvx2(float* x, BlockQ8K* b)
    {
        var absMask = Vector256.Create(0x7fffffff).AsSingle();
        var vmax = Vector256<float>.Zero;
        // max(|x|, running) keeps the running maximum when |x| is NaN, as the scalar `ax > amax` does.
        for (int j = 0; j < BlockSize; j += 8)
            vmax = Avx.Max(Avx.And(Avx.LoadVector256(x + j), absMask), vmax);
        Vector128<float> m = Sse.Max(vmax.GetLower(), vmax.GetUpper());
        m = Sse.Max(m, Sse.MoveHighToLow(m, m));
        m = Sse.Max(m, Sse.Shuffle(m, m, 0x55));
        float amax = m.ToScalar();
        if (amax == 0)
        {
            *b = default;
            return;
        }
        // The first value whose magnitude is the maximum (the scalar loop keeps the first on ties).
        var target = Vector256.Create(amax);
        int first = 0;
        for (; first < BlockSize; first += 8)
        {
            int hits = Avx.MoveMask(Avx.CompareEqual(Avx.And(Avx.LoadVector256(x + first), absMask), target));
            if (hits != 0)
            {
                first += System.Numerics.BitOperations.TrailingZeroCount(hits);
                break;
            }
        }
        float iscale = -127f / x[first];
        var scale = Vector256.Create(iscale);
        var magic = Vector256.Create(12582912f);
        var mantissa = Vector256.Create(0x007fffff);
        var bias = Vector256.Create(0x00400000);
        var top = Vector256.Create(127);
        var lowByte = Vector256.Create(0xff);
        for (int j = 0; j < BlockSize; j += 32)
        {
            // nearest_int(iscale·x), capped at 127, then its low byte (C's narrowing) as 0..255 so that the unsigned
            // packs below pass every value through unchanged.
            Vector256<int> q0 = Avx2.And(Avx2.Min(Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(scale, Avx.LoadVector256(x + j)), magic).AsInt32(), mantissa), bias), top), lowByte);
            Vector256<int> q1 = Avx2.And(Avx2.Min(Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(scale, Avx.LoadVector256(x + j + 8)), magic).AsInt32(), mantissa), bias), top), lowByte);
            Vector256<int> q2 = Avx2.And(Avx2.Min(Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(scale, Avx.LoadVector256(x + j + 16)), magic).AsInt32(), mantissa), bias), top), lowByte);
            Vector256<int> q3 = Avx2.And(Avx2.Min(Avx2.Subtract(Avx2.And(Avx.Add(Avx.Multiply(scale, Avx.LoadVector256(x + j + 24)), magic).AsInt32(), mantissa), bias), top), lowByte);
            Vector256<byte> bytes = Avx2.PackUnsignedSaturate(Avx2.PackUnsignedSaturate(q0, q1).AsInt16(), Avx2.PackUnsignedSaturate(q2, q3).AsInt16());
            // The packs interleave 128-bit lanes: dwords 0 4 1 5 2 6 3 7 back into order.
            bytes = Avx2.PermuteVar8x32(bytes.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsByte();
            Avx.Store((byte*)b->Qs + j, bytes);
        }
        // Sums of 16 stored (signed) bytes: biased to unsigned, summed in eights by psadbw, the bias taken off.
        var signBit = Vector256.Create((byte)0x80);
        for (int j = 0; j < BlockSize; j += 32)
        {
            Vector256<ulong> eights = Avx2.SumAbsoluteDifferences(Avx2.Xor(Avx.LoadVector256((byte*)b->Qs + j), signBit), Vector256<byte>.Zero).AsUInt64();
            b->BSums[j / 16] = (short)((int)(eights.GetElement(0) + eights.GetElement(1)) - 16 * 128);
            b->BSums[j / 16 + 1] = (short)((int)(eights.GetElement(2) + eights.GetElement(3)) - 16 * 128);
        }
        b->D = 1 / iscale;
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        var x = MemoryMarshal.Cast<byte, BlockQ8K>(src[..(blocks * BlockBytes)]);
        for (int i = 0; i < blocks; i++)
        {
            fixed (BlockQ8K* b = &x[i])
            {
                var y = dst.Slice(i * BlockSize, BlockSize);
                for (int j = 0; j < BlockSize; j++) y[j] = b->D * b->Qs[j];
            }
        }
    }
}

using System.Runtime.InteropServices;

namespace QuantLlama.Quants.KQuants;

/// <summary>ggml's block_q8_K: the activation partner of every k-quant (256 values, one f32 scale).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ8K
{
    /// <summary>Scale: value = D · Qs[i].</summary>
    public float D;
    public fixed sbyte Qs[KQuantMath.QK_K];
    /// <summary>Sums of each 16 consecutive quants, which the kernels use to apply the weight blocks' offsets.</summary>
    public fixed short BSums[KQuantMath.QK_K / 16];
}

/// <summary>Q8_K: 8-bit quantization of activations in blocks of 256, exactly as ggml's quantize_row_q8_K.</summary>
public static unsafe class Q8_K
{
    public const int BlockSize = KQuantMath.QK_K;
    public const int BlockBytes = 4 + BlockSize + BlockSize / 16 * 2;

    /// <summary>Quantizes a whole number of 256-value blocks.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = KQuantRows.BlockCount(src.Length, dst.Length, BlockBytes);
        var y = MemoryMarshal.Cast<byte, BlockQ8K>(dst[..(blocks * BlockBytes)]);
        for (int i = 0; i < blocks; i++)
            QuantizeBlock(src.Slice(i * BlockSize, BlockSize), ref y[i]);
    }

    /// <summary>Quantizes n values (a whole number of blocks) from x into y; for the matrix products.</summary>
    internal static void Quantize(float* x, byte* y, int n)
    {
        for (int i = 0; i < n / BlockSize; i++)
            QuantizeBlock(new ReadOnlySpan<float>(x + i * BlockSize, BlockSize), ref *(BlockQ8K*)(y + i * BlockBytes));
    }

    private static void QuantizeBlock(ReadOnlySpan<float> x, ref BlockQ8K y)
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

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = KQuantRows.BlockCount(dst.Length, src.Length, BlockBytes);
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

/// <summary>Length checks shared by the k-quant row functions.</summary>
internal static class KQuantRows
{
    /// <summary>Blocks in a row of <paramref name="values"/> values, checking the byte buffer is large enough.</summary>
    public static int BlockCount(int values, int bytes, int blockBytes)
    {
        if (values % KQuantMath.QK_K != 0)
            throw new ArgumentException($"{values} values is not a whole number of {KQuantMath.QK_K}-value blocks");
        int blocks = values / KQuantMath.QK_K;
        if ((long)blocks * blockBytes > bytes)
            throw new ArgumentException($"{bytes} bytes cannot hold {blocks} blocks of {blockBytes} bytes");
        return blocks;
    }

    /// <summary>Blocks in a weight row, checking the Q8_K activation holds as many.</summary>
    public static int DotBlockCount(int weightBytes, int blockBytes, int q8Bytes)
    {
        if (weightBytes % blockBytes != 0)
            throw new ArgumentException($"{weightBytes} bytes is not a whole number of {blockBytes}-byte blocks");
        int blocks = weightBytes / blockBytes;
        if ((long)blocks * Q8_K.BlockBytes > q8Bytes)
            throw new ArgumentException($"the Q8_K activation ({q8Bytes} bytes) is shorter than {blocks} blocks");
        return blocks;
    }
}

namespace QuantLlama.Quants;

/// <summary>Block-count checks shared by the row quantizers and dequantizers.</summary>
internal static class Blocks
{
    /// <summary>Number of blocks; throws when the value count is not whole blocks or the byte buffer is too short.</summary>
    public static int Check(int values, int blockSize, int bytes, int blockBytes)
    {
        if (values % blockSize != 0)
            throw new ArgumentException($"{values} values is not a whole number of blocks of {blockSize}");
        int nb = values / blockSize;
        if (bytes < (long)nb * blockBytes)
            throw new ArgumentException($"{bytes} bytes cannot hold {nb} blocks of {blockBytes} bytes");
        return nb;
    }

    /// <summary>Throws unless <paramref name="importance"/> is empty or holds one weight per value.</summary>
    public static void CheckImportance(int importance, int values)
    {
        if (importance != 0 && importance != values)
            throw new ArgumentException($"{importance} importance weights for {values} values: one per value is needed", nameof(importance));
    }

    /// <summary>
    /// Blocks in a weight row of <paramref name="weightBytes"/>; throws when it is not whole blocks or the activation
    /// (<paramref name="activationBytes"/>, in blocks of <paramref name="activationBlockBytes"/>) holds fewer.
    /// </summary>
    public static int CheckDot(int weightBytes, int blockBytes, int activationBytes, int activationBlockBytes)
    {
        if (weightBytes % blockBytes != 0)
            throw new ArgumentException($"{weightBytes} bytes is not a whole number of {blockBytes}-byte blocks");
        int nb = weightBytes / blockBytes;
        if ((long)nb * activationBlockBytes > activationBytes)
            throw new ArgumentException($"the activation ({activationBytes} bytes) is shorter than {nb} blocks");
        return nb;
    }

    /// <summary>
    /// A format's public row dot over spans: <see cref="CheckDot"/>, then <paramref name="dot"/> over the weight
    /// row's values.
    /// </summary>
    public static unsafe float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activation, int blockSize, int blockBytes,
        int activationBlockBytes, delegate*<byte*, byte*, int, float> dot)
    {
        int nb = CheckDot(weights.Length, blockBytes, activation.Length, activationBlockBytes);
        fixed (byte* w = weights)
        fixed (byte* a = activation)
            return dot(w, a, nb * blockSize);
    }

    /// <summary>The value of largest magnitude in a block, the first one on ties (ggml's amax/max scan).</summary>
    public static unsafe float SignedAbsMax(float* x, int n)
    {
        float amax = 0, max = 0;
        for (int j = 0; j < n; j++)
        {
            float v = x[j];
            if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
        }
        return max;
    }

    /// <summary>A block's smallest and largest value (ggml's min/max scan for the _1 formats).</summary>
    public static unsafe void MinMax(float* x, int n, out float min, out float max)
    {
        min = float.MaxValue;
        max = -float.MaxValue;
        for (int j = 0; j < n; j++)
        {
            float v = x[j];
            if (v < min) min = v;
            if (v > max) max = v;
        }
    }
}

using System.Security.Cryptography;
using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// Our quantizers give llama.cpp's x64 bytes on every CPU, so a model quantizes to the same file everywhere. Off x64
/// the local llama.cpp build cannot vouch for that (<see cref="GgmlNative.QuantizesLikeX64"/>), so the bytes' SHA-256
/// is pinned here; on x64 the test first checks that llama.cpp's own bytes for these rows are ours.
/// </summary>
public class QuantizerDeterminismTests
{
    /// <summary>
    /// 16 blocks of 256 values, each an integer times a power of two (no libm, so every CPU builds the same floats),
    /// at scales from subnormal (|q| < 2^20 times 2^-146: below 2^-126) to 2^20, a few with outliers, some half zero.
    /// </summary>
    private static float[] Rows()
    {
        int[] exponents = [-146, -130, -100, -60, -40, -34, -30, -27, -24, -22, -20, -18, -16, -12, -6, 0];
        var rng = new Random(20261129);
        var x = new float[exponents.Length * 256];
        for (int b = 0; b < exponents.Length; b++)
        {
            for (int i = 0; i < 256; i++)
            {
                int q = rng.Next(-(1 << 20), 1 << 20);
                if (rng.Next(50) == 0) q *= 37;
                else if (b % 3 == 0 && i < 128) q = 0;
                x[b * 256 + i] = MathF.ScaleB(q, exponents[b]);
            }
        }
        return x;
    }

    [Theory]
    [InlineData(GgmlType.Q4_0, "f924b95b54a0a209259e6730c7708117c25dcaafb645b5a285a99155ce2df431")]
    [InlineData(GgmlType.Q4_1, "d26eb4691c4ab3770ea5c4fd0bb765f90ada44583bb45a5496341f7f6a5f2bb6")]
    [InlineData(GgmlType.Q5_0, "38aced6053f7d100cb38b1022d95b01222d185cf1ac39ac58343c023a49ae230")]
    [InlineData(GgmlType.Q5_1, "8d766f798bb49f95574475a8029440cb71b3eb28c562ddf1ea09029c2df3f086")]
    [InlineData(GgmlType.Q8_0, "cdf0880676484e148ebe387593a490a31b0f4c2efe472a56b25d115a621a1c8e")]
    [InlineData(GgmlType.Q2_K, "3bc028f291dff58f1162ed213dac47deb5d503f1df04c01c1996f7ab6d1db802")]
    [InlineData(GgmlType.Q3_K, "a5da1cc880b78de142d9fd945036071a4dac3e84029898c232d25c2b66a2b0ec")]
    [InlineData(GgmlType.Q4_K, "1fec9a857f706a10d07480f7a91190fa87ebb15c0d4980793dd4260c0c6b2675")]
    [InlineData(GgmlType.Q5_K, "f52822014c1fe4aba1899425fe2d51130e24e981328dc5351730a48760870642")]
    [InlineData(GgmlType.Q6_K, "17d6f1d510bddcec3d327ad6644fe2816d93b283488b7faea1d91fa0cdabc9eb")]
    public void QuantizedBytesAreLlamaCppsX64BytesOnEveryCpu(GgmlType type, string sha256)
    {
        float[] x = Rows();
        var ours = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
        Quantizer.QuantizeRow(type, x, ours);
        if (GgmlNative.QuantizesLikeX64)
            Assert.Equal(GgmlNative.QuantizeChunk(type, x, 256), ours);
        Assert.Equal(sha256, Convert.ToHexStringLower(SHA256.HashData(ours)));
    }
}

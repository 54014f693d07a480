using QuantLlama.Quants;
using QuantLlama.Quants.IQuants;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// The i-quants against llama.cpp's ggml (LLamaSharp.Backend.Cpu 0.30.0): quantized bytes (ggml_quantize_chunk,
/// llama-quantize's quantizer) and dequantized floats identical; row dots on the same activation bytes identical
/// to the bit on the AVX2 paths (which follow ggml's AVX2 kernels' float steps; x64 only, where the native build
/// is the AVX2 one), and within float-rounding tolerance on the others.
/// </summary>
[Collection("KernelSettings")]
public class IQuantDifferentialTests
{
    /// <summary>The types we quantize to without an importance matrix (IQ2_XXS and IQ2_XS need one: IQ2QuantizerTests).</summary>
    public static TheoryData<GgmlType> Types => new() { GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.IQ3_XXS, GgmlType.IQ3_S, GgmlType.IQ2_S };

    /// <summary>The types we read: the grid i-quants too.</summary>
    public static TheoryData<GgmlType> ReadTypes => new()
    {
        GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ2_S, GgmlType.IQ3_XXS, GgmlType.IQ3_S,
        GgmlType.IQ1_S, GgmlType.IQ1_M, GgmlType.TQ1_0, GgmlType.TQ2_0,
    };

    /// <summary>
    /// ggml_quantize_chunk's blocks for a row: with an importance matrix for the types llama.cpp refuses to make
    /// without one (ggml_quantize_requires_imatrix), uneven weights so that they matter.
    /// </summary>
    internal static byte[] GgmlBlocks(GgmlType type, float[] values, int nPerRow)
        => GgmlNative.QuantizeChunk(type, values, nPerRow, NeedsImportance(type) ? Importance(nPerRow) : default);

    internal static bool NeedsImportance(GgmlType type) => type is GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ1_S;

    /// <summary>An importance matrix of positive weights, one per column.</summary>
    internal static float[] Importance(int columns) => Enumerable.Range(0, columns).Select(j => 0.25f + j * 37 % 11 / 4f).ToArray();

    private static int[] Lengths(GgmlType type) => GgmlTypeInfo.BlockSize(type) == 32 ? [32, 96, 288, 4096] : [256, 768, 4096];

    /// <summary>Named rows: the shared adversarial rows at every length, the k-quant test rows, random rows with ties and outliers.</summary>
    private static IEnumerable<(string Name, float[] Row)> Rows(GgmlType type)
    {
        foreach (int n in Lengths(type))
            foreach (var (name, row) in TestRows.All(n))
                yield return ($"{name} n={n}", row);
        foreach (var (name, row) in KQuantTestRows.All())
            yield return (name, row);
        var rng = new Random(2024 + (int)type);
        for (int r = 0; r < 24; r++)
            yield return ($"random {r}", KQuantTestRows.WithTiesAndOutliers(rng, 4 * 256, r));
    }

    /// <summary>llama.cpp's ARM64 build fuses the multiply-adds of its scale search, so its bytes are compared on x64 only.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void QuantizedBytesAreIdenticalToGgmlQuantizeChunk(GgmlType type)
    {
        Assert.SkipUnless(GgmlNative.QuantizesLikeX64, "llama.cpp's ARM64 build fuses multiply-adds in the scale search");
        foreach (var (name, row) in Rows(type))
        {
            var expected = GgmlNative.QuantizeChunk(type, row, row.Length);
            var actual = new byte[expected.Length];
            Quantizer.QuantizeRow(type, row, actual);
            GgmlDifferentialTests.AssertBytes(expected, actual, $"{type} {name}");
        }
        // Several rows in one call, as the model quantizer makes it.
        var many = TestRows.Random(256 * 6, 77);
        var chunk = GgmlNative.QuantizeChunk(type, many, 512);
        var ours = new byte[chunk.Length];
        Quantizer.QuantizeRow(type, many, ours);
        GgmlDifferentialTests.AssertBytes(chunk, ours, $"{type} 3 rows");
    }

    /// <summary>ggml's blocks of every test row, and random bytes (every index, every 6-bit scale, extreme fp16 scales).</summary>
    [Theory]
    [MemberData(nameof(ReadTypes))]
    public void DequantizedFloatsAreIdenticalToGgml(GgmlType type)
    {
        foreach (var (name, row) in Rows(type))
        {
            var blocks = GgmlBlocks(type, row, row.Length);
            var actual = new float[row.Length];
            Dequantizer.DequantizeRow(type, blocks, actual);
            GgmlDifferentialTests.AssertFloatsIdentical(GgmlNative.Dequantize(type, blocks, row.Length), actual, $"{type} {name}");
        }
        var rng = new Random(5);
        for (int r = 0; r < 20; r++)
        {
            var bytes = RandomBlocks(type, 8 * 256, rng);
            var actual = new float[8 * 256];
            Dequantizer.DequantizeRow(type, bytes, actual);
            GgmlDifferentialTests.AssertFloatsIdentical(GgmlNative.Dequantize(type, bytes, actual.Length), actual, $"{type} random bytes {r}");
        }
    }

    /// <summary>Blocks that hold every codebook entry in turn (random signs and scales): our tables are llama.cpp's.</summary>
    [Theory]
    [InlineData(GgmlType.IQ2_XXS, 256, 4)]
    [InlineData(GgmlType.IQ2_XS, 512, 4)]
    [InlineData(GgmlType.IQ2_S, 1024, 4)]
    [InlineData(GgmlType.IQ3_XXS, 256, 8)]
    [InlineData(GgmlType.IQ3_S, 512, 8)]
    [InlineData(GgmlType.IQ1_S, 2048, 4)]
    [InlineData(GgmlType.IQ1_M, 2048, 4)]
    public void CodebooksAreLlamaCpps(GgmlType type, int entries, int indicesPerBlock)
    {
        var rng = new Random(3);
        int superBlocks = entries / (8 * indicesPerBlock);
        var bytes = RandomBlocks(type, superBlocks * 256, rng);
        int ts = GgmlTypeInfo.TypeSize(type);
        for (int e = 0; e < entries; e++)
        {
            int b = e / (8 * indicesPerBlock), k = e % (8 * indicesPerBlock);
            var block = bytes.AsSpan(b * ts, ts);
            switch (type)
            {
                case GgmlType.IQ2_XXS: block[2 + 8 * (k / 4) + k % 4] = (byte)e; break;
                case GgmlType.IQ3_XXS: block[2 + k] = (byte)e; break;
                case GgmlType.IQ3_S:
                    block[2 + k] = (byte)e;
                    int bit = 1 << (k % 8);
                    block[66 + k / 8] = (byte)(e >= 256 ? block[66 + k / 8] | bit : block[66 + k / 8] & ~bit);
                    break;
                case GgmlType.IQ2_XS:
                    // 9 index bits under the 7 sign bits.
                    BitConverter.TryWriteBytes(block[(2 + 2 * k)..], (ushort)(BitConverter.ToUInt16(block[(2 + 2 * k)..]) & 0xFE00 | e));
                    break;
                case GgmlType.IQ2_S:
                    block[2 + k] = (byte)e;
                    block[66 + k / 4] = (byte)(block[66 + k / 4] & ~(3 << (2 * (k % 4))) | (e >> 8) << (2 * (k % 4)));
                    break;
                case GgmlType.IQ1_S:
                    block[2 + k] = (byte)e;
                    int word = BitConverter.ToUInt16(block[(34 + 2 * (k / 4))..]) & ~(7 << (3 * (k % 4))) | (e >> 8) << (3 * (k % 4));
                    BitConverter.TryWriteBytes(block[(34 + 2 * (k / 4))..], (ushort)word);
                    break;
                case GgmlType.IQ1_M:
                    block[k] = (byte)e;
                    int at = 32 + k / 2, shift = 4 * (k % 2);
                    block[at] = (byte)(block[at] & ~(7 << shift) | (e >> 8) << shift);
                    break;
            }
        }
        var actual = new float[superBlocks * 256];
        Dequantizer.DequantizeRow(type, bytes, actual);
        GgmlDifferentialTests.AssertFloatsIdentical(GgmlNative.Dequantize(type, bytes, actual.Length), actual, $"{type} codebook");
    }

    [Theory]
    [MemberData(nameof(ReadTypes))]
    public void DotProductsMatchGgmlVecDot(GgmlType type)
    {
        var partner = GgmlNative.VecDotType(type);
        Assert.Equal(QuantKernels.Get(type).ActivationType, partner);
        var rng = new Random(11);
        int checkedDots = 0;
        foreach (int n in Lengths(type))
        {
            var weights = TestRows.All(n, seed: 41).Where(r => !r.Name.Contains("beyond fp16"))
                .Select(r => (r.Name, Bytes: GgmlBlocks(type, r.Values, n)))
                .Concat(Enumerable.Range(0, 4).Select(r => ($"random bytes {r}", RandomBlocks(type, n, rng))))
                .Append(("extreme bytes", ExtremeBlocks(type, n)));
            var activations = TestRows.All(n, seed: 31).Take(4).Select(r => (r.Name, Bytes: GgmlNative.FromFloatCpu(partner, r.Values)))
                .Append(("extreme activation", ExtremeActivation(partner, n)))
                .ToList();
            foreach (var (wName, w) in weights)
            {
                foreach (var (aName, a) in activations)
                {
                    float expected = GgmlNative.VecDot(type, n, w, a);
                    double bound = GgmlDifferentialTests.DotTolerance(type, partner, w, a, n);
                    foreach (var path in Kernels.Supported)
                    {
                        float actual = DotOnPath(type, path, w, a, n);
                        string what = $"{type} n={n} w={wName} a={aName} {path}: ours {actual:R}, ggml {expected:R}";
                        if (path is KernelPath.Avx2 or KernelPath.Avx512 && GgmlNative.QuantizesLikeX64)
                            Assert.True(BitConverter.SingleToInt32Bits(actual) == BitConverter.SingleToInt32Bits(expected), what);
                        else
                            Assert.True(Math.Abs(actual - expected) <= bound, $"{what}, tolerance {bound:R}");
                        checkedDots++;
                    }
                }
            }
        }
        Assert.True(checkedDots > 100);
    }

    /// <summary>The AdvSimd row dots keep the scalar reference's float steps: its result to the bit.</summary>
    [Theory]
    [MemberData(nameof(ReadTypes))]
    public void AdvSimdDotsAreTheScalarReferenceToTheBit(GgmlType type)
    {
        Assert.SkipUnless(Kernels.IsSupported(KernelPath.AdvSimd), "needs ARM64 (tests/run-arm64.sh runs it under qemu)");
        var partner = QuantKernels.Get(type).ActivationType;
        var rng = new Random(17);
        foreach (int n in Lengths(type))
        {
            var w = RandomBlocks(type, n, rng);
            byte[] activation = GgmlNative.FromFloatCpu(partner, KQuantTestRows.Gaussian(rng, n, 1f));
            foreach (var weights in new[] { w, ExtremeBlocks(type, n) })
            {
                float scalar = DotOnPath(type, KernelPath.Scalar, weights, activation, n);
                float simd = DotOnPath(type, KernelPath.AdvSimd, weights, activation, n);
                Assert.True(BitConverter.SingleToInt32Bits(scalar) == BitConverter.SingleToInt32Bits(simd), $"{type} n={n}: AdvSimd {simd:R}, scalar {scalar:R}");
            }
        }
    }

    internal static unsafe float DotOnPath(GgmlType type, KernelPath path, byte[] w, byte[] a, int n)
    {
        fixed (byte* wp = w)
        fixed (byte* ap = a)
        {
            return (type, path) switch
            {
                (GgmlType.IQ4_NL, KernelPath.Avx2 or KernelPath.Avx512) => IQ4_NL.DotAvx2(wp, ap, n),
                (GgmlType.IQ4_NL, KernelPath.AdvSimd) => IQ4_NL.DotAdvSimd(wp, ap, n),
                (GgmlType.IQ4_NL, _) => IQ4_NL.DotScalar(wp, ap, n),
                (GgmlType.IQ4_XS, KernelPath.Avx2 or KernelPath.Avx512) => IQ4_XS.DotAvx2(wp, ap, n),
                (GgmlType.IQ4_XS, KernelPath.AdvSimd) => IQ4_XS.DotAdvSimd(wp, ap, n),
                (GgmlType.IQ4_XS, _) => IQ4_XS.DotScalar(wp, ap, n),
                (GgmlType.IQ2_XXS, KernelPath.Avx2 or KernelPath.Avx512) => IQ2_XXS.DotAvx2(wp, ap, n),
                (GgmlType.IQ2_XXS, KernelPath.AdvSimd) => IQ2_XXS.DotAdvSimd(wp, ap, n),
                (GgmlType.IQ2_XXS, _) => IQ2_XXS.DotScalar(wp, ap, n),
                (GgmlType.IQ3_XXS, KernelPath.Avx2 or KernelPath.Avx512) => IQ3_XXS.DotAvx2(wp, ap, n),
                (GgmlType.IQ3_XXS, KernelPath.AdvSimd) => IQ3_XXS.DotAdvSimd(wp, ap, n),
                (GgmlType.IQ3_XXS, _) => IQ3_XXS.DotScalar(wp, ap, n),
                (GgmlType.IQ3_S, KernelPath.Avx2 or KernelPath.Avx512) => IQ3_S.DotAvx2(wp, ap, n),
                (GgmlType.IQ3_S, KernelPath.AdvSimd) => IQ3_S.DotAdvSimd(wp, ap, n),
                (GgmlType.IQ3_S, _) => IQ3_S.DotScalar(wp, ap, n),
                (GgmlType.IQ2_XS, KernelPath.Avx2 or KernelPath.Avx512) => IQ2_XS.DotAvx2(wp, ap, n),
                (GgmlType.IQ2_XS, KernelPath.AdvSimd) => IQ2_XS.DotAdvSimd(wp, ap, n),
                (GgmlType.IQ2_XS, _) => IQ2_XS.DotScalar(wp, ap, n),
                (GgmlType.IQ2_S, KernelPath.Avx2 or KernelPath.Avx512) => IQ2_S.DotAvx2(wp, ap, n),
                (GgmlType.IQ2_S, KernelPath.AdvSimd) => IQ2_S.DotAdvSimd(wp, ap, n),
                (GgmlType.IQ2_S, _) => IQ2_S.DotScalar(wp, ap, n),
                (GgmlType.IQ1_S, KernelPath.Avx2 or KernelPath.Avx512) => IQ1_S.DotAvx2(wp, ap, n),
                (GgmlType.IQ1_S, KernelPath.AdvSimd) => IQ1_S.DotAdvSimd(wp, ap, n),
                (GgmlType.IQ1_S, _) => IQ1_S.DotScalar(wp, ap, n),
                (GgmlType.IQ1_M, KernelPath.Avx2 or KernelPath.Avx512) => IQ1_M.DotAvx2(wp, ap, n),
                (GgmlType.IQ1_M, KernelPath.AdvSimd) => IQ1_M.DotAdvSimd(wp, ap, n),
                (GgmlType.IQ1_M, _) => IQ1_M.DotScalar(wp, ap, n),
                (GgmlType.TQ1_0, KernelPath.Avx2 or KernelPath.Avx512) => TQ1_0.DotAvx2(wp, ap, n),
                (GgmlType.TQ1_0, KernelPath.AdvSimd) => TQ1_0.DotAdvSimd(wp, ap, n),
                (GgmlType.TQ1_0, _) => TQ1_0.DotScalar(wp, ap, n),
                (GgmlType.TQ2_0, KernelPath.Avx2 or KernelPath.Avx512) => TQ2_0.DotAvx2(wp, ap, n),
                (GgmlType.TQ2_0, KernelPath.AdvSimd) => TQ2_0.DotAdvSimd(wp, ap, n),
                (GgmlType.TQ2_0, _) => TQ2_0.DotScalar(wp, ap, n),
                _ => throw new NotSupportedException($"{type} on {path}"),
            };
        }
    }

    /// <summary>Random bytes with finite fp16 scales of either sign (|d| &lt; 2).</summary>
    internal static byte[] RandomBlocks(GgmlType type, int n, Random rng)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, n)];
        rng.NextBytes(bytes);
        int ts = GgmlTypeInfo.TypeSize(type);
        // The scale's high byte: IQ1_M keeps its top nibble, TQ1_0 and TQ2_0 their fp16 scale, at the end of the block.
        int high = type is GgmlType.IQ1_M or GgmlType.TQ1_0 or GgmlType.TQ2_0 ? ts - 1 : 1;
        for (int b = 0; b < bytes.Length / ts; b++) bytes[b * ts + high] &= 0xBF;
        return bytes;
    }

    /// <summary>Writes IQ1_M's fp16 scale into the top nibbles of its four 16-bit scale words.</summary>
    private static void SetIQ1MScale(Span<byte> block, Half scale)
    {
        ushort bits = BitConverter.HalfToUInt16Bits(scale);
        for (int w = 0; w < 4; w++)
        {
            var word = block[(48 + 2 * w)..];
            BitConverter.TryWriteBytes(word, (ushort)(BitConverter.ToUInt16(word) & 0x0FFF | (bits >> (4 * w) & 0xF) << 12));
        }
    }

    /// <summary>Every index the largest level (15) or smallest (0) in turn, the largest finite scale, the extreme 6-bit scales.</summary>
    internal static byte[] ExtremeBlocks(GgmlType type, int n)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(type, n)];
        int ts = GgmlTypeInfo.TypeSize(type);
        for (int b = 0; b < bytes.Length / ts; b++)
        {
            var block = bytes.AsSpan(b * ts, ts);
            BitConverter.TryWriteBytes(block, b % 2 == 0 ? (Half)1.0 : (Half)(-0.0078125));
            int indexStart = type switch { GgmlType.IQ4_XS => 8, GgmlType.IQ1_M or GgmlType.TQ1_0 or GgmlType.TQ2_0 => 0, _ => 2 };
            block[indexStart..].Fill(b % 3 == 0 ? (byte)0xFF : b % 3 == 1 ? (byte)0x00 : (byte)0x0F);
            if (type == GgmlType.IQ1_M) SetIQ1MScale(block, b % 2 == 0 ? (Half)1.0 : (Half)(-0.0078125));
            if (type is GgmlType.TQ1_0 or GgmlType.TQ2_0) BitConverter.TryWriteBytes(block[(ts - 2)..], b % 2 == 0 ? (Half)1.0 : (Half)(-0.0078125));
            if (type == GgmlType.IQ4_XS)
            {
                // Scales 0 and 63 (offset: -32 and 31) alternating.
                BitConverter.TryWriteBytes(block[2..], (ushort)(b % 2 == 0 ? 0xCCCC : 0x3333));
                block[4..8].Fill(b % 2 == 0 ? (byte)0xF0 : (byte)0x0F);
            }
        }
        return bytes;
    }

    /// <summary>Activation quants all ±127 (largest products), scale 1.</summary>
    private static byte[] ExtremeActivation(GgmlType partner, int n)
    {
        var bytes = new byte[GgmlTypeInfo.RowBytes(partner, n)];
        if (partner == GgmlType.Q8_0)
        {
            for (int b = 0; b < n / 32; b++)
            {
                BitConverter.TryWriteBytes(bytes.AsSpan(b * 34), (Half)1.0);
                for (int j = 0; j < 32; j++) bytes[b * 34 + 2 + j] = unchecked((byte)(sbyte)((j + b) % 2 == 0 ? 127 : -127));
            }
            return bytes;
        }
        int bb = GgmlTypeInfo.TypeSize(GgmlType.Q8_K);
        for (int b = 0; b < n / 256; b++)
        {
            BitConverter.TryWriteBytes(bytes.AsSpan(b * bb), 1.0f);
            for (int j = 0; j < 256; j++) bytes[b * bb + 4 + j] = unchecked((byte)(sbyte)((j / 3 + b) % 2 == 0 ? 127 : -127));
            // The sums of each 16 quants, which the IQ1 and TQ row dots read.
            for (int g = 0; g < 16; g++)
            {
                int sum = 0;
                for (int j = 16 * g; j < 16 * g + 16; j++) sum += (sbyte)bytes[b * bb + 4 + j];
                BitConverter.TryWriteBytes(bytes.AsSpan(b * bb + 4 + 256 + 2 * g), (short)sum);
            }
        }
        return bytes;
    }
}

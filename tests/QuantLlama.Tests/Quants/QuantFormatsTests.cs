using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// The list of formats (<see cref="QuantFormats"/>) against ggml's geometry and against what the quantizer,
/// dequantizer and matrix kernels are known to handle.
/// </summary>
public class QuantFormatsTests
{
    /// <summary>ggml's (block size, bytes per block) for every type it defines (ggml.c's type_traits).</summary>
    private static readonly (GgmlType Type, int BlockSize, int BlockBytes)[] Geometry =
    [
        (GgmlType.F32, 1, 4), (GgmlType.F16, 1, 2), (GgmlType.BF16, 1, 2),
        (GgmlType.Q4_0, 32, 18), (GgmlType.Q4_1, 32, 20), (GgmlType.Q5_0, 32, 22), (GgmlType.Q5_1, 32, 24),
        (GgmlType.Q8_0, 32, 34), (GgmlType.Q8_1, 32, 36),
        (GgmlType.Q2_K, 256, 84), (GgmlType.Q3_K, 256, 110), (GgmlType.Q4_K, 256, 144), (GgmlType.Q5_K, 256, 176),
        (GgmlType.Q6_K, 256, 210), (GgmlType.Q8_K, 256, 292),
        (GgmlType.IQ2_XXS, 256, 66), (GgmlType.IQ2_XS, 256, 74), (GgmlType.IQ3_XXS, 256, 98), (GgmlType.IQ1_S, 256, 50),
        (GgmlType.IQ4_NL, 32, 18), (GgmlType.IQ3_S, 256, 110), (GgmlType.IQ2_S, 256, 82), (GgmlType.IQ4_XS, 256, 136),
        (GgmlType.I8, 1, 1), (GgmlType.I16, 1, 2), (GgmlType.I32, 1, 4), (GgmlType.I64, 1, 8), (GgmlType.F64, 1, 8),
        (GgmlType.IQ1_M, 256, 56), (GgmlType.TQ1_0, 256, 54), (GgmlType.TQ2_0, 256, 66), (GgmlType.MXFP4, 32, 17),
    ];

    public static TheoryData<GgmlType, int, int> GgmlGeometry()
    {
        var data = new TheoryData<GgmlType, int, int>();
        foreach (var (type, blockSize, blockBytes) in Geometry) data.Add(type, blockSize, blockBytes);
        return data;
    }

    [Theory]
    [MemberData(nameof(GgmlGeometry))]
    public void EveryTypeHasGgmlsGeometry(GgmlType type, int blockSize, int blockBytes)
    {
        Assert.True(GgmlTypeInfo.IsKnown((uint)type));
        Assert.Equal(blockSize, GgmlTypeInfo.BlockSize(type));
        Assert.Equal(blockBytes, GgmlTypeInfo.TypeSize(type));
    }

    [Fact]
    public void TheListHoldsEachTypeOnceAndNothingElse()
    {
        var listed = QuantFormats.All.Select(f => f.Type).ToArray();
        Assert.Equal(listed.Distinct().Count(), listed.Length);
        Assert.Equal(Geometry.Select(g => g.Type).Order(), listed.Order());
        Assert.False(GgmlTypeInfo.IsKnown(4)); // a number ggml removed
        Assert.False(GgmlTypeInfo.IsKnown(40));
    }

    [Fact]
    public void WhatEachPartHandles()
    {
        GgmlType[] quantizable = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0,
            GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q8_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K,
            GgmlType.Q6_K, GgmlType.Q8_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.IQ3_XXS, GgmlType.IQ3_S, GgmlType.IQ2_S,
            GgmlType.IQ1_M];
        GgmlType[] onlyWithImportance = [GgmlType.IQ2_XXS, GgmlType.IQ2_XS, GgmlType.IQ1_S];
        GgmlType[] readOnly = [.. onlyWithImportance, GgmlType.TQ1_0, GgmlType.TQ2_0];
        foreach (var type in Enum.GetValues<GgmlType>())
        {
            bool quantizes = quantizable.Contains(type), reads = quantizes || readOnly.Contains(type);
            Assert.Equal(quantizes, Quantizer.IsSupported(type));
            if (onlyWithImportance.Contains(type)) Assert.True(Quantizer.IsSupportedWithImportance(type));
            Assert.Equal(reads, Dequantizer.IsSupported(type));
            // Every readable type has matrix kernels except Q8_K, which ggml uses only as an activation.
            Assert.Equal(reads && type != GgmlType.Q8_K, QuantKernels.IsSupported(type));
            if (QuantKernels.IsSupported(type)) Assert.Equal(type, QuantKernels.Get(type).WeightType);
        }
        Assert.Throws<NotSupportedException>(() => Quantizer.QuantizeRow(GgmlType.TQ2_0, new float[256], new byte[66]));
        Assert.Throws<ArgumentException>(() => Quantizer.QuantizeRow(GgmlType.IQ2_XXS, new float[256], new byte[66]));
        Assert.Throws<NotSupportedException>(() => Dequantizer.DequantizeRow(GgmlType.MXFP4, new byte[17], new float[32]));
    }
}

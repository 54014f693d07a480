using QuantLlama.Tensors;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// Packed 8-row tiles that run in place of a type's AVX2 tile where the CPU has more: 512-bit registers (two blocks
/// per step) on the AVX-512 path, AVX-VNNI's byte dot on the AVX2 path. Each does per row exactly the AVX2 row dot's
/// arithmetic (that row dot serves both paths), so single rows, AVX2 tiles and these give the same bits. Q8_0 has
/// none: its products follow ggml's order (lanes of 4-value groups), which a pair of blocks per step does not.
/// </summary>
internal static unsafe class PathTiles
{
    /// <summary>
    /// <paramref name="kernel"/> with its packed tile (and packer, where the layout differs) replaced by the
    /// current path's faster one where the type and CPU have it; otherwise <paramref name="kernel"/> itself.
    /// </summary>
    internal static TypeKernel ForCurrentPath(in TypeKernel kernel)
    {
        if (kernel.Dot8PackedAvx2 == null) return kernel;
        if (Kernels.UseAvx512 && Q8PairTiles.IsSupported)
        {
            return kernel.WeightType switch
            {
                GgmlType.Q4_0 => kernel with { Dot8PackedAvx2 = &Q8PairTiles.Dot8PackedQ4_0, PackActivationTile = &Q8PairTiles.PackActivationTile },
                GgmlType.Q4_K => kernel with { Dot8PackedAvx2 = &Q4KPairTiles.Dot8Packed, PackActivationTile = &Q4KPairTiles.PackActivationTile },
                _ => kernel,
            };
        }
        if (Kernels.UseAvx2 && Q8VnniTiles.IsSupported && kernel.WeightType == GgmlType.Q4_0)
            return kernel with { Dot8PackedAvx2 = &Q8VnniTiles.Dot8PackedQ4_0 };
        return kernel;
    }
}

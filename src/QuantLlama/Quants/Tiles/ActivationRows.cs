namespace QuantLlama.Quants.Tiles;

/// <summary>
/// A tile's activation row count (1 to 8) as a type, so that a repacked kernel generic over it
/// (<see cref="Q4_0RowGroups.Dot{TRows}"/>, <see cref="Q4KRowGroups.Dot{TRows}"/>) is compiled once per count with
/// only that many rows' accumulators.
/// </summary>
internal interface IActivationRows
{
    static abstract int Count { get; }
}

/// <summary>A repacked kernel compiled per activation row count (<see cref="IActivationRows"/>).</summary>
internal unsafe interface IRowGroupKernel
{
    /// <summary>One group of 8 weight rows against a tile of <typeparamref name="TRows"/> activation rows.</summary>
    static abstract void Dot<TRows>(byte* group, byte* tile, int n, float* y, nint yStride) where TRows : struct, IActivationRows;
}

/// <summary>The row counts of <see cref="IActivationRows"/>, and the dispatch of a count to its compiled kernel.</summary>
internal static unsafe class ActivationRows
{
    /// <summary><typeparamref name="TKernel"/>'s kernel for <paramref name="activationRows"/> (1 to 8) rows.</summary>
    internal static void Dot<TKernel>(byte* group, byte* tile, int n, float* y, nint yStride, int activationRows) where TKernel : IRowGroupKernel
    {
        switch (activationRows)
        {
            case 1: TKernel.Dot<One>(group, tile, n, y, yStride); break;
            case 2: TKernel.Dot<Two>(group, tile, n, y, yStride); break;
            case 3: TKernel.Dot<Three>(group, tile, n, y, yStride); break;
            case 4: TKernel.Dot<Four>(group, tile, n, y, yStride); break;
            case 5: TKernel.Dot<Five>(group, tile, n, y, yStride); break;
            case 6: TKernel.Dot<Six>(group, tile, n, y, yStride); break;
            case 7: TKernel.Dot<Seven>(group, tile, n, y, yStride); break;
            case 8: TKernel.Dot<Eight>(group, tile, n, y, yStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(activationRows));
        }
    }

    internal struct One : IActivationRows { public static int Count => 1; }
    internal struct Two : IActivationRows { public static int Count => 2; }
    internal struct Three : IActivationRows { public static int Count => 3; }
    internal struct Four : IActivationRows { public static int Count => 4; }
    internal struct Five : IActivationRows { public static int Count => 5; }
    internal struct Six : IActivationRows { public static int Count => 6; }
    internal struct Seven : IActivationRows { public static int Count => 7; }
    internal struct Eight : IActivationRows { public static int Count => 8; }
}

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

/// <summary>The row counts of <see cref="IActivationRows"/>.</summary>
internal static class ActivationRows
{
    internal struct One : IActivationRows { public static int Count => 1; }
    internal struct Two : IActivationRows { public static int Count => 2; }
    internal struct Three : IActivationRows { public static int Count => 3; }
    internal struct Four : IActivationRows { public static int Count => 4; }
    internal struct Five : IActivationRows { public static int Count => 5; }
    internal struct Six : IActivationRows { public static int Count => 6; }
    internal struct Seven : IActivationRows { public static int Count => 7; }
    internal struct Eight : IActivationRows { public static int Count => 8; }
}

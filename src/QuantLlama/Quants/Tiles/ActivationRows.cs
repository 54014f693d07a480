using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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

    /// <summary>
    /// Σ over g = 0..7 of <paramref name="w0"/>..<paramref name="w7"/> (unsigned bytes) times the 8 activation bytes at
    /// a + 8g broadcast to every 64-bit lane, by `vpmaddubsw`, added in int16: the integer core of the Q4_0 and Q4_K
    /// row-group kernels, whose tiles hold each row's 8-byte groups in order. The caller keeps the sums within int16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<short> GroupSums(Vector512<byte> w0, Vector512<byte> w1, Vector512<byte> w2, Vector512<byte> w3,
        Vector512<byte> w4, Vector512<byte> w5, Vector512<byte> w6, Vector512<byte> w7, byte* a)
    {
        var s = Avx512BW.Add(
            Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(w0, Group(a)), Avx512BW.MultiplyAddAdjacent(w1, Group(a + 8))),
            Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(w2, Group(a + 16)), Avx512BW.MultiplyAddAdjacent(w3, Group(a + 24))));
        return Avx512BW.Add(s, Avx512BW.Add(
            Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(w4, Group(a + 32)), Avx512BW.MultiplyAddAdjacent(w5, Group(a + 40))),
            Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(w6, Group(a + 48)), Avx512BW.MultiplyAddAdjacent(w7, Group(a + 56)))));
    }

    /// <summary>8 activation bytes (one group) in every 64-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Group(byte* a) => Vector512.Create(*(long*)a).AsSByte();

    internal struct One : IActivationRows { public static int Count => 1; }
    internal struct Two : IActivationRows { public static int Count => 2; }
    internal struct Three : IActivationRows { public static int Count => 3; }
    internal struct Four : IActivationRows { public static int Count => 4; }
    internal struct Five : IActivationRows { public static int Count => 5; }
    internal struct Six : IActivationRows { public static int Count => 6; }
    internal struct Seven : IActivationRows { public static int Count => 7; }
    internal struct Eight : IActivationRows { public static int Count => 8; }
}

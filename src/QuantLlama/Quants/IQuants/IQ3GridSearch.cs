using System.Runtime.InteropServices;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// The search tables ggml's IQ3 quantizers use (iq3xs_init_impl), built once on first use from the codebooks in
/// <see cref="IQGrids"/>: each codebook entry as four odd levels 2l+1 (l in 0..7), a map from every 4-level point
/// (3 bits each, 4096 points) to its entry, and for each point off the codebook the entries nearest to it (all those
/// at the nearest <c>wanted</c> distances: 2 for the 256-entry codebook, 3 for the 512-entry one).
/// </summary>
internal sealed class IQ3GridSearch
{
    private const int Points = 4096;

    /// <summary>[entries] the entry's four levels 2l+1, one per byte.</summary>
    public readonly uint[] Grid;

    /// <summary>[4096] the entry at a point, or -(offset + 1) into <see cref="Neighbours"/> for a point off the codebook.</summary>
    public readonly int[] Map;

    /// <summary>Per point off the codebook: a count, then that many entry numbers.</summary>
    public readonly ushort[] Neighbours;

    private static readonly Lazy<IQ3GridSearch> Xxs = new(() => new IQ3GridSearch(IQGrids.IQ3XXS, [4, 12, 20, 28, 36, 44, 52, 62], 2));
    private static readonly Lazy<IQ3GridSearch> S = new(() => new IQ3GridSearch(IQGrids.IQ3S, [1, 3, 5, 7, 9, 11, 13, 15], 3));

    /// <summary>IQ3_XXS's 256-entry codebook.</summary>
    public static IQ3GridSearch ForXxs => Xxs.Value;

    /// <summary>IQ3_S's 512-entry codebook.</summary>
    public static IQ3GridSearch ForS => S.Value;

    private IQ3GridSearch(ReadOnlySpan<uint> codebook, int[] magnitudes, int wanted)
    {
        var levels = CodebookNeighbours.LevelsOf(MemoryMarshal.AsBytes(codebook), 4, magnitudes);
        Grid = MemoryMarshal.Cast<byte, uint>(CodebookNeighbours.OddLevels(levels)).ToArray();
        (Map, Neighbours) = CodebookNeighbours.Build(levels, 4, 3, Points, wanted);
    }

    /// <summary>The level (0..7) of an entry's value i.</summary>
    public int Level(int entry, int i) => (int)(((Grid[entry] >> (8 * i)) & 0xFF) - 1) / 2;

    /// <summary>iq3_find_best_neighbour for the four values of an off-codebook point's group (see <see cref="CodebookNeighbours.BestNeighbour"/>).</summary>
    public unsafe int BestNeighbour(int offset, float* values, float* weights, float scale, sbyte* levels)
        => CodebookNeighbours.BestNeighbour(Neighbours, offset, MemoryMarshal.AsBytes(Grid.AsSpan()), 4, values, weights, scale, levels);
}

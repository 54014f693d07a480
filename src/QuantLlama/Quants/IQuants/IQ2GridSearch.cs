using System.Runtime.InteropServices;

namespace QuantLlama.Quants.IQuants;

/// <summary>
/// The search tables ggml's IQ2 and IQ1 quantizers use (iq2xs_init_impl), built once on first use from the codebooks
/// in <see cref="IQGrids"/>: each codebook entry as eight odd levels 2l+1 (l in 0..2), a map from every 8-level point
/// (2 bits each) to its entry, and for each point off the codebook the entries nearest to it (all those at the nearest
/// <c>wanted</c> distances: 2 for IQ2_XXS and IQ2_XS, 1 for IQ2_S, 3 for IQ1_S/IQ1_M).
/// </summary>
internal sealed class IQ2GridSearch
{
    /// <summary>ggml's kmap_size: every point whose levels are all 0..2 (the largest is 0xAAAA) has a number below it.</summary>
    public const int Points = 43692;

    /// <summary>[entries] the entry's eight levels 2l+1, one per byte (ggml's kgrid_q2xs).</summary>
    public readonly ulong[] Grid;

    /// <summary>[<see cref="Points"/>] the entry at a point, or -(offset + 1) into <see cref="Neighbours"/> for a point off the codebook.</summary>
    public readonly int[] Map;

    /// <summary>Per point off the codebook: a count, then that many entry numbers.</summary>
    public readonly ushort[] Neighbours;

    /// <summary>The dequantized magnitudes of the IQ2 codebooks' levels 0, 1, 2.</summary>
    private static readonly int[] Magnitudes = [0x08, 0x19, 0x2B];

    private static readonly Lazy<IQ2GridSearch> Xxs = new(() => new IQ2GridSearch(IQGrids.IQ2XXS, Magnitudes, 2));
    private static readonly Lazy<IQ2GridSearch> Xs = new(() => new IQ2GridSearch(IQGrids.IQ2XS, Magnitudes, 2));
    private static readonly Lazy<IQ2GridSearch> S = new(() => new IQ2GridSearch(IQGrids.IQ2S, Magnitudes, 1));
    private static readonly Lazy<IQ2GridSearch> IQ1 = new(() => new IQ2GridSearch(IQGrids.IQ1S, [0xFF, 0x00, 0x01], 3));

    /// <summary>IQ2_XXS's 256-entry codebook.</summary>
    public static IQ2GridSearch ForXxs => Xxs.Value;

    /// <summary>IQ2_XS's 512-entry codebook.</summary>
    public static IQ2GridSearch ForXs => Xs.Value;

    /// <summary>IQ2_S's 1024-entry codebook.</summary>
    public static IQ2GridSearch ForS => S.Value;

    /// <summary>IQ1_S's and IQ1_M's 2048-entry codebook (values -1, 0, 1 as levels 0, 1, 2).</summary>
    public static IQ2GridSearch ForIQ1 => IQ1.Value;

    private IQ2GridSearch(ReadOnlySpan<ulong> codebook, int[] values, int wanted)
    {
        var levels = CodebookNeighbours.LevelsOf(MemoryMarshal.AsBytes(codebook), 8, values);
        Grid = MemoryMarshal.Cast<byte, ulong>(CodebookNeighbours.OddLevels(levels)).ToArray();
        (Map, Neighbours) = CodebookNeighbours.Build(levels, 8, 2, Points, wanted);
    }

    /// <summary>The level (0..2) of an entry's value i.</summary>
    public int Level(int entry, int i) => (int)(((Grid[entry] >> (8 * i)) & 0xFF) - 1) / 2;

    /// <summary>iq2_find_best_neighbour for the eight values of an off-codebook point's group (see <see cref="CodebookNeighbours.BestNeighbour"/>).</summary>
    public unsafe int BestNeighbour(int offset, float* values, float* weights, float scale, sbyte* levels)
        => CodebookNeighbours.BestNeighbour(Neighbours, offset, MemoryMarshal.AsBytes(Grid.AsSpan()), 8, values, weights, scale, levels);
}

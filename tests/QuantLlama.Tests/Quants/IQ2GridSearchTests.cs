using QuantLlama.Quants.IQuants;

namespace QuantLlama.Tests.Quants;

/// <summary>
/// IQ2GridSearch's tables against ggml's iq2xs_init_impl: FNV-1a hashes (bytes of each value, little-endian) of the
/// grid, the map (as uint32) and the neighbour lists, taken from ggml's function compiled from its source.
/// </summary>
public class IQ2GridSearchTests
{
    public static TheoryData<string, ulong, ulong, ulong, int> Codebooks => new()
    {
        { "XXS", 0x2e7a6071bba80155, 0x1731fe366b540b17, 0xaede04be523a70db, 417400 },
        { "XS", 0x7c14724affc4cc7d, 0x02d8268545d85d31, 0x067c3fced598c48f, 551722 },
        { "S", 0x785c45bdf95d1b49, 0xdfe9700ba57af86b, 0x13341cb291acee60, 209100 },
        { "IQ1", 0x5f11afdd44abc217, 0x5372b7c5f4c12b2f, 0x138306afaae33496, 1375339 },
    };

    [Theory]
    [MemberData(nameof(Codebooks))]
    public void TablesMatchGgmls(string codebook, ulong gridHash, ulong mapHash, ulong neighboursHash, int neighboursLength)
    {
        var search = codebook switch
        {
            "XXS" => IQ2GridSearch.ForXxs,
            "XS" => IQ2GridSearch.ForXs,
            "S" => IQ2GridSearch.ForS,
            _ => IQ2GridSearch.ForIQ1,
        };
        ulong h = Basis;
        foreach (ulong entry in search.Grid) h = Fnv(h, entry);
        Assert.Equal(gridHash, h);
        h = Basis;
        foreach (int m in search.Map) h = Fnv(h, (uint)m);
        Assert.Equal(mapHash, h);
        h = Basis;
        foreach (ushort n in search.Neighbours) h = Fnv(h, n);
        Assert.Equal(neighboursHash, h);
        Assert.Equal(neighboursLength, search.Neighbours.Length);
        Assert.Equal(IQ2GridSearch.Points, search.Map.Length);
    }

    [Fact]
    public void EveryEntryMapsToItself()
    {
        var search = IQ2GridSearch.ForXxs;
        for (int e = 0; e < search.Grid.Length; e++)
        {
            int point = 0;
            for (int i = 0; i < 8; i++) point |= search.Level(e, i) << (2 * i);
            Assert.Equal(e, search.Map[point]);
        }
    }

    private const ulong Basis = 14695981039346656037;

    private static ulong Fnv(ulong h, ulong value)
    {
        for (int i = 0; i < 8; i++)
        {
            h ^= (value >> (8 * i)) & 0xFF;
            h *= 1099511628211;
        }
        return h;
    }
}

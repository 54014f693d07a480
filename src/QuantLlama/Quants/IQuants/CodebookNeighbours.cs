namespace QuantLlama.Quants.IQuants;

/// <summary>
/// The point map and neighbour lists ggml's grid quantizers search (iq2xs_init_impl, iq3xs_init_impl). A point is a
/// group of levels packed <c>bits</c> to a level, lowest value first; a codebook entry is such a group. Every point on
/// the codebook maps to its entry; every other point to -(offset + 1) into the neighbour lists, where a count is
/// followed by the entries at the nearest <c>wanted</c> squared distances, by distance then entry (ggml's qsort order).
/// </summary>
internal static class CodebookNeighbours
{
    /// <param name="levels">[entries × width] each entry's levels.</param>
    /// <param name="width">Values per entry (4 or 8).</param>
    /// <param name="bits">Bits per level in a point number.</param>
    /// <param name="points">How many point numbers the map covers.</param>
    /// <param name="wanted">How many of the nearest distinct distances a point's neighbours span.</param>
    public static (int[] Map, ushort[] Neighbours) Build(byte[] levels, int width, int bits, int points, int wanted)
    {
        int size = levels.Length / width, mask = (1 << bits) - 1;
        var map = new int[points];
        Array.Fill(map, -1);
        for (int e = 0; e < size; e++) map[PointOf(levels.AsSpan(e * width, width), bits)] = e;

        var neighbours = new List<ushort>();
        var distances = new int[size];
        Span<int> nearest = stackalloc int[wanted]; // the smallest distinct distances, ascending
        Span<byte> point = stackalloc byte[width];
        for (int p = 0; p < points; p++)
        {
            if (map[p] >= 0) continue;
            for (int i = 0; i < width; i++) point[i] = (byte)((p >> (bits * i)) & mask);
            int found = 0;
            for (int e = 0; e < size; e++)
            {
                int d2 = 0;
                for (int i = 0; i < width; i++)
                {
                    int diff = levels[e * width + i] - point[i];
                    d2 += diff * diff;
                }
                distances[e] = d2;
                found = Insert(nearest, found, d2);
            }
            int countAt = neighbours.Count;
            map[p] = -(countAt + 1);
            neighbours.Add(0);
            for (int k = 0; k < found; k++)
                for (int e = 0; e < size; e++)
                    if (distances[e] == nearest[k]) neighbours.Add((ushort)e);
            neighbours[countAt] = (ushort)(neighbours.Count - countAt - 1);
        }
        return (map, neighbours.ToArray());
    }

    /// <summary>
    /// A codebook's entries as levels [entries × width]: each value's index among <paramref name="values"/>
    /// (<paramref name="grid"/> holds each entry's values as bytes, lowest first, as IQGrids stores them).
    /// </summary>
    public static byte[] LevelsOf(ReadOnlySpan<byte> grid, int width, ReadOnlySpan<int> values)
    {
        var levels = new byte[grid.Length];
        for (int k = 0; k < grid.Length; k++)
        {
            int l = values.IndexOf(grid[k]);
            if (l < 0) throw new InvalidOperationException($"codebook entry {k / width} has a value outside the levels");
            levels[k] = (byte)l;
        }
        return levels;
    }

    /// <summary>ggml's search grid: each level l as the odd number 2l + 1, one byte per value.</summary>
    public static byte[] OddLevels(byte[] levels) => levels.Select(l => (byte)(2 * l + 1)).ToArray();

    /// <summary>
    /// iq2_find_best_neighbour / iq3_find_best_neighbour: among the neighbours listed at <paramref name="offset"/>,
    /// the entry whose odd levels (<paramref name="grid"/>, <paramref name="width"/> bytes per entry) at
    /// <paramref name="scale"/> best fit the values by weighted squared error; its levels go to <paramref name="levels"/>.
    /// </summary>
    public static unsafe int BestNeighbour(ReadOnlySpan<ushort> neighbours, int offset, ReadOnlySpan<byte> grid, int width,
        float* values, float* weights, float scale, sbyte* levels)
    {
        int count = neighbours[offset];
        float best = float.MaxValue;
        int bestEntry = -1;
        for (int j = 1; j <= count; j++)
        {
            int entry = neighbours[offset + j];
            var q = grid.Slice(entry * width, width);
            float d2 = 0;
            for (int i = 0; i < width; i++)
            {
                float diff = scale * q[i] - values[i];
                d2 += weights[i] * diff * diff;
            }
            if (d2 < best)
            {
                best = d2;
                bestEntry = entry;
            }
        }
        for (int i = 0; i < width; i++) levels[i] = (sbyte)((grid[bestEntry * width + i] - 1) / 2);
        return bestEntry;
    }

    /// <summary>The point number of a group of levels.</summary>
    public static int PointOf(ReadOnlySpan<byte> levels, int bits)
    {
        int point = 0;
        for (int i = 0; i < levels.Length; i++) point |= levels[i] << (bits * i);
        return point;
    }

    /// <summary>Keeps <paramref name="nearest"/> the smallest distinct distances seen (of <paramref name="found"/> so far).</summary>
    private static int Insert(Span<int> nearest, int found, int d2)
    {
        int at = found;
        while (at > 0 && nearest[at - 1] > d2) at--;
        if (at > 0 && nearest[at - 1] == d2) return found;
        if (at == nearest.Length) return found;
        int last = Math.Min(found, nearest.Length - 1);
        for (int k = last; k > at; k--) nearest[k] = nearest[k - 1];
        nearest[at] = d2;
        return Math.Min(found + 1, nearest.Length);
    }
}

namespace QuantLlama.Sampling;

public enum SamplingKind
{
    ArgMax,
    All,
    TopK,
    TopP,
    TopKThenTopP,
}

/// <summary>How the next token is chosen (candle's <c>Sampling</c>).</summary>
public sealed record SamplingStrategy(SamplingKind Kind, double Temperature = 0, int TopK = 0, double TopP = 1)
{
    /// <summary>The choice candle's quantized example makes from --temperature, --top-k and --top-p.</summary>
    public static SamplingStrategy FromArguments(double temperature, int? topK, double? topP)
    {
        if (temperature <= 0) return new SamplingStrategy(SamplingKind.ArgMax);
        return (topK, topP) switch
        {
            (null, null) => new SamplingStrategy(SamplingKind.All, temperature),
            (int k, null) => new SamplingStrategy(SamplingKind.TopK, temperature, TopK: k),
            (null, double p) => new SamplingStrategy(SamplingKind.TopP, temperature, TopP: p),
            (int k, double p) => new SamplingStrategy(SamplingKind.TopKThenTopP, temperature, k, p),
        };
    }
}

/// <summary>
/// Chooses the next token from logits as candle's LogitsProcessor does: argmax, or a draw from softmax(logits / T)
/// over all tokens, the top k, the top-p nucleus (sorted descending, tokens kept while the cumulative sum is below p,
/// the crossing token included), or top-k then top-p; the draw is rand's WeightedIndex over Rust's StdRng seeded
/// with the seed. Buffers are allocated once per vocabulary size, so sampling allocates nothing per token.
/// One difference: candle leaves the top-k candidates in the order of an unstable selection; here they are sorted
/// by descending probability (same set, same probabilities).
/// </summary>
public sealed class LogitsProcessor
{
    private readonly ChaChaRng _rng;
    private float[] _probs = [];
    private int[] _order = [];
    private float[] _subset = [];
    private readonly DescendingProbability _comparer = new();
    // Cached: Array.Sort with an IComparer allocates a Comparison delegate per call.
    private readonly Comparison<int> _comparison;

    public SamplingStrategy Sampling { get; }

    public LogitsProcessor(ulong seed, SamplingStrategy sampling)
    {
        if (sampling.Kind is SamplingKind.TopK or SamplingKind.TopKThenTopP && sampling.TopK <= 0)
            throw new ArgumentException($"top-k must be positive, got {sampling.TopK}");
        if (sampling.Kind is SamplingKind.TopP or SamplingKind.TopKThenTopP && !(sampling.TopP >= 0))
            throw new ArgumentException($"top-p must be a non-negative number, got {sampling.TopP}");
        _rng = ChaChaRng.SeedFromU64(seed);
        Sampling = sampling;
        _comparison = _comparer.Compare;
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty) throw new ArgumentException("no logits to sample from");
        var s = Sampling;
        if (s.Kind == SamplingKind.ArgMax) return ArgMax(logits);

        EnsureCapacity(logits.Length);
        var probs = _probs.AsSpan(0, logits.Length);
        Softmax(logits, (float)(1.0 / s.Temperature), probs);
        return s.Kind switch
        {
            SamplingKind.All => Multinomial(probs),
            SamplingKind.TopK => TopK(probs, s.TopK),
            SamplingKind.TopP => TopP(probs, (float)s.TopP),
            _ => TopKThenTopP(probs, s.TopK, (float)s.TopP),
        };
    }

    /// <summary>The last of the largest values under IEEE total order, as Rust's max_by(total_cmp).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        int bestKey = TotalOrderKey(logits[0]);
        for (int i = 1; i < logits.Length; i++)
        {
            int key = TotalOrderKey(logits[i]);
            if (key >= bestKey)
            {
                best = i;
                bestKey = key;
            }
        }
        return best;
    }

    private static int TotalOrderKey(float f)
    {
        int bits = BitConverter.SingleToInt32Bits(f);
        return bits ^ (int)((uint)(bits >> 31) >> 1);
    }

    /// <summary>
    /// candle_transformers::utils::apply_repeat_penalty: each distinct token of the context once, its logit divided
    /// by the penalty when non-negative and multiplied by it when negative.
    /// </summary>
    /// <summary>
    /// llama.cpp's min-p: drops (to -inf) every token whose probability is below <paramref name="minP"/> times the
    /// most probable one's, i.e. whose logit is below the largest plus ln(min-p). 0 keeps everything.
    /// </summary>
    public static void ApplyMinP(Span<float> logits, double minP)
    {
        if (minP <= 0 || logits.IsEmpty) return;
        float max = float.NegativeInfinity;
        foreach (float l in logits) if (l > max) max = l;
        float threshold = max + (float)Math.Log(minP);
        for (int i = 0; i < logits.Length; i++)
            if (logits[i] < threshold) logits[i] = float.NegativeInfinity;
    }

    public static void ApplyRepeatPenalty(Span<float> logits, float penalty, ReadOnlySpan<int> context)
    {
        for (int i = 0; i < context.Length; i++)
        {
            int id = context[i];
            if (context[..i].Contains(id)) continue;
            if ((uint)id >= (uint)logits.Length) continue;
            if (logits[id] >= 0) logits[id] /= penalty;
            else logits[id] *= penalty;
        }
    }

    /// <summary>candle's softmax_last_dim on f32: exp(x - max) summed in f32, then divided by the sum.</summary>
    private static void Softmax(ReadOnlySpan<float> logits, float inverseTemperature, Span<float> probs)
    {
        float max = float.MinValue;
        for (int i = 0; i < logits.Length; i++)
        {
            float v = probs[i] = logits[i] * inverseTemperature;
            if (v > max) max = v;
        }
        float sum = 0;
        for (int i = 0; i < probs.Length; i++)
        {
            float e = MathF.Exp(probs[i] - max);
            probs[i] = e;
            sum += e;
        }
        for (int i = 0; i < probs.Length; i++) probs[i] /= sum;
    }

    private int TopP(Span<float> probs, float topP)
    {
        var order = SortDescending(probs);
        float cumulative = 0;
        foreach (int i in order)
        {
            if (cumulative >= topP) probs[i] = 0;
            else cumulative += probs[i];
        }
        return Multinomial(probs);
    }

    private int TopK(Span<float> probs, int k)
    {
        if (k >= probs.Length) return Multinomial(probs);
        var order = SortDescending(probs);
        var subset = _subset.AsSpan(0, k);
        for (int j = 0; j < k; j++) subset[j] = probs[order[j]];
        return order[Multinomial(subset)];
    }

    private int TopKThenTopP(Span<float> probs, int k, float topP)
    {
        if (k >= probs.Length) return TopP(probs, topP);
        var order = SortDescending(probs);
        var subset = _subset.AsSpan(0, k);
        float sum = 0;
        for (int j = 0; j < k; j++) sum += subset[j] = probs[order[j]];
        if (topP <= 0 || topP >= sum) return order[Multinomial(subset)];
        // Already sorted, so top-p over the subset keeps a prefix.
        float cumulative = 0;
        for (int j = 0; j < k; j++)
        {
            if (cumulative >= topP) subset[j] = 0;
            else cumulative += subset[j];
        }
        return order[Multinomial(subset)];
    }

    /// <summary>Indices by descending probability, ties in index order (as Rust's stable sort_by).</summary>
    private Span<int> SortDescending(Span<float> probs)
    {
        var order = _order.AsSpan(0, probs.Length);
        for (int i = 0; i < order.Length; i++) order[i] = i;
        _comparer.Probs = _probs;
        order.Sort(_comparison); // the order is total (ties by index), so any sort gives the same result
        return order;
    }

    /// <summary>
    /// rand's WeightedIndex: cumulative sums of all weights but the last, a uniform draw in [0, total) (rand's
    /// UniformFloat, scale nudged down until the largest draw stays below total), and the count of sums ≤ the draw.
    /// All-zero or invalid weights (NaN logits) fall back to the most probable token instead of failing.
    /// </summary>
    private int Multinomial(ReadOnlySpan<float> weights)
    {
        float total = 0;
        bool valid = true;
        foreach (float w in weights)
        {
            valid &= w >= 0;
            total += w;
        }
        if (!valid || !(total > 0) || !float.IsFinite(total)) return ArgMax(weights);

        float maxRand = BitConverter.Int32BitsToSingle((int)((uint.MaxValue >> 9) | 0x3f800000u)) - 1.0f;
        float scale = total;
        while (scale * maxRand >= total)
            scale = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(scale) - 1);
        float chosen = _rng.NextFloat01() * scale;

        float cumulative = 0;
        int index = 0;
        for (int i = 0; i < weights.Length - 1; i++)
        {
            cumulative += weights[i];
            if (cumulative <= chosen) index = i + 1;
            else break;
        }
        return index;
    }

    private void EnsureCapacity(int n)
    {
        if (_probs.Length == n) return;
        _probs = new float[n];
        _order = new int[n];
        _subset = new float[n];
    }

    private sealed class DescendingProbability : IComparer<int>
    {
        public float[] Probs = [];

        public int Compare(int a, int b)
        {
            int c = Probs[b].CompareTo(Probs[a]);
            return c != 0 ? c : a.CompareTo(b);
        }
    }
}

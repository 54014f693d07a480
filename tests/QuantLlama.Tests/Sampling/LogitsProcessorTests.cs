using QuantLlama.Sampling;

namespace QuantLlama.Tests.Sampling;

public class LogitsProcessorTests
{
    [Fact]
    public void ChaChaBlockFunctionMatchesTheRfc7539ZeroKeyVectors()
    {
        // RFC 7539 A.1: ChaCha20, all-zero key and nonce; block 0 then block 1.
        var rng = new ChaChaRng(new uint[8], rounds: 20);
        Assert.Equal(0xade0b876u, rng.NextUInt32());
        Assert.Equal(0x903df1a0u, rng.NextUInt32());
        Assert.Equal(0xe56a5d40u, rng.NextUInt32());
        Assert.Equal(0x28bd8653u, rng.NextUInt32());
        for (int i = 4; i < 16; i++) rng.NextUInt32();
        Assert.Equal(0xbee7079fu, rng.NextUInt32());
        Assert.Equal(0x7a385155u, rng.NextUInt32());
    }

    [Fact]
    public void SeededStreamIsReproducibleAndSeedDependent()
    {
        var a = ChaChaRng.SeedFromU64(299792458);
        var b = ChaChaRng.SeedFromU64(299792458);
        var c = ChaChaRng.SeedFromU64(299792459);
        var sa = Enumerable.Range(0, 40).Select(_ => a.NextUInt32()).ToArray();
        Assert.Equal(sa, Enumerable.Range(0, 40).Select(_ => b.NextUInt32()).ToArray());
        Assert.NotEqual(sa, Enumerable.Range(0, 40).Select(_ => c.NextUInt32()).ToArray());
        var f = ChaChaRng.SeedFromU64(1);
        for (int i = 0; i < 1000; i++) Assert.InRange(f.NextFloat01(), 0f, 0.99999995f);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    public void NonPositiveTemperatureIsArgMax(double temperature)
    {
        var p = new LogitsProcessor(42, SamplingStrategy.FromArguments(temperature, 5, 0.9));
        Assert.Equal(SamplingKind.ArgMax, p.Sampling.Kind);
        for (int i = 0; i < 20; i++) Assert.Equal(2, p.Sample([0.5f, -1f, 3f, 2.9f]));
    }

    [Fact]
    public void ArgMaxTakesTheLastOfEqualMaxima()
    {
        Assert.Equal(2, LogitsProcessor.ArgMax([1f, 3f, 3f, 2f]));
        Assert.Equal(0, LogitsProcessor.ArgMax([float.PositiveInfinity, 3f]));
        Assert.Equal(1, LogitsProcessor.ArgMax([-0f, 0f]));
    }

    [Fact]
    public void SamplingKindFollowsTheFlags()
    {
        Assert.Equal(new SamplingStrategy(SamplingKind.All, 0.8), SamplingStrategy.FromArguments(0.8, null, null));
        Assert.Equal(new SamplingStrategy(SamplingKind.TopK, 0.8, TopK: 40), SamplingStrategy.FromArguments(0.8, 40, null));
        Assert.Equal(new SamplingStrategy(SamplingKind.TopP, 0.8, TopP: 0.9), SamplingStrategy.FromArguments(0.8, null, 0.9));
        Assert.Equal(new SamplingStrategy(SamplingKind.TopKThenTopP, 0.8, 40, 0.9), SamplingStrategy.FromArguments(0.8, 40, 0.9));
    }

    [Fact]
    public void RepeatPenaltyCountsEachDistinctTokenOnceAndRespectsSign()
    {
        float[] logits = [2f, -2f, 1f, 0.5f, 0f];
        LogitsProcessor.ApplyRepeatPenalty(logits, 2f, [0, 1, 0, 3, 4, 99]);
        Assert.Equal([1f, -4f, 1f, 0.25f, 0f], logits);
    }

    [Fact]
    public void AllTokensDrawFollowsTheSoftmax()
    {
        // logits = ln(p) so softmax(logits / 1) = p.
        float[] p = [0.1f, 0.2f, 0.3f, 0.4f];
        var logits = p.Select(x => MathF.Log(x)).ToArray();
        var sampler = new LogitsProcessor(299792458, SamplingStrategy.FromArguments(1.0, null, null));
        var counts = new int[4];
        const int n = 20000;
        for (int i = 0; i < n; i++) counts[sampler.Sample(logits)]++;
        for (int t = 0; t < 4; t++) Assert.InRange(counts[t] / (double)n, p[t] - 0.015, p[t] + 0.015);
    }

    [Fact]
    public void TemperatureSharpensTheDistribution()
    {
        // At T = 0.5 the probabilities become p² normalised: 1/30, 4/30, 9/30, 16/30.
        var logits = new[] { 0.1f, 0.2f, 0.3f, 0.4f }.Select(x => MathF.Log(x)).ToArray();
        var sampler = new LogitsProcessor(7, SamplingStrategy.FromArguments(0.5, null, null));
        var counts = new int[4];
        const int n = 20000;
        for (int i = 0; i < n; i++) counts[sampler.Sample(logits)]++;
        Assert.InRange(counts[3] / (double)n, 16 / 30.0 - 0.015, 16 / 30.0 + 0.015);
        Assert.InRange(counts[0] / (double)n, 1 / 30.0 - 0.01, 1 / 30.0 + 0.01);
    }

    [Fact]
    public void TopPKeepsTokensUntilTheCumulativeSumReachesPIncludingTheCrossingOne()
    {
        // Sorted: 0.4 (cum 0 < 0.6, kept), 0.3 (cum 0.4 < 0.6, kept: the crossing token), then 0.2 and 0.1 dropped.
        var logits = new[] { 0.1f, 0.2f, 0.3f, 0.4f }.Select(x => MathF.Log(x)).ToArray();
        var sampler = new LogitsProcessor(3, SamplingStrategy.FromArguments(1.0, null, 0.6));
        var counts = new int[4];
        const int n = 10000;
        for (int i = 0; i < n; i++) counts[sampler.Sample(logits)]++;
        Assert.Equal(0, counts[0]);
        Assert.Equal(0, counts[1]);
        Assert.InRange(counts[3] / (double)n, 4 / 7.0 - 0.02, 4 / 7.0 + 0.02);

        // p below the largest probability keeps exactly that token.
        var greedy = new LogitsProcessor(3, SamplingStrategy.FromArguments(1.0, null, 0.1));
        for (int i = 0; i < 100; i++) Assert.Equal(3, greedy.Sample(logits));
    }

    [Fact]
    public void TopKKeepsTheKMostProbable()
    {
        var logits = new[] { 0.1f, 0.2f, 0.3f, 0.4f }.Select(x => MathF.Log(x)).ToArray();
        var sampler = new LogitsProcessor(5, SamplingStrategy.FromArguments(1.0, 2, null));
        var counts = new int[4];
        for (int i = 0; i < 10000; i++) counts[sampler.Sample(logits)]++;
        Assert.Equal(0, counts[0] + counts[1]);
        Assert.InRange(counts[3] / 10000.0, 4 / 7.0 - 0.02, 4 / 7.0 + 0.02);

        var one = new LogitsProcessor(5, SamplingStrategy.FromArguments(1.0, 1, null));
        for (int i = 0; i < 100; i++) Assert.Equal(3, one.Sample(logits));
    }

    [Fact]
    public void TopKThenTopPAppliesTopPWithinTheTopK()
    {
        // Top 3: 0.4, 0.3, 0.2 (sum 0.9); p = 0.5 keeps 0.4 and the crossing 0.3.
        var logits = new[] { 0.1f, 0.2f, 0.3f, 0.4f }.Select(x => MathF.Log(x)).ToArray();
        var sampler = new LogitsProcessor(11, SamplingStrategy.FromArguments(1.0, 3, 0.5));
        var seen = new HashSet<int>();
        for (int i = 0; i < 2000; i++) seen.Add(sampler.Sample(logits));
        Assert.Equal([2, 3], seen.Order());

        // p at or above the top-k mass: plain top-k.
        var wide = new LogitsProcessor(11, SamplingStrategy.FromArguments(1.0, 3, 0.95));
        seen.Clear();
        for (int i = 0; i < 2000; i++) seen.Add(wide.Sample(logits));
        Assert.Equal([1, 2, 3], seen.Order());
    }

    [Fact]
    public void SameSeedSameTokens()
    {
        var rng = new Random(9);
        var logits = Enumerable.Range(0, 512).Select(_ => rng.NextSingle() * 8).ToArray();
        int[] Run(ulong seed)
        {
            var s = new LogitsProcessor(seed, SamplingStrategy.FromArguments(0.8, null, 0.95));
            return Enumerable.Range(0, 50).Select(_ => s.Sample(logits)).ToArray();
        }
        Assert.Equal(Run(299792458), Run(299792458));
        Assert.NotEqual(Run(299792458), Run(1));
    }

    [Fact]
    public void FirstDrawOfTwoEqualTokensIsDecidedByTheStreamsFirstWord()
    {
        // WeightedIndex over [0.5, 0.5]: token 1 exactly when the first uniform draw reaches 0.5,
        // i.e. when the top bit of StdRng's first u32 is set.
        uint first = ChaChaRng.SeedFromU64(299792458).NextUInt32();
        var sampler = new LogitsProcessor(299792458, SamplingStrategy.FromArguments(1.0, null, null));
        Assert.Equal((int)(first >> 31), sampler.Sample([1f, 1f]));
    }
}

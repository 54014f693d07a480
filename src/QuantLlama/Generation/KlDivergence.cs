using QuantLlama.Models;

namespace QuantLlama.Generation;

/// <summary>An estimate and its standard error, as llama-perplexity prints "value ± uncertainty".</summary>
public readonly record struct Estimate(double Value, double Uncertainty);

/// <summary>
/// llama-perplexity's KL-divergence mode: a reference model's log-probabilities are saved to a
/// <see cref="LogProbabilityFile"/> while its perplexity is measured (<see cref="SaveBase"/>), and another model
/// (another quantization of it) is then run over the same windows and compared position by position
/// (<see cref="Compare"/>): KL(base ‖ model), perplexities and their ratio, the change in the probability of the
/// right token (Δp), and how often both put the same token on top.
/// </summary>
public static class KlDivergence
{
    /// <summary>
    /// Measures perplexity as <see cref="Perplexity.Compute"/> does and writes every scored position's log-softmax
    /// to <paramref name="output"/>. The negative log-likelihoods are llama-perplexity's of this mode (float sums).
    /// </summary>
    public static PerplexityResult SaveBase(InferenceContext context, IReadOnlyList<int> tokens, int? bosToken, Stream output,
        Action<int, double>? onWindow = null, CancellationToken cancellationToken = default)
    {
        int window = context.ContextSize, vocab = context.Config.VocabSize;
        Perplexity.CheckLength(window, tokens.Count);
        int windows = tokens.Count / window, first = window / 2, rowLength = LogProbabilityFile.RowLength(vocab);
        new LogProbabilityFile(window, vocab, windows, tokens.Take(windows * window).ToArray()).WriteHeader(output);

        var rows = new ushort[LogProbabilityFile.ScoredPerWindow(window) * rowLength]; // [scored x row]
        var running = new List<double>(windows);
        double nll = 0, nll2 = 0;
        int count = 0;
        Perplexity.EvaluateWindows(context, tokens, windows, bosToken, (w, logits) =>
        {
            for (int j = first; j < window - 1; j++)
            {
                double v = LogProbabilityFile.EncodeRow(new ReadOnlySpan<float>(logits, j * vocab, vocab), tokens[w * window + j + 1],
                    rows.AsSpan((j - first) * rowLength, rowLength));
                nll += v;
                nll2 += v * v;
            }
            LogProbabilityFile.WriteRows(output, rows);
            count += window - 1 - first;
            running.Add(Math.Exp(nll / count));
            onWindow?.Invoke(w + 1, running[^1]);
        }, cancellationToken);

        return Perplexity.Result(nll, nll2, count, running);
    }

    /// <summary>
    /// Runs <paramref name="context"/>'s model over the windows of <paramref name="baseFile"/> (whose header is read;
    /// <paramref name="rowsStream"/> stands at the first window's rows) and compares it with the stored distributions.
    /// The context's size must be the file's window size.
    /// </summary>
    /// <param name="onWindow">Called after each window with its 1-based number and the statistics so far.</param>
    public static KlDivergenceStatistics Compare(InferenceContext context, LogProbabilityFile baseFile, Stream rowsStream, int? bosToken,
        Action<int, KlDivergenceStatistics>? onWindow = null, CancellationToken cancellationToken = default)
    {
        int window = baseFile.WindowSize, vocab = context.Config.VocabSize, first = window / 2;
        if (context.ContextSize != window)
            throw new ArgumentException($"the context holds {context.ContextSize} tokens but the windows have {window}");
        if (baseFile.VocabSize != vocab)
            throw new InvalidDataException($"inconsistent vocabulary ({baseFile.VocabSize} vs {vocab})");

        int rowLength = LogProbabilityFile.RowLength(vocab);
        var rows = new ushort[baseFile.WindowLength]; // [scored x row]
        var statistics = new KlDivergenceStatistics();
        Perplexity.EvaluateWindows(context, baseFile.Tokens, baseFile.WindowCount, bosToken, (w, logits) =>
        {
            if (!baseFile.ReadWindow(rowsStream, rows))
                throw new InvalidDataException($"failed reading log-probs for chunk {w}");
            for (int j = first; j < window - 1; j++)
                statistics.Add(new ReadOnlySpan<float>(logits, j * vocab, vocab), rows.AsSpan((j - first) * rowLength, rowLength),
                    baseFile.Tokens[w * window + j + 1]);
            onWindow?.Invoke(w + 1, statistics);
        }, cancellationToken);
        return statistics;
    }
}

/// <summary>
/// The sums llama-perplexity keeps while comparing a model with stored base log-probabilities, and the figures it
/// prints from them. Per position, with the base's stored log p_base and the model's log p: KL = Σ p_base (log p_base −
/// log p) over the entries within 16 nats of the base's top; Δp = p(right token) − p_base(right token).
/// </summary>
public sealed class KlDivergenceStatistics
{
    private double _sumNll, _sumNll2, _sumNllBase, _sumNllBase2, _sumNllNllBase, _sumKld, _sumKld2, _sumPDiff, _sumPDiff2, _sumPDiff4;
    private readonly List<float> _kld = [], _pDiff = [];
    private List<float>? _sortedKld, _sortedPDiff;

    /// <summary>Positions compared.</summary>
    public int Count { get; private set; }

    /// <summary>Positions where both models rank the same token first.</summary>
    public int SameTopCount { get; private set; }

    /// <summary>The largest |Δp|.</summary>
    public float MaxAbsPDiff { get; private set; }

    /// <summary>Adds one position: the model's logits, the base's stored row, and the text's next token.</summary>
    public void Add(ReadOnlySpan<float> logits, ReadOnlySpan<ushort> baseRow, int token)
    {
        // llama-perplexity's arithmetic: float per entry, sums in double.
        float max = logits[0];
        int top = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > max) (max, top) = (logits[i], i);
        double sumExp = 0;
        for (int i = 0; i < logits.Length; i++) sumExp += MathF.Exp(logits[i] - max);
        float logSumExp = (float)Math.Log(sumExp);

        float nll = max + logSumExp - logits[token];
        _sumNll += nll;
        _sumNll2 += nll * nll;
        float nllBase = -LogProbabilityFile.LogProbability(baseRow, token);
        _sumNllBase += nllBase;
        _sumNllBase2 += nllBase * nllBase;
        _sumNllNllBase += nll * nllBase;

        float logNormalizer = max + logSumExp;
        double kld = 0;
        int topBase = -1;
        float topBaseLogProbability = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float logProbabilityBase = LogProbabilityFile.LogProbability(baseRow, i);
            if (i == 0 || logProbabilityBase > topBaseLogProbability) (topBaseLogProbability, topBase) = (logProbabilityBase, i);
            if (logProbabilityBase > -16f)
                kld += MathF.Exp(logProbabilityBase) * (logProbabilityBase - logits[i] + logNormalizer);
        }
        _sumKld += kld;
        _sumKld2 += kld * kld;
        Count++;
        if (top == topBase) SameTopCount++;

        float pDiff = MathF.Exp(-nll) - MathF.Exp(-nllBase);
        _sumPDiff += pDiff;
        double pDiff2 = pDiff * pDiff;
        _sumPDiff2 += pDiff2;
        _sumPDiff4 += pDiff2 * pDiff2;
        MaxAbsPDiff = Math.Max(MaxAbsPDiff, Math.Abs(pDiff));
        _kld.Add((float)kld);
        _pDiff.Add(pDiff);
        _sortedKld = _sortedPDiff = null;
    }

    /// <summary>The model's perplexity on the scored positions.</summary>
    public Estimate Perplexity => Exponential(MeanAndUncertainty(_sumNll, _sumNll2));

    /// <summary>The base model's perplexity, from the stored log-probabilities.</summary>
    public Estimate BasePerplexity => Exponential(MeanAndUncertainty(_sumNllBase, _sumNllBase2));

    /// <summary>Correlation of the two models' per-position log-likelihoods.</summary>
    public double LogPerplexityCorrelation
        => LogCovariance / (MeanAndUncertainty(_sumNll, _sumNll2).Uncertainty * MeanAndUncertainty(_sumNllBase, _sumNllBase2).Uncertainty);

    /// <summary>ln(PPL(Q)/PPL(base)).</summary>
    public Estimate LogPerplexityRatio
    {
        get
        {
            var q = MeanAndUncertainty(_sumNll, _sumNll2);
            var b = MeanAndUncertainty(_sumNllBase, _sumNllBase2);
            return new(q.Value - b.Value, Math.Sqrt(q.Uncertainty * q.Uncertainty + b.Uncertainty * b.Uncertainty - 2 * LogCovariance));
        }
    }

    /// <summary>PPL(Q)/PPL(base).</summary>
    public Estimate PerplexityRatio => Exponential(LogPerplexityRatio);

    /// <summary>PPL(Q) − PPL(base).</summary>
    public Estimate PerplexityDifference
    {
        get
        {
            Estimate q = Perplexity, b = BasePerplexity;
            double covariance = q.Value * b.Value * LogCovariance;
            return new(q.Value - b.Value, Math.Sqrt(q.Uncertainty * q.Uncertainty + b.Uncertainty * b.Uncertainty - 2 * covariance));
        }
    }

    /// <summary>Mean KL divergence (nats) of the model from the base.</summary>
    public Estimate MeanKld => MeanAndUncertainty(_sumKld, _sumKld2);

    /// <summary>The KL divergence below which <paramref name="fraction"/> of the positions fall (0 the smallest, 1 the largest), interpolated as llama-perplexity does.</summary>
    public float KldPercentile(float fraction) => Percentile(_sortedKld ??= Sorted(_kld), fraction);

    public float MedianKld => Median(_sortedKld ??= Sorted(_kld));

    /// <summary>Mean Δp (probability of the right token, model minus base).</summary>
    public Estimate MeanPDiff => MeanAndUncertainty(_sumPDiff, _sumPDiff2);

    public float PDiffPercentile(float fraction) => Percentile(_sortedPDiff ??= Sorted(_pDiff), fraction);

    public float MedianPDiff => Median(_sortedPDiff ??= Sorted(_pDiff));

    /// <summary>Root mean square of Δp.</summary>
    public Estimate RmsPDiff
    {
        get
        {
            var mse = MeanAndUncertainty(_sumPDiff2, _sumPDiff4);
            double rms = Math.Sqrt(mse.Value);
            return new(rms, 0.5 / rms * mse.Uncertainty);
        }
    }

    /// <summary>The share of positions where both models rank the same token first.</summary>
    public Estimate SameTop
    {
        get
        {
            double p = (double)SameTopCount / Count;
            return new(p, Math.Sqrt(p * (1 - p) / (Count - 1)));
        }
    }

    private Estimate MeanAndUncertainty(double sum, double sum2)
    {
        if (Count < 1) return new(0, 0);
        double mean = sum / Count, variance = sum2 / Count - mean * mean;
        return new(mean, variance > 0 && Count > 10 ? Math.Sqrt(variance / (Count - 1)) : 0);
    }

    private double LogCovariance
        => Count < 10 ? 0 : (_sumNllNllBase / Count - _sumNll / Count * (_sumNllBase / Count)) / (Count - 1);

    private static Estimate Exponential(Estimate log)
    {
        double value = Math.Exp(log.Value);
        return new(value, value * log.Uncertainty);
    }

    private static List<float> Sorted(List<float> values)
    {
        var sorted = new List<float>(values);
        sorted.Sort();
        return sorted;
    }

    private static float Median(List<float> sorted)
        => sorted.Count % 2 == 0 ? 0.5f * (sorted[sorted.Count / 2] + sorted[sorted.Count / 2 - 1]) : sorted[sorted.Count / 2];

    private static float Percentile(List<float> sorted, float fraction)
    {
        if (fraction <= 0) return sorted[0];
        if (fraction >= 1) return sorted[^1];
        float p = fraction * (sorted.Count - 1);
        int i = (int)p;
        p -= i;
        return (1 - p) * sorted[i] + p * sorted[Math.Min(i + 1, sorted.Count - 1)];
    }
}

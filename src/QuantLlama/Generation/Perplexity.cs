using QuantLlama.Models;

namespace QuantLlama.Generation;

/// <summary>The outcome of <see cref="Perplexity.Compute"/>.</summary>
/// <param name="Value">exp(mean negative log-likelihood) over every scored token.</param>
/// <param name="Uncertainty">llama-perplexity's ± : PPL × the standard error of the mean log-likelihood
/// (NaN when the variance comes out non-positive, where llama.cpp prints no estimate).</param>
/// <param name="RunningEstimates">The perplexity after each window, as llama-perplexity prints them ([1]…,[2]…).</param>
/// <param name="ScoredTokens">How many next-token predictions were scored.</param>
public sealed record PerplexityResult(double Value, double Uncertainty, IReadOnlyList<double> RunningEstimates, int ScoredTokens);

/// <summary>
/// llama-perplexity's measure: the text is cut into consecutive windows of the context's size (whole windows only);
/// each window is evaluated from an empty cache with its first token replaced by BOS when the vocabulary adds BOS,
/// and only its second half is scored (those predictions see at least half a window of context), each as the
/// negative log-likelihood of the next token under a log-softmax summed in double.
/// </summary>
public static class Perplexity
{
    /// <summary>The fewest tokens a text needs for a window of <paramref name="windowSize"/> (llama.cpp asks for two windows).</summary>
    public static int MinimumTokens(int windowSize) => 2 * windowSize;

    /// <param name="context">Evaluates the windows; its context size is the window size and its cache is reset.</param>
    /// <param name="tokens">The whole text's tokens (with BOS where the vocabulary adds one).</param>
    /// <param name="bosToken">Put at the start of every window; null when the vocabulary adds no BOS.</param>
    /// <param name="onWindow">Called after each window with its 1-based number and the running estimate.</param>
    public static PerplexityResult Compute(InferenceContext context, IReadOnlyList<int> tokens, int? bosToken,
        Action<int, double>? onWindow = null, CancellationToken cancellationToken = default)
    {
        int window = context.ContextSize, vocab = context.Config.VocabSize;
        CheckLength(window, tokens.Count);

        int windows = tokens.Count / window, first = window / 2;
        var running = new List<double>(windows);
        double nll = 0, nll2 = 0;
        int count = 0;
        EvaluateWindows(context, tokens, windows, bosToken, (w, logits) =>
        {
            // The logits at position j predict the text's token j + 1 (the original one, never the BOS substitute).
            for (int j = first; j < window - 1; j++)
            {
                double v = -LogSoftmax(new ReadOnlySpan<float>(logits, j * vocab, vocab), tokens[w * window + j + 1]);
                nll += v;
                nll2 += v * v;
            }
            count += window - 1 - first;
            running.Add(Math.Exp(nll / count));
            onWindow?.Invoke(w + 1, running[^1]);
        }, cancellationToken);

        return Result(nll, nll2, count, running);
    }

    internal static void CheckLength(int window, int tokenCount)
    {
        if (window < 2) throw new ArgumentException($"a context of {window} tokens is too small to score any token");
        if (tokenCount < MinimumTokens(window))
            throw new ArgumentException($"you need at least {MinimumTokens(window)} tokens to evaluate perplexity with a context of {window}; "
                + $"the text tokenizes to only {tokenCount} tokens");
    }

    /// <summary>The estimate and llama-perplexity's ± from the sums of the negative log-likelihoods and their squares.</summary>
    internal static PerplexityResult Result(double nll, double nll2, int count, IReadOnlyList<double> running)
    {
        double mean = nll / count, variance = nll2 / count - mean * mean, ppl = Math.Exp(mean);
        double uncertainty = variance > 0 ? Math.Sqrt(variance / (count - 1)) * ppl : double.NaN;
        return new PerplexityResult(ppl, uncertainty, running, count);
    }

    /// <summary>
    /// Evaluates <paramref name="windows"/> consecutive windows of the context's size from an empty cache each, the
    /// first token replaced by <paramref name="bosToken"/> when given, and hands each window's logits
    /// [window x vocab] (one buffer, reused) to <paramref name="onWindow"/> with its 0-based number.
    /// </summary>
    internal static void EvaluateWindows(InferenceContext context, IReadOnlyList<int> tokens, int windows, int? bosToken,
        Action<int, float[]> onWindow, CancellationToken cancellationToken)
    {
        int window = context.ContextSize;
        var logits = new float[(long)window * context.Config.VocabSize];
        var windowTokens = new int[window];
        for (int w = 0; w < windows; w++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            for (int i = 0; i < window; i++) windowTokens[i] = tokens[w * window + i];
            if (bosToken is int bos) windowTokens[0] = bos;
            context.Reset();
            context.ForwardAllLogits(windowTokens, 0, logits);
            onWindow(w, logits);
        }
    }

    /// <summary>log p(token) under softmax(logits), as llama-perplexity computes it: exponentials in float, their
    /// sum and the logarithm in double.</summary>
    public static double LogSoftmax(ReadOnlySpan<float> logits, int token)
    {
        float max = logits[0];
        for (int i = 1; i < logits.Length; i++) max = Math.Max(max, logits[i]);
        double sum = 0;
        for (int i = 0; i < logits.Length; i++) sum += MathF.Exp(logits[i] - max);
        return logits[token] - max - Math.Log(sum);
    }
}

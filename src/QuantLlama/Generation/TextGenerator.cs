using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QuantLlama.Models;
using QuantLlama.Sampling;
using QuantLlama.Tokenizers;

namespace QuantLlama.Generation;

/// <summary>How the next token is drawn (candle's LogitsProcessor, with llama.cpp's min-p and repeat penalty).</summary>
public sealed record SamplingOptions
{
    /// <summary>0 or less: greedy (argmax).</summary>
    public double Temperature { get; init; } = 0.8;

    /// <summary>Only the k most probable tokens are drawn from; null: no limit.</summary>
    public int? TopK { get; init; }

    /// <summary>Nucleus cutoff in (0, 1]; null: no cutoff.</summary>
    public double? TopP { get; init; }

    /// <summary>Tokens less probable than min-p times the most probable one are dropped (llama.cpp's min-p); null: none.</summary>
    public double? MinP { get; init; }

    /// <summary>Seed of the sampling RNG (candle's default).</summary>
    public ulong Seed { get; init; } = 299792458UL;

    /// <summary>Penalty for tokens this turn already generated (1: none).</summary>
    public float RepeatPenalty { get; init; } = 1.1f;

    /// <summary>How many of the last generated tokens the repeat penalty looks at.</summary>
    public int RepeatLastN { get; init; } = 64;

    /// <summary>Greedy decoding with no penalty: the same text on every run.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0, RepeatPenalty = 1f };

    internal void Validate()
    {
        if (!double.IsFinite(Temperature)) throw new ArgumentException("temperature must be a number");
        if (TopK is <= 0) throw new ArgumentException($"top-k must be positive, got {TopK}");
        if (TopP is double p && !(p > 0 && p <= 1)) throw new ArgumentException($"top-p must be in (0, 1], got {p}");
        if (MinP is double m && !(m >= 0 && m <= 1)) throw new ArgumentException($"min-p must be in [0, 1], got {m}");
        if (!(RepeatPenalty > 0) || !float.IsFinite(RepeatPenalty)) throw new ArgumentException($"repeat penalty must be positive, got {RepeatPenalty}");
        if (RepeatLastN < 0) throw new ArgumentException($"repeat-last-n must not be negative, got {RepeatLastN}");
    }

    /// <summary>A sampler for one generation, seeded with <see cref="Seed"/>.</summary>
    public LogitsProcessor CreateSampler() => new(Seed, SamplingStrategy.FromArguments(Temperature, TopK, TopP));
}

public sealed record GenerationOptions
{
    /// <summary>Tokens to generate at most, counting the one sampled from the prompt (candle's --sample-len).</summary>
    public int MaxTokens { get; init; } = 1000;

    public SamplingOptions Sampling { get; init; } = new();

    /// <summary>
    /// Texts that end the generation when they appear in it; the text returned stops before them, and no part of
    /// one is ever streamed, even when it spans several tokens.
    /// </summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Feed the prompt one token at a time instead of one batch (candle's --split-prompt).</summary>
    public bool SplitPrompt { get; init; }

    internal void Validate()
    {
        if (MaxTokens < 0) throw new ArgumentException($"the token limit must not be negative, got {MaxTokens}");
        Sampling.Validate();
        if (StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("a stop string must not be empty");
    }
}

public enum StopReason
{
    /// <summary>The model produced an end-of-generation token (EOS, EOT, or the template's end of turn).</summary>
    EndOfGeneration,
    /// <summary><see cref="GenerationOptions.MaxTokens"/> tokens were generated.</summary>
    Length,
    /// <summary>One of <see cref="GenerationOptions.StopStrings"/> appeared.</summary>
    StopString,
    /// <summary>The KV cache has no room for another token.</summary>
    ContextFull,
    Cancelled,
}

/// <summary>What one generation did.</summary>
public sealed record GenerationResult(
    int PromptTokens, TimeSpan PromptTime, int GeneratedTokens, TimeSpan GenerationTime, StopReason StopReason,
    IReadOnlyList<int> Tokens)
{
    /// <summary>Prompt tokens whose keys and values were already cached (not computed again).</summary>
    public int CachedPromptTokens { get; init; }

    /// <summary>The generated text, without a stop string.</summary>
    public string Text { get; init; } = "";

    /// <summary>Prompt tokens computed per second; null when none were or no time was measured.</summary>
    public double? PromptTokensPerSecond => Rate(PromptTokens - CachedPromptTokens, PromptTime);

    /// <summary>Tokens generated per second after the first (candle's figure); null when none were.</summary>
    public double? GeneratedTokensPerSecond => Rate(GeneratedTokens, GenerationTime);

    private static double? Rate(int tokens, TimeSpan time) => tokens > 0 && time > TimeSpan.Zero ? tokens / time.TotalSeconds : null;
}

/// <summary>One step of a streamed generation: the text that became final with this token (possibly empty).</summary>
public sealed record GenerationUpdate(string Text, int TokenId)
{
    /// <summary>Set on the last update only.</summary>
    public GenerationResult? Result { get; init; }
}

/// <summary>
/// candle's generation loop over an <see cref="InferenceContext"/>: the prompt as one batch (or token by token),
/// a first token sampled from its last logits, then one forward pass per token with the repeat penalty over this
/// turn's last tokens, streaming text as it becomes valid UTF-8, until an end-of-generation id, a stop string, the
/// token limit, a full context or cancellation. The context keeps the longest cached prefix of each prompt, so a
/// conversation re-sent with one more turn computes only that turn. Compute runs on the thread that iterates.
/// </summary>
public sealed class TextGenerator
{
    private readonly InferenceContext _context;
    private readonly ITokenizer _tokenizer;
    private readonly float[] _logits;
    private readonly HashSet<int> _endOfGeneration;

    public TextGenerator(InferenceContext context, ITokenizer tokenizer, IEnumerable<int>? extraEndOfGenerationIds = null)
    {
        _context = context;
        _tokenizer = tokenizer;
        _logits = new float[context.Config.VocabSize];
        _endOfGeneration = [.. tokenizer.EndOfGenerationIds];
        if (tokenizer.EosId >= 0) _endOfGeneration.Add(tokenizer.EosId);
        if (extraEndOfGenerationIds != null) _endOfGeneration.UnionWith(extraEndOfGenerationIds);
    }

    public InferenceContext Context => _context;

    /// <summary>
    /// When set, the prompt and each generated token go through the weights together with the tokens of the other
    /// conversations on the batcher's model at the same time (continuous batching); the tokens are the same.
    /// </summary>
    public DecodeBatcher? Batcher { get; set; }

    public IReadOnlySet<int> EndOfGenerationIds => _endOfGeneration;

    /// <summary>
    /// Generates a continuation of <paramref name="prompt"/> (the whole text so far as token ids) into
    /// <paramref name="output"/>. <paramref name="sampler"/> replaces the one <see cref="SamplingOptions"/> would
    /// make (the CLI keeps one across turns, as candle does). A prompt that does not fit throws
    /// <see cref="ContextFullException"/> before anything runs.
    /// </summary>
    public GenerationResult Generate(IReadOnlyList<int> prompt, GenerationOptions options, TextWriter output,
        CancellationToken cancel = default, LogitsProcessor? sampler = null)
    {
        foreach (var update in Run(prompt, options, sampler, cancel))
        {
            if (update.Text.Length > 0)
            {
                output.Write(update.Text);
                output.Flush();
            }
            if (update.Result != null) return update.Result;
        }
        throw new UnreachableException();
    }

    /// <summary>
    /// Streams the continuation of <paramref name="prompt"/>: UTF-8-safe text pieces with their token ids, the last
    /// update carrying the <see cref="GenerationResult"/>. Cancellation ends the stream with
    /// <see cref="StopReason.Cancelled"/> rather than an exception.
    /// </summary>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(IReadOnlyList<int> prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancel = default)
    {
        await Task.Yield(); // the caller gets its enumerator back before the prompt is computed
        foreach (var update in Run(prompt, options, null, cancel)) yield return update;
    }

    /// <summary>
    /// <see cref="GenerateAsync"/> without the hop to the thread pool: compute runs on the thread that enumerates,
    /// for callers that keep generation on threads of their own (a server's worker per request).
    /// </summary>
    public IEnumerable<GenerationUpdate> GenerateUpdates(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancel = default)
        => Run(prompt, options, null, cancel);

    private IEnumerable<GenerationUpdate> Run(IReadOnlyList<int> prompt, GenerationOptions options, LogitsProcessor? sampler,
        CancellationToken cancel)
    {
        options.Validate();
        if (prompt.Count == 0) throw new ArgumentException("the prompt has no tokens");
        if (prompt.Count > _context.ContextSize) throw new ContextFullException(_context.ContextSize, prompt.Count);
        sampler ??= options.Sampling.CreateSampler();
        var sampling = options.Sampling;
        var generated = new List<int>(Math.Min(options.MaxTokens, _context.ContextSize));
        var decoder = new StreamingDecoder(_tokenizer);
        var stops = new StopStringFilter(options.StopStrings);
        var text = new System.Text.StringBuilder();
        var promptTime = TimeSpan.Zero;
        int sampled = 0;
        var stopwatch = Stopwatch.StartNew();

        int cached = _context.KeepCommonPrefix(prompt);
        if (options.MaxTokens == 0 || cancel.IsCancellationRequested)
        {
            yield return new GenerationUpdate("", -1) { Result = Final(cancel.IsCancellationRequested ? StopReason.Cancelled : StopReason.Length, TimeSpan.Zero) };
            yield break;
        }

        int[] rest = [.. prompt.Skip(cached)];
        var batcher = Batcher;
        if (options.SplitPrompt)
        {
            // candle samples after every prompt token; the draws before the last are discarded, but they advance the RNG.
            for (int i = 0; i < rest.Length; i++)
            {
                _context.Append(rest.AsSpan(i, 1)).CopyTo(_logits);
                if (i < rest.Length - 1) sampler.Sample(_logits);
            }
        }
        else
        {
            // Through the batcher, the context stays a participant from its prompt's last step on.
            (batcher != null ? batcher.Prompt(_context, rest, thenDecode: true) : _context.Append(rest)).CopyTo(_logits);
        }
        if (options.SplitPrompt) batcher?.Join();
        promptTime = stopwatch.Elapsed;
        stopwatch.Restart();

        try
        {
            while (true)
            {
                if (sampling.RepeatPenalty != 1f && generated.Count > 0)
                {
                    var all = CollectionsMarshal.AsSpan(generated);
                    LogitsProcessor.ApplyRepeatPenalty(_logits, sampling.RepeatPenalty, all[Math.Max(0, all.Length - sampling.RepeatLastN)..]);
                }
                if (sampling.MinP is double minP) LogitsProcessor.ApplyMinP(_logits, minP);
                int next = sampler.Sample(_logits);
                generated.Add(next);
                if (generated.Count > 1) sampled++;

                bool end = _endOfGeneration.Contains(next);
                string ready = stops.Push(end ? "" : decoder.Push(next), out bool stopped);
                text.Append(ready);
                StopReason reason;
                if (stopped) reason = StopReason.StopString;
                else if (end) reason = StopReason.EndOfGeneration;
                else if (generated.Count >= options.MaxTokens) reason = StopReason.Length;
                else if (cancel.IsCancellationRequested) reason = StopReason.Cancelled;
                else if (_context.Position >= _context.ContextSize) reason = StopReason.ContextFull;
                else
                {
                    if (ready.Length > 0) yield return new GenerationUpdate(ready, next);
                    (batcher != null ? batcher.Decode(_context, next) : _context.Append([next])).CopyTo(_logits);
                    continue;
                }
                string tail = stopped ? "" : stops.Flush(decoder.Flush());
                text.Append(tail);
                yield return new GenerationUpdate(ready + tail, next) { Result = Final(reason, stopwatch.Elapsed) };
                yield break;
            }
        }
        finally
        {
            batcher?.Leave();
        }

        GenerationResult Final(StopReason why, TimeSpan generationTime) => new(prompt.Count, promptTime, sampled, generationTime, why, generated)
        {
            CachedPromptTokens = cached,
            Text = text.ToString(),
        };
    }
}

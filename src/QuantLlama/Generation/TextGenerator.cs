using System.Diagnostics;
using QuantLlama.Models;
using QuantLlama.Sampling;
using QuantLlama.Tokenizers;

namespace QuantLlama.Generation;

public sealed record GenerationOptions
{
    /// <summary>Tokens to generate per turn (candle's --sample-len, counting the one sampled from the prompt).</summary>
    public int SampleLength { get; init; } = 1000;

    public float RepeatPenalty { get; init; } = 1.1f;

    public int RepeatLastN { get; init; } = 64;

    /// <summary>Feed the prompt one token at a time instead of one batch (candle's --split-prompt).</summary>
    public bool SplitPrompt { get; init; }
}

public enum StopReason
{
    EndOfSequence,
    SampleLength,
    ContextFull,
    Cancelled,
}

/// <summary>What one turn did, with candle's statistics.</summary>
public sealed record GenerationResult(
    int PromptTokens, TimeSpan PromptTime, int GeneratedTokens, TimeSpan GenerationTime, StopReason StopReason,
    IReadOnlyList<int> Tokens)
{
    public double PromptTokensPerSecond => PromptTokens / Math.Max(PromptTime.TotalSeconds, 1e-9);

    public double GeneratedTokensPerSecond => GeneratedTokens / Math.Max(GenerationTime.TotalSeconds, 1e-9);
}

/// <summary>
/// candle's generation loop over a <see cref="LlamaModel"/>: the prompt as one batch (or token by token), a first token
/// sampled from its last logits, then one forward pass per token with the repeat penalty over this turn's last
/// tokens, streaming text as it becomes valid UTF-8, until an end-of-generation id, the sample length, a full
/// context or cancellation. The KV cache persists across calls, so a chat feeds only each new turn.
/// </summary>
public sealed class TextGenerator
{
    private readonly LlamaModel _model;
    private readonly ITokenizer _tokenizer;
    private readonly LogitsProcessor _sampler;
    private readonly float[] _logits;
    private readonly HashSet<int> _endOfGeneration;
    private int _pending = -1;

    public GenerationOptions Options { get; }

    /// <summary>Tokens already in the KV cache.</summary>
    public int Position { get; private set; }

    public TextGenerator(LlamaModel model, ITokenizer tokenizer, LogitsProcessor sampler, GenerationOptions options,
        IEnumerable<int>? extraEndOfGenerationIds = null)
    {
        if (options.SampleLength < 0) throw new ArgumentException("sample length must not be negative");
        if (options.RepeatLastN < 0) throw new ArgumentException("repeat-last-n must not be negative");
        if (!(options.RepeatPenalty > 0)) throw new ArgumentException("repeat penalty must be positive");
        _model = model;
        _tokenizer = tokenizer;
        _sampler = sampler;
        Options = options;
        _logits = new float[model.Config.VocabSize];
        _endOfGeneration = [.. tokenizer.EndOfGenerationIds];
        if (tokenizer.EosId >= 0) _endOfGeneration.Add(tokenizer.EosId);
        if (extraEndOfGenerationIds != null) _endOfGeneration.UnionWith(extraEndOfGenerationIds);
    }

    public IReadOnlySet<int> EndOfGenerationIds => _endOfGeneration;

    /// <summary>Forgets the conversation: the next turn starts at position 0.</summary>
    public void Reset()
    {
        Position = 0;
        _pending = -1;
    }

    /// <summary>
    /// Feeds <paramref name="promptTokens"/> after what the cache holds (preceded by the last sampled token of the
    /// previous turn, which was never fed) and generates the answer into <paramref name="output"/>.
    /// A prompt that does not fit in the context throws <see cref="ContextFullException"/> before anything runs.
    /// </summary>
    public GenerationResult Generate(IReadOnlyList<int> promptTokens, TextWriter output, CancellationToken cancel = default)
    {
        var prompt = new List<int>(promptTokens.Count + 1);
        if (_pending >= 0) prompt.Add(_pending);
        prompt.AddRange(promptTokens);
        if (prompt.Count == 0) throw new ArgumentException("the prompt has no tokens");
        if (Position + prompt.Count > _model.ContextSize)
            throw new ContextFullException(_model.ContextSize, Position + prompt.Count);

        var generated = new List<int>(Math.Min(Options.SampleLength, _model.ContextSize));
        var decoder = new StreamingDecoder(_tokenizer);
        var stopwatch = Stopwatch.StartNew();
        if (Options.SampleLength == 0 || cancel.IsCancellationRequested)
            return new(prompt.Count, TimeSpan.Zero, 0, TimeSpan.Zero,
                cancel.IsCancellationRequested ? StopReason.Cancelled : StopReason.SampleLength, generated);

        ReadOnlySpan<float> logits = default;
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(prompt);
        if (Options.SplitPrompt)
        {
            // candle samples after every prompt token; the draws before the last are discarded, but they advance the RNG.
            for (int i = 0; i < span.Length; i++)
            {
                logits = _model.Forward(span.Slice(i, 1), Position + i);
                if (i < span.Length - 1) _sampler.Sample(logits);
            }
        }
        else
        {
            logits = _model.Forward(span, Position);
        }
        Position += prompt.Count;
        _pending = -1;

        int next = _sampler.Sample(logits);
        var promptTime = stopwatch.Elapsed;
        generated.Add(next);
        _pending = next;
        Emit(decoder, next, output);

        stopwatch.Restart();
        int sampled = 0;
        var reason = StopReason.SampleLength;
        if (_endOfGeneration.Contains(next)) reason = StopReason.EndOfSequence;
        else
        {
            for (int index = 0; index < Options.SampleLength - 1; index++)
            {
                if (cancel.IsCancellationRequested)
                {
                    reason = StopReason.Cancelled;
                    break;
                }
                if (Position >= _model.ContextSize)
                {
                    reason = StopReason.ContextFull;
                    break;
                }
                var l = _model.Forward([next], Position);
                Position++;
                _pending = -1;
                l.CopyTo(_logits);
                if (Options.RepeatPenalty != 1f)
                {
                    var all = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(generated);
                    int startAt = Math.Max(0, all.Length - Options.RepeatLastN);
                    LogitsProcessor.ApplyRepeatPenalty(_logits, Options.RepeatPenalty, all[startAt..]);
                }
                next = _sampler.Sample(_logits);
                generated.Add(next);
                _pending = next;
                Emit(decoder, next, output);
                sampled++;
                if (_endOfGeneration.Contains(next))
                {
                    reason = StopReason.EndOfSequence;
                    break;
                }
            }
        }
        output.Write(decoder.Flush());
        output.Flush();
        return new(prompt.Count, promptTime, sampled, stopwatch.Elapsed, reason, generated);
    }

    private static void Emit(StreamingDecoder decoder, int id, TextWriter output)
    {
        string text = decoder.Push(id);
        if (text.Length == 0) return;
        output.Write(text);
        output.Flush();
    }
}

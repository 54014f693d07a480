namespace QuantLlama.Models;

/// <summary>
/// Continuous batching for conversations that generate at the same time on one model: each one's next token waits
/// until every conversation taking part has submitted its own, then all go through the weights together as one
/// matrix-matrix pass (<see cref="InferenceContext.DecodeTogether"/>), which reads the weights once for all of
/// them. Each conversation gets exactly the logits it would get alone, so batching never changes a token.
/// Conversations <see cref="Join"/> when they start generating token by token and <see cref="Leave"/> when they
/// stop; between the two they must keep submitting (<see cref="Decode"/>), or the others wait for them.
/// </summary>
public sealed class DecodeBatcher : IDisposable
{
    private readonly InferenceContext _workspace;
    private readonly object _gate = new();
    private readonly List<InferenceContext> _contexts = [];
    private readonly int[] _tokens;
    private int _participants;
    private long _step;
    private Exception? _failure;
    private long _failedStep = -1;

    /// <param name="maxConversations">The most conversations that can take part at once (a server's slots).</param>
    public DecodeBatcher(LlamaModel model, int maxConversations)
    {
        if (maxConversations < 1) throw new ArgumentOutOfRangeException(nameof(maxConversations));
        // Only its activation buffers are used: one row per conversation.
        _workspace = model.CreateContext(new ContextOptions { ContextSize = maxConversations, MaxBatch = maxConversations });
        _tokens = new int[maxConversations];
        MaxConversations = maxConversations;
    }

    public int MaxConversations { get; }

    /// <summary>Conversations taking part now.</summary>
    public int Participants
    {
        get { lock (_gate) return _participants; }
    }

    /// <summary>Steps run so far, and the rows they held in all (for metrics: rows per step is the batch size).</summary>
    public long Steps { get; private set; }

    public long Rows { get; private set; }

    public void Join()
    {
        lock (_gate)
        {
            if (_participants == MaxConversations) throw new InvalidOperationException($"at most {MaxConversations} conversations take part at once");
            _participants++;
        }
    }

    public void Leave()
    {
        lock (_gate)
        {
            _participants--;
            // The others may have been waiting only for this one.
            if (_contexts.Count > 0 && _contexts.Count == _participants) RunStep();
        }
    }

    /// <summary>
    /// Appends <paramref name="token"/> to <paramref name="context"/> in the next step, and returns its logits once
    /// the step has run (on whichever participant's thread completed it).
    /// </summary>
    public ReadOnlySpan<float> Decode(InferenceContext context, int token)
    {
        lock (_gate)
        {
            if (_contexts.Contains(context)) throw new InvalidOperationException("this context already waits for the step");
            long step = _step;
            _tokens[_contexts.Count] = token;
            _contexts.Add(context);
            if (_contexts.Count >= _participants) RunStep();
            else
                while (_step == step) Monitor.Wait(_gate);
            if (_failedStep == step) throw new InvalidOperationException("the batched step failed: " + _failure!.Message, _failure);
        }
        return context.LastLogits;
    }

    private void RunStep()
    {
        try
        {
            _workspace.DecodeTogether(_contexts, _tokens.AsSpan(0, _contexts.Count));
            Steps++;
            Rows += _contexts.Count;
        }
        catch (Exception e)
        {
            _failure = e;
            _failedStep = _step;
        }
        finally
        {
            _contexts.Clear();
            _step++;
            Monitor.PulseAll(_gate);
        }
    }

    public void Dispose() => _workspace.Dispose();
}

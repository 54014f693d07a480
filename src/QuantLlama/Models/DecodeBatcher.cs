namespace QuantLlama.Models;

/// <summary>
/// Continuous batching for conversations that run at the same time on one model: each one's next token waits
/// until every conversation taking part has submitted its own, then all go through the weights together as one
/// matrix-matrix pass (<see cref="InferenceContext.ForwardTogether"/>), which reads the weights once for all of
/// them. A new conversation's prompt joins the same steps (<see cref="Prompt"/>), one batch of it per step beside
/// the others' tokens, so the conversations already generating keep generating while it is read. Each
/// conversation gets exactly the logits it would get alone, so batching never changes a token.
/// Conversations <see cref="Join"/> when they start generating token by token and <see cref="Leave"/> when they
/// stop; between the two they must keep submitting (<see cref="Decode"/>), or the others wait for them.
/// </summary>
public sealed class DecodeBatcher : IDisposable
{
    private readonly InferenceContext _workspace;
    private readonly object _gate = new();
    // The next step: the generating conversations that submitted a token, then the prompts that take part.
    private readonly List<InferenceContext> _contexts = [];
    private readonly List<InferenceContext> _stepContexts = [];
    private readonly List<PendingPrompt> _prompts = [];
    private readonly List<PendingPrompt> _stepPrompts = [];
    // [maxConversations]: _contexts' tokens; [maxConversations + maxPromptRows]: the step's tokens, row by row.
    private readonly int[] _tokens, _stepTokens, _stepRowCounts;
    private int _participants;
    private long _step;
    private Exception? _failure;
    private long _failedStep = -1;

    /// <param name="maxConversations">The most conversations that can take part at once (a server's slots).</param>
    /// <param name="maxPromptRows">The most prompt tokens one step takes beside the generated ones: a longer prompt
    /// is read over several steps, so it delays each of the others' tokens by at most this many rows' work.</param>
    public DecodeBatcher(LlamaModel model, int maxConversations, int maxPromptRows = 64)
    {
        if (maxConversations < 1) throw new ArgumentOutOfRangeException(nameof(maxConversations));
        if (maxPromptRows < 1) throw new ArgumentOutOfRangeException(nameof(maxPromptRows));
        int rows = maxConversations + maxPromptRows;
        // Only its activation buffers are used: one row per generated token or prompt token in a step.
        _workspace = model.CreateContext(new ContextOptions { ContextSize = rows, MaxBatch = rows });
        _tokens = new int[maxConversations];
        _stepTokens = new int[rows];
        _stepRowCounts = new int[maxConversations];
        MaxConversations = maxConversations;
        MaxPromptRows = maxPromptRows;
    }

    public int MaxConversations { get; }

    public int MaxPromptRows { get; }

    /// <summary>Conversations taking part now (generating or reading a prompt).</summary>
    public int Participants
    {
        get { lock (_gate) return _participants; }
    }

    /// <summary>Steps run so far, and the generated tokens they held in all (rows per step is the batch size).</summary>
    public long Steps { get; private set; }

    public long Rows { get; private set; }

    /// <summary>Prompt tokens the steps held in all.</summary>
    public long PromptRows { get; private set; }

    public void Join()
    {
        lock (_gate) Enter();
    }

    public void Leave()
    {
        lock (_gate)
        {
            _participants--;
            // The others may have been waiting only for this one.
            if (Ready) RunStep();
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
            if (Ready) RunStep();
            else
                while (_step == step) Monitor.Wait(_gate);
            if (_failedStep == step) throw new InvalidOperationException("the batched step failed: " + _failure!.Message, _failure);
        }
        return context.LastLogits;
    }

    /// <summary>
    /// Appends a prompt to <paramref name="context"/> through the steps the generating conversations take: one batch
    /// of it per step, split as <see cref="InferenceContext.Forward"/> splits it (the context's
    /// <see cref="InferenceContext.MaxBatch"/>), so its cache and logits are those it gets alone; returns the last
    /// token's logits. The caller takes part while the prompt is read, and need not <see cref="Join"/> for it. A
    /// context whose batches are larger than <see cref="MaxPromptRows"/> reads a prompt that long on its own.
    /// </summary>
    /// <param name="thenDecode">The caller goes on to <see cref="Decode"/> and stays a participant from the prompt's
    /// last step on, as if it had <see cref="Join"/>ed there; it <see cref="Leave"/>s when done. Otherwise the
    /// others could run steps without it between its prompt and its first generated token. A failed prompt leaves
    /// either way.</param>
    public ReadOnlySpan<float> Prompt(InferenceContext context, ReadOnlySpan<int> tokens, bool thenDecode = false)
    {
        if (Math.Min(tokens.Length, context.MaxBatch) > MaxPromptRows)
        {
            var logits = context.Append(tokens);
            if (thenDecode) Join();
            return logits;
        }
        // What would fail the step fails here, before it can fail the others' tokens with it.
        if (context.Model != _workspace.Model) throw new ArgumentException("the context must be on the batcher's model");
        context.CheckForward(tokens, context.Position);
        var prompt = new PendingPrompt(context, tokens.ToArray()) { ThenDecode = thenDecode };
        lock (_gate)
        {
            if (_contexts.Contains(context) || _prompts.Any(p => p.Context == context)) throw new InvalidOperationException("this context already takes part");
            Enter();
            _prompts.Add(prompt);
            while (!prompt.Finished)
            {
                if (Ready) RunStep();
                else Monitor.Wait(_gate);
            }
            if (prompt.Failure != null) throw new InvalidOperationException("the batched step failed: " + prompt.Failure.Message, prompt.Failure);
        }
        return context.LastLogits;
    }

    private void Enter()
    {
        if (_participants == MaxConversations) throw new InvalidOperationException($"at most {MaxConversations} conversations take part at once");
        _participants++;
    }

    /// <summary>Every participant has something in the next step.</summary>
    private bool Ready => _contexts.Count + _prompts.Count > 0 && _contexts.Count + _prompts.Count >= _participants;

    private void RunStep()
    {
        // The generated tokens, then the waiting prompts' next batches in the order they came, as many as fit.
        _stepContexts.Clear();
        _stepContexts.AddRange(_contexts);
        _tokens.AsSpan(0, _contexts.Count).CopyTo(_stepTokens);
        _stepRowCounts.AsSpan(0, _contexts.Count).Fill(1);
        int rows = _contexts.Count, promptRows = 0;
        _stepPrompts.Clear();
        foreach (var prompt in _prompts)
        {
            int take = Math.Min(prompt.Tokens.Length - prompt.Done, prompt.Context.MaxBatch);
            if (promptRows + take > MaxPromptRows) break;
            prompt.Tokens.AsSpan(prompt.Done, take).CopyTo(_stepTokens.AsSpan(rows));
            _stepRowCounts[_stepContexts.Count] = take;
            _stepContexts.Add(prompt.Context);
            _stepPrompts.Add(prompt);
            prompt.Taking = take;
            rows += take;
            promptRows += take;
        }
        try
        {
            _workspace.ForwardTogether(_stepContexts, _stepTokens.AsSpan(0, rows), _stepRowCounts.AsSpan(0, _stepContexts.Count));
            Steps++;
            Rows += _contexts.Count;
            PromptRows += promptRows;
            foreach (var prompt in _stepPrompts)
            {
                prompt.Done += prompt.Taking;
                if (prompt.Done == prompt.Tokens.Length) Finish(prompt);
            }
        }
        catch (Exception e)
        {
            _failure = e;
            _failedStep = _step;
            foreach (var prompt in _stepPrompts)
            {
                prompt.Failure = e;
                Finish(prompt);
            }
        }
        finally
        {
            _contexts.Clear();
            _stepContexts.Clear();
            _step++;
            Monitor.PulseAll(_gate);
        }
    }

    private void Finish(PendingPrompt prompt)
    {
        prompt.Finished = true;
        _prompts.Remove(prompt);
        if (!prompt.ThenDecode || prompt.Failure != null) _participants--;
    }

    public void Dispose() => _workspace.Dispose();

    /// <summary>A prompt being read: <see cref="Done"/> of its tokens are in the cache.</summary>
    private sealed class PendingPrompt(InferenceContext context, int[] tokens)
    {
        public InferenceContext Context { get; } = context;
        public int[] Tokens { get; } = tokens;
        public int Done, Taking;
        public bool Finished, ThenDecode;
        public Exception? Failure;
    }
}

using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using QuantLlama.Compute;
using QuantLlama.Quants;
using QuantLlama.Tensors;
using AttentionKernels = QuantLlama.Compute.Attention;

namespace QuantLlama.Models;

using Layer = LlamaModel.Layer;
using Weight = LlamaModel.Weight;

/// <summary>
/// One conversation's state over a shared <see cref="LlamaModel"/>: the KV cache, the activation buffers, and the
/// tokens the cache holds. Buffers are allocated once, so a forward pass allocates nothing. A context is used by one
/// thread at a time; any number of contexts on one model run concurrently (see docs/library.md for how they share
/// the worker threads). Follows llama.cpp's graph for the <c>llama</c> architecture; where <c>qwen2</c>, <c>qwen3</c>,
/// <c>gemma2</c> and <c>gemma3</c> differ (biases, Q/K norms, NeoX RoPE, scaled embeddings, post-norms, scaled
/// queries, sliding windows, soft-capping, GELU) the <see cref="ModelArchitecture"/> says so at that step.
/// </summary>
public sealed unsafe class InferenceContext : IDisposable
{
    private readonly LlamaModel _model;
    // The model's RoPE angles for this context's size (LongRoPE's long or short factors).
    private readonly RotaryEmbedding _rope;
    private readonly LlamaModel.Layer[] _layers;
    private readonly LlamaModel.Weight _embedding, _output;
    private readonly float* _outputNorm;
    private readonly List<IntPtr> _allocations = [];
    private readonly List<int> _tokens;

    // Activations, [maxBatch x width] row-major: _x, _xb [dim]; _q, _att [heads x headDim]; _k, _v [kvHeads x headDim];
    // _hb, _hb2 [ff]; _ropeCos, _ropeSin [n_rot/2], and _localCos, _localSin for sliding-window layers with a RoPE of
    // their own (else the same buffers).
    private readonly float* _x, _xb, _q, _k, _v, _att, _hb, _hb2, _ropeCos, _ropeSin, _localCos, _localSin, _logits;
    // Attention's per-head working space: [heads x Attention.ScratchFloats].
    private readonly float* _attentionScratch;
    // Mixture of experts: router logits, chosen experts and weights per row, gathered rows and their outputs.
    private readonly float* _routerLogits, _expertWeights, _gathered, _expertOut;
    private readonly int* _expertIds, _gatherRows;
    private readonly byte* _keyCache, _valueCache;
    private readonly int _elementSize;
    // f32 copies of one layer's f16 keys and values for a batch's attention (see Attention); allocated on first use.
    private float* _kvScratch;
    private readonly int _kvScratchPositions;
    private bool _disposed;
    private bool _ownsModel;
    // Set only while this context is the workspace of a step over several conversations (DecodeTogether): row i's
    // token belongs to _rowContexts[i] at _rowPositions[i], whose own cache it reads and extends.
    private InferenceContext[]? _rowContexts;
    private int[]? _rowPositions;
    private bool _severalConversations;
    // [conversations x vocab]: each conversation's last row's logits in such a step; allocated on first use, and
    // replaced by a larger one when more conversations take part than it has rows for.
    private float* _rowLogits;
    private int _rowLogitsCapacity;

    public LlamaModel Model => _model;

    public LlamaConfig Config => _model.Config;

    /// <summary>Positions the KV cache holds: prompt plus generated tokens must fit.</summary>
    public int ContextSize { get; }

    public int MaxBatch { get; }

    public KvCacheType KvCacheType { get; }

    /// <summary>The attention an f16 cache follows (<see cref="FlashAttention.Auto"/> resolved).</summary>
    public FlashAttention FlashAttention { get; }

    /// <summary>The model's own warm-up context (<see cref="ModelOptions.WarmUp"/>), which must not wait for itself.</summary>
    internal bool IsWarmUp { get; init; }

    /// <summary>Records the forward pass's spans when set (--tracing).</summary>
    public ForwardTracer? Tracer { get; set; }

    public long KvCacheBytes { get; }

    /// <summary>The tokens whose keys and values the cache holds, in order (position i holds token i).</summary>
    public IReadOnlyList<int> Tokens => _tokens;

    /// <summary>Tokens in the cache: the position of the next token.</summary>
    public int Position => _tokens.Count;

    /// <summary>
    /// Loads a model for a single conversation: the context owns the model and disposes it with itself. Several
    /// conversations share one <see cref="LlamaModel"/> through <see cref="LlamaModel.CreateContext"/> instead.
    /// </summary>
    public static InferenceContext Load(string path, ContextOptions? options = null, int gqa = 1, ModelOptions? modelOptions = null)
    {
        var model = LlamaModel.Load(path, gqa, modelOptions);
        try
        {
            return new InferenceContext(model, options) { _ownsModel = true };
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    internal InferenceContext(LlamaModel model, ContextOptions? options)
    {
        options ??= new ContextOptions();
        _model = model;
        _layers = model.Layers;
        _embedding = model.Embedding;
        _output = model.Output;
        _outputNorm = model.OutputNorm;
        var c = Config;
        int ctx = options.ContextSize ?? Math.Min(c.ContextLength, ContextOptions.DefaultMaxContext);
        if (ctx <= 0) throw new ArgumentException($"context size {ctx} must be positive");
        ContextSize = ctx;
        _rope = model.RopeFor(ctx);
        _tokens = new List<int>(ctx); // sized once: the token path allocates nothing
        MaxBatch = Math.Clamp(options.MaxBatch, 1, ctx);
        KvCacheType = options.KvCacheType;
        _elementSize = KvCacheType == KvCacheType.F16 ? 2 : 4;
        FlashAttention = options.FlashAttention == FlashAttention.Off ? FlashAttention.Off : FlashAttention.On;
        int dim = c.EmbeddingLength, qDim = c.QueryDim, kvDim = c.KvDim, ff = c.FeedForwardLength;
        try
        {
            int b = MaxBatch;
            _x = Floats((long)b * dim);
            _xb = Floats((long)b * dim);
            _q = Floats((long)b * qDim);
            _k = Floats((long)b * kvDim);
            _v = Floats((long)b * kvDim);
            _att = Floats((long)b * Math.Max(qDim, dim)); // also the experts' output accumulator, [n x dim]
            _hb = Floats((long)b * ff);
            _hb2 = Floats((long)b * ff);
            _attentionScratch = Floats(c.HeadCount * AttentionKernels.ScratchFloats(ctx, c.HeadDim, MaxBatch));
            _kvScratchPositions = (int)Math.Min(ctx, (32L << 20) / ((long)kvDim * 2 * sizeof(float)));
            _ropeCos = Floats((long)b * (c.RopeDimensionCount / 2));
            _ropeSin = Floats((long)b * (c.RopeDimensionCount / 2));
            _localCos = model.LocalRope == null ? _ropeCos : Floats((long)b * (c.RopeDimensionCount / 2));
            _localSin = model.LocalRope == null ? _ropeSin : Floats((long)b * (c.RopeDimensionCount / 2));
            _logits = Floats(c.VocabSize);
            if (c.IsMixtureOfExperts)
            {
                _routerLogits = Floats((long)b * c.ExpertCount);
                _expertWeights = Floats((long)b * c.ExpertUsedCount);
                _expertIds = (int*)Alloc((long)b * c.ExpertUsedCount * sizeof(int));
                _gatherRows = (int*)Alloc((long)b * sizeof(int));
                _gathered = Floats((long)b * dim);
                _expertOut = Floats((long)b * dim);
            }
            // Zeroed pages are only committed when first written, so a large cache costs what the conversation uses.
            KvCacheBytes = 2L * c.BlockCount * ctx * kvDim * _elementSize;
            _keyCache = (byte*)Alloc(KvCacheBytes / 2);
            _valueCache = (byte*)Alloc(KvCacheBytes / 2);
        }
        catch
        {
            FreeBuffers();
            throw;
        }
    }

    private float* Floats(long count) => (float*)Alloc(count * sizeof(float));

    private void* Alloc(long bytes)
    {
        void* p;
        try
        {
            p = NativeMemory.AllocZeroed((nuint)Math.Max(bytes, 1));
        }
        catch (OutOfMemoryException)
        {
            throw new InsufficientMemoryException($"cannot allocate {bytes / 1e6:F1} MB for the context's buffers; a smaller context size needs less");
        }
        _allocations.Add((IntPtr)p);
        return p;
    }

    /// <summary>
    /// Runs the tokens at positions startPosition.. through the model, filling the KV cache, and returns the logits
    /// of the last token (valid until the next call). Whatever the cache held from startPosition on is replaced, so
    /// startPosition is at most <see cref="Position"/>. Prompts go through as matrix-matrix batches; one token uses
    /// matrix-vector products.
    /// </summary>
    public ReadOnlySpan<float> Forward(scoped ReadOnlySpan<int> tokens, int startPosition)
    {
        CheckForward(tokens, startPosition);
        RunBatches(tokens, startPosition, null);
        return new ReadOnlySpan<float>(_logits, Config.VocabSize);
    }

    /// <summary>
    /// As <see cref="Forward"/>, but keeps every position's logits: row i of <paramref name="allLogits"/>
    /// [tokens x vocab] is the distribution after tokens[0..i] (perplexity scores each position).
    /// </summary>
    internal void ForwardAllLogits(scoped ReadOnlySpan<int> tokens, int startPosition, Span<float> allLogits)
    {
        CheckForward(tokens, startPosition);
        if (allLogits.Length < (long)tokens.Length * Config.VocabSize)
            throw new ArgumentException($"room for {tokens.Length} rows of {Config.VocabSize} logits is needed", nameof(allLogits));
        fixed (float* destination = allLogits) RunBatches(tokens, startPosition, destination);
    }

    /// <summary>Throws unless <paramref name="tokens"/> can be processed from <paramref name="startPosition"/>: a live context, ids within
    /// the vocabulary, room in the context.</summary>
    internal void CheckForward(scoped ReadOnlySpan<int> tokens, int startPosition)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.Length == 0) throw new ArgumentException("no tokens to process");
        if (startPosition < 0 || startPosition > Position)
            throw new ArgumentOutOfRangeException(nameof(startPosition), $"position {startPosition} is not within the {Position} cached tokens");
        if (startPosition + tokens.Length > ContextSize)
            throw new ContextFullException(ContextSize, startPosition + tokens.Length);
        foreach (int t in tokens)
            if ((uint)t >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the model's vocabulary of {Config.VocabSize}");
    }

    /// <summary>The tokens in batches of at most <see cref="MaxBatch"/>; every row's logits go to
    /// <paramref name="allLogits"/> when given, otherwise only the last row's to <see cref="LastLogits"/>.</summary>
    private void RunBatches(scoped ReadOnlySpan<int> tokens, int startPosition, float* allLogits)
    {
        _tokens.RemoveRange(startPosition, _tokens.Count - startPosition);
        int done = 0;
        while (done < tokens.Length)
        {
            int n = Math.Min(MaxBatch, tokens.Length - done);
            ForwardBatch(tokens.Slice(done, n), startPosition + done, computeLogits: done + n == tokens.Length,
                allLogits == null ? null : allLogits + (long)done * Config.VocabSize);
            foreach (int t in tokens.Slice(done, n)) _tokens.Add(t);
            done += n;
        }
    }

    /// <summary>
    /// One token for each of several conversations on this model, as one pass through the weights: row i is
    /// <paramref name="tokens"/>[i] appended to <paramref name="contexts"/>[i] (its cache, its position), and its
    /// logits land in that context (read them with <see cref="LastLogits"/>). Every product computes each row with
    /// exactly the arithmetic of a single row, and attention runs per conversation, so each one's logits are the
    /// bits it would get alone. This context lends only its activation buffers (at least as many rows as contexts).
    /// </summary>
    public void DecodeTogether(IReadOnlyList<InferenceContext> contexts, ReadOnlySpan<int> tokens)
        => ForwardTogether(contexts, tokens, []);

    /// <summary>
    /// As <see cref="DecodeTogether"/>, but conversation i appends <paramref name="rowCounts"/>[i] tokens, taken in
    /// order from <paramref name="tokens"/> (a prompt's next batch beside the others' next tokens); each gets the
    /// logits of its last row. A conversation's rows attend as one batch of its own, so they give the bits that
    /// <see cref="Forward"/> gives for the same batch alone: a prompt split as <see cref="Forward"/> splits it
    /// (batches of the context's <see cref="MaxBatch"/>) fills the same cache and ends with the same logits.
    /// An empty <paramref name="rowCounts"/> means one row each.
    /// </summary>
    public void ForwardTogether(IReadOnlyList<InferenceContext> contexts, ReadOnlySpan<int> tokens, ReadOnlySpan<int> rowCounts)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int conversations = contexts.Count;
        if (rowCounts.Length != 0 && rowCounts.Length != conversations) throw new ArgumentException("one row count per context");
        int n = 0;
        for (int i = 0; i < conversations; i++) n += rowCounts.Length == 0 ? 1 : rowCounts[i];
        if (n != tokens.Length) throw new ArgumentException($"the row counts add up to {n}, but {tokens.Length} tokens were given");
        if (conversations == 0) return;
        if (n > MaxBatch) throw new ArgumentException($"{n} rows do not fit this context's batch of {MaxBatch}");
        _rowContexts ??= new InferenceContext[MaxBatch];
        _rowPositions ??= new int[MaxBatch];
        for (int i = 0, row = 0; i < conversations; i++)
        {
            var ctx = contexts[i];
            int rows = rowCounts.Length == 0 ? 1 : rowCounts[i];
            if (ctx.Model != Model) throw new ArgumentException("every context must be on this context's model");
            if (rows < 1 || rows > ctx.MaxBatch) throw new ArgumentException($"{rows} rows for one context, which takes 1 to {ctx.MaxBatch} at once");
            ctx.CheckForward(tokens.Slice(row, rows), ctx.Position);
            for (int j = 0; j < i; j++)
                if (contexts[j] == ctx) throw new ArgumentException("a context appears twice in one step");
            for (int r = 0; r < rows; r++, row++)
            {
                _rowContexts[row] = ctx;
                _rowPositions[row] = ctx.Position + r;
            }
        }
        if (_rowLogitsCapacity < conversations)
        {
            if (_rowLogits != null)
            {
                _allocations.Remove((IntPtr)_rowLogits);
                NativeMemory.Free(_rowLogits);
            }
            _rowLogits = null;
            _rowLogitsCapacity = 0;
            _rowLogits = Floats((long)conversations * Config.VocabSize);
            _rowLogitsCapacity = conversations;
        }
        _severalConversations = true;
        try
        {
            ForwardBatch(tokens, 0, computeLogits: true);
        }
        finally
        {
            _severalConversations = false;
            Array.Clear(_rowContexts);
        }
        for (int i = 0, row = 0; i < conversations; i++)
        {
            int rows = rowCounts.Length == 0 ? 1 : rowCounts[i];
            foreach (int t in tokens.Slice(row, rows)) contexts[i]._tokens.Add(t);
            row += rows;
        }
    }

    /// <summary>The logits of the last token this context computed (valid until its next step).</summary>
    public ReadOnlySpan<float> LastLogits => new(_logits, Config.VocabSize);

    /// <summary>Runs the tokens after what the cache holds; returns the last one's logits.</summary>
    public ReadOnlySpan<float> Append(scoped ReadOnlySpan<int> tokens) => Forward(tokens, Position);

    /// <summary>
    /// Keeps the longest prefix of the cache that <paramref name="tokens"/> starts with, short of its last token (whose
    /// logits the caller needs), and forgets the rest; returns how many cached tokens it kept. The caller then
    /// appends <c>tokens[kept..]</c>: a conversation re-sent with one more turn computes only that turn
    /// (llama-server's cache_prompt).
    /// </summary>
    public int KeepCommonPrefix(IReadOnlyList<int> tokens)
    {
        int limit = Math.Min(_tokens.Count, tokens.Count - 1), kept = 0;
        while (kept < limit && _tokens[kept] == tokens[kept]) kept++;
        _tokens.RemoveRange(kept, _tokens.Count - kept);
        return kept;
    }

    /// <summary>Forgets the conversation: the next token goes to position 0.</summary>
    public void Reset() => _tokens.Clear();

    private void ForwardBatch(ReadOnlySpan<int> tokens, int start, bool computeLogits, float* allRowsLogits = null)
    {
        if (!IsWarmUp) _model.WaitForWarmUp();
        var c = Config;
        int n = tokens.Length, dim = c.EmbeddingLength;
        var tracer = Tracer;
        long t0 = tracer?.Begin() ?? 0;

        // _x [n x dim] = the tokens' embedding rows; cos/sin [n x n_rot/2] for each row's position
        long embRowBytes = GgmlTypeInfo.RowBytes(_embedding.Type, dim);
        for (int i = 0; i < n; i++)
            Dequantizer.DequantizeRow(_embedding.Type, new ReadOnlySpan<byte>(_embedding.Data + tokens[i] * embRowBytes, (int)embRowBytes),
                new Span<float>(_x + (long)i * dim, dim));
        if (c.Architecture.ScalesEmbeddings) RowKernels.Scale(_x, (long)n * dim, MathF.Sqrt(dim)); // Gemma
        for (int i = 0; i < n; i++) PrepareRope(i, _severalConversations ? _rowPositions![i] : start + i);
        tracer?.End(TraceSpan.Embedding, t0);

        // Rows the feed-forward runs on: all but in the last layer, where only the rows whose logits are asked for
        // matter (llama.cpp drops the others there too, so its last feed-forward sums as one row does).
        int rows = n;
        bool lastRowOnly = !_severalConversations && allRowsLogits == null;
        for (int l = 0; l < _layers.Length; l++)
        {
            var layer = _layers[l];
            long ta = tracer?.Begin() ?? 0;
            Attention(l, layer, n, start);
            tracer?.End(TraceSpan.Attention, ta);
            if (l == _layers.Length - 1 && lastRowOnly && n > 1)
            {
                Buffer.MemoryCopy(_x + (long)(n - 1) * dim, _x, dim * 4L, dim * 4L);
                rows = 1;
            }

            long tf = tracer?.Begin() ?? 0;
            // _x [rows x dim] += feed-forward(rmsnorm(_x)): dense, or the experts the router picks per row; Gemma norms the result
            RowKernels.RmsNorm(_x, layer.FfnNorm, _xb, rows, dim, c.RmsEpsilon);
            if (c.IsMixtureOfExperts) MixtureOfExperts(layer, rows);
            else FeedForward(layer.Gate, layer.Up, layer.Down, _xb, rows, _xb);
            if (layer.FfnPostNorm != null) RowKernels.RmsNorm(_xb, layer.FfnPostNorm, _xb, rows, dim, c.RmsEpsilon);
            RowKernels.Add(_x, _xb, (long)rows * dim);
            tracer?.End(c.IsMixtureOfExperts ? TraceSpan.Experts : TraceSpan.FeedForward, tf);
        }

        if (_severalConversations)
        {
            // _xb [conversations x dim] = rmsnorm of each conversation's last row of _x;
            // _rowLogits [conversations x vocab] = _xb · Woutput, each row to its own conversation.
            int last = 0;
            for (int i = 0; i < n; i++)
                if (i == n - 1 || _rowContexts![i + 1] != _rowContexts[i])
                    RowKernels.RmsNorm(_x + (long)i * dim, _outputNorm, _xb + (long)last++ * dim, 1, dim, c.RmsEpsilon);
            ProjectToLogits(last, _rowLogits);
            for (int i = 0, conversation = 0; i < n; i++)
                if (i == n - 1 || _rowContexts![i + 1] != _rowContexts[i])
                    Buffer.MemoryCopy(_rowLogits + (long)conversation++ * c.VocabSize, _rowContexts![i]._logits, c.VocabSize * 4L, c.VocabSize * 4L);
        }
        else if (allRowsLogits != null)
        {
            long to = tracer?.Begin() ?? 0;
            // allRowsLogits [n x vocab], the last row also kept as LastLogits
            Logits(_x, n, allRowsLogits);
            Buffer.MemoryCopy(allRowsLogits + (long)(n - 1) * c.VocabSize, _logits, c.VocabSize * 4L, c.VocabSize * 4L);
            tracer?.End(TraceSpan.Output, to);
        }
        else if (computeLogits)
        {
            long to = tracer?.Begin() ?? 0;
            // _logits [vocab] of the last row
            Logits(_x + (long)(rows - 1) * dim, 1, _logits);
            tracer?.End(TraceSpan.Output, to);
        }
    }

    /// <summary>logits [n x vocab] = rmsnorm(x) · Woutput for n rows of x [n x dim], soft-capped where the model says (Gemma 2).</summary>
    private void Logits(float* x, int n, float* logits)
    {
        var c = Config;
        RowKernels.RmsNorm(x, _outputNorm, _xb, n, c.EmbeddingLength, c.RmsEpsilon);
        ProjectToLogits(n, logits);
    }

    /// <summary>logits [n x vocab] = _xb [n x dim] (already normed) · Woutput, soft-capped where the model caps them.</summary>
    private void ProjectToLogits(int n, float* logits)
    {
        Mul(_output, _xb, n, logits);
        if (Config.FinalSoftCap > 0) RowKernels.SoftCap(logits, (long)n * Config.VocabSize, Config.FinalSoftCap);
    }

    private void Attention(int l, Layer layer, int n, int start)
    {
        var c = Config;
        int dim = c.EmbeddingLength, qDim = c.QueryDim, kvDim = c.KvDim, headDim = c.HeadDim;
        // _xb [n x dim] = rmsnorm(_x); _q [n x qDim], _k and _v [n x kvDim] = _xb · Wq, Wk, Wv: one quantization
        // of the normed activation and one dispatch for all three projections.
        RowKernels.RmsNorm(_x, layer.AttnNorm, _xb, n, dim, c.RmsEpsilon);
        var qkv = stackalloc MatMul.Product[3];
        qkv[0] = new MatMul.Product(layer.Wq.Type, layer.Wq.Data, layer.Wq.Rows, _q, layer.Wq.RowGroups);
        qkv[1] = new MatMul.Product(layer.Wk.Type, layer.Wk.Data, layer.Wk.Rows, _k, layer.Wk.RowGroups);
        qkv[2] = new MatMul.Product(layer.Wv.Type, layer.Wv.Data, layer.Wv.Rows, _v, layer.Wv.RowGroups);
        MatMul.Group(qkv, 3, dim, _xb, n);
        if (layer.BiasQ != null)
            for (int i = 0; i < n; i++)
            {
                RowKernels.Add(_q + (long)i * qDim, layer.BiasQ, qDim);
                RowKernels.Add(_k + (long)i * kvDim, layer.BiasK, kvDim);
                RowKernels.Add(_v + (long)i * kvDim, layer.BiasV, kvDim);
            }
        if (layer.QNorm != null)
        {
            // Qwen3: each head's query and key normed on their own, before RoPE.
            RowKernels.RmsNorm(_q, layer.QNorm, _q, n * c.HeadCount, headDim, c.RmsEpsilon);
            RowKernels.RmsNorm(_k, layer.KNorm, _k, n * c.HeadCountKv, headDim, c.RmsEpsilon);
        }
        bool local = c.IsLocalLayer(l);
        for (int i = 0; i < n; i++)
        {
            Rope(_q + (long)i * qDim, c.HeadCount, i, local);
            Rope(_k + (long)i * kvDim, c.HeadCountKv, i, local);
        }
        // Gemma: queries scaled here, attention's own scale 1.
        if (c.QueryScale != 0) RowKernels.Scale(_q, (long)n * qDim, c.QueryScale);

        // _att [n x qDim] = softmax(q·Kᵀ/√headDim)·V per head, over this conversation's cache (or each row's own).
        if (!_severalConversations)
        {
            var job = StoreForAttention(l, _q, _k, _v, _att, n, start);
            AttentionKernels.Run(&job, 1, c.HeadCount);
        }
        else
        {
            // One job per conversation (its consecutive rows attend as one batch, as they would alone), all heads of
            // all of them in one dispatch.
            int conversations = 1;
            for (int i = 1; i < n; i++) if (_rowContexts![i] != _rowContexts[i - 1]) conversations++;
            var jobs = stackalloc AttentionJob[conversations];
            int count = 0;
            for (int i = 0, rows; i < n; i += rows)
            {
                var owner = _rowContexts![i];
                rows = 1;
                while (i + rows < n && _rowContexts[i + rows] == owner) rows++;
                jobs[count++] = owner.StoreForAttention(l, _q + (long)i * qDim, _k + (long)i * kvDim, _v + (long)i * kvDim, _att + (long)i * qDim, rows, _rowPositions![i]);
            }
            AttentionKernels.Run(jobs, count, c.HeadCount);
        }

        // _x [n x dim] += _att · Wo (Gemma: rmsnorm of it)
        Mul(layer.Wo, _att, n, _xb);
        if (layer.BiasO != null)
            for (int i = 0; i < n; i++) RowKernels.Add(_xb + (long)i * dim, layer.BiasO, dim);
        if (layer.AttnPostNorm != null) RowKernels.RmsNorm(_xb, layer.AttnPostNorm, _xb, n, dim, c.RmsEpsilon);
        RowKernels.Add(_x, _xb, (long)n * dim);
    }

    /// <summary>
    /// Writes n rows of keys and values [n x kvDim] to this cache at positions start.., and returns the job that
    /// attends the n queries [n x qDim] over it (causally) into output [n x qDim].
    /// </summary>
    private AttentionJob StoreForAttention(int l, float* q, float* k, float* v, float* output, int n, int start)
    {
        var c = Config;
        int qDim = c.QueryDim, kvDim = c.KvDim, headDim = c.HeadDim;
        long layerOffset = (long)l * ContextSize * kvDim * _elementSize;
        byte* keys = _keyCache + layerOffset, values = _valueCache + layerOffset;
        for (int i = 0; i < n; i++)
        {
            long at = (long)(start + i) * kvDim * _elementSize;
            if (KvCacheType == KvCacheType.F16)
            {
                HalfConversion.ToHalf(k + (long)i * kvDim, (Half*)(keys + at), kvDim);
                HalfConversion.ToHalf(v + (long)i * kvDim, (Half*)(values + at), kvDim);
            }
            else
            {
                Buffer.MemoryCopy(k + (long)i * kvDim, keys + at, kvDim * 4L, kvDim * 4L);
                Buffer.MemoryCopy(v + (long)i * kvDim, values + at, kvDim * 4L, kvDim * 4L);
            }
        }

        bool f16 = KvCacheType == KvCacheType.F16, rowsF16 = f16;
        if (f16 && n > 1 && start + n <= _kvScratchPositions)
        {
            // A batch reads every cached key and value once per query head and row: convert them to f32 once here
            // instead (the same values, so the same bits), up to 32 MB of scratch.
            if (_kvScratch == null) _kvScratch = Floats((long)_kvScratchPositions * kvDim * 2);
            float* scratchValues = _kvScratch + (long)_kvScratchPositions * kvDim;
            HalfConversion.ToSingle((Half*)keys, _kvScratch, (start + n) * kvDim);
            HalfConversion.ToSingle((Half*)values, scratchValues, (start + n) * kvDim);
            keys = (byte*)_kvScratch;
            values = (byte*)scratchValues;
            rowsF16 = false;
        }
        return new AttentionJob
        {
            Q = q, Output = output, Scratch = _attentionScratch, Keys = keys, Values = values, Dim = qDim, KvDim = kvDim,
            HeadDim = headDim, Group = c.HeadCount / c.HeadCountKv, ContextSize = ContextSize, MaxBatch = MaxBatch, N = n,
            Start = start, KeysF16 = rowsF16, Scale = c.QueryScale != 0 ? 1f : 1f / MathF.Sqrt(headDim), SoftCap = c.AttentionSoftCap,
            Window = c.IsLocalLayer(l) ? c.SlidingWindow : 0,
            Rounding = !f16 ? AttentionRounding.Full : FlashAttention == FlashAttention.Off ? AttentionRounding.Unfused : AttentionRounding.Flash,
        };
    }

    /// <summary>cos/sin of each rotated pair for row <paramref name="row"/> at <paramref name="position"/> (see <see cref="RotaryEmbedding"/>).</summary>
    private void PrepareRope(int row, int position)
    {
        int pairs = Config.RopeDimensionCount / 2;
        _rope.Angles(position, _ropeCos + (long)row * pairs, _ropeSin + (long)row * pairs);
        _model.LocalRope?.Angles(position, _localCos + (long)row * pairs, _localSin + (long)row * pairs);
    }

    /// <summary>
    /// Rotary embedding of the first n_rot values of each head: adjacent pairs (x[2j], x[2j+1]) in normal mode,
    /// (x[j], x[j + n_rot/2]) in NeoX mode.
    /// </summary>
    private void Rope(float* vec, int heads, int row, bool local)
    {
        int headDim = Config.HeadDim, pairs = Config.RopeDimensionCount / 2;
        bool neox = Config.Architecture.Rope == RopeMode.Neox;
        int step = neox ? 1 : 2, offset = neox ? pairs : 1;
        float* cos = (local ? _localCos : _ropeCos) + (long)row * pairs, sin = (local ? _localSin : _ropeSin) + (long)row * pairs;
        for (int h = 0; h < heads; h++)
        {
            float* x = vec + h * headDim;
            for (int p = 0; p < pairs; p++)
            {
                float* first = x + p * step;
                float x0 = first[0], x1 = first[offset];
                // llama.cpp's build contracts each line into one fused multiply-add: the first product fused, the
                // second rounded on its own.
                first[0] = MathF.FusedMultiplyAdd(x0, cos[p], -(x1 * sin[p]));
                first[offset] = MathF.FusedMultiplyAdd(x0, sin[p], x1 * cos[p]);
            }
        }
    }

    /// <summary>out = W_down (act(W_gate x) * (W_up x)) for n rows of x, act silu or (Gemma) GELU.</summary>
    private void FeedForward(in Weight gate, in Weight up, in Weight down, float* x, int n, float* output)
    {
        int ff = gate.Rows;
        // _hb, _hb2 [n x ff] = x · Wgate, x · Wup (one dispatch); output [n x dim] = (silu(_hb) * _hb2) · Wdown
        var gateUp = stackalloc MatMul.Product[2];
        gateUp[0] = new MatMul.Product(gate.Type, gate.Data, gate.Rows, _hb, gate.RowGroups);
        gateUp[1] = new MatMul.Product(up.Type, up.Data, up.Rows, _hb2, up.RowGroups);
        MatMul.Group(gateUp, 2, gate.Cols, x, n);
        if (Config.Architecture.Activation == FeedForwardActivation.GeluTanh) RowKernels.GeGlu(_hb, _hb2, n, ff);
        else RowKernels.SwiGlu(_hb, _hb2, n, ff);
        Mul(down, _hb, n, output);
    }

    /// <summary>
    /// Mixtral: the router picks the top-k experts per row, weighted by a softmax over the chosen logits; each expert
    /// runs once over the rows that chose it (gathered into a batch), and its output is added back with the weight.
    /// </summary>
    private void MixtureOfExperts(Layer layer, int n)
    {
        var c = Config;
        int dim = c.EmbeddingLength, experts = c.ExpertCount, used = c.ExpertUsedCount;
        // _routerLogits [n x experts] = _xb · Wrouter; per row, the top experts and their softmax weights
        Mul(layer.Router, _xb, n, _routerLogits);
        for (int i = 0; i < n; i++)
            RowKernels.SelectExperts(_routerLogits + (long)i * experts, experts, used, _expertIds + (long)i * used, _expertWeights + (long)i * used);

        // _xb holds the normed input; the result is accumulated into _att (free after attention) then copied back.
        float* result = _att;
        new Span<float>(result, n * dim).Clear();
        for (int e = 0; e < experts; e++)
        {
            int rows = 0;
            for (int i = 0; i < n; i++)
                for (int k = 0; k < used; k++)
                    if (_expertIds[(long)i * used + k] == e)
                    {
                        _gatherRows[rows] = i;
                        Buffer.MemoryCopy(_xb + (long)i * dim, _gathered + (long)rows * dim, dim * 4L, dim * 4L);
                        rows++;
                    }
            if (rows == 0) continue;
            FeedForward(layer.ExpertGate[e], layer.ExpertUp[e], layer.ExpertDown[e], _gathered, rows, _expertOut);
            for (int r = 0; r < rows; r++)
            {
                int i = _gatherRows[r];
                float w = 0;
                for (int k = 0; k < used; k++)
                    if (_expertIds[(long)i * used + k] == e) w = _expertWeights[(long)i * used + k];
                RowKernels.ScaleAdd(w, _expertOut + (long)r * dim, result + (long)i * dim, dim);
            }
        }
        Buffer.MemoryCopy(result, _xb, n * dim * 4L, n * dim * 4L);
    }

    private static void Mul(in Weight w, float* x, int n, float* y)
    {
        if (n == 1 && w.RowGroups == null)
            MatMul.MatVec(w.Type, w.Data, w.Rows, w.Cols, new ReadOnlySpan<float>(x, w.Cols), new Span<float>(y, w.Rows));
        else
        {
            var product = new MatMul.Product(w.Type, w.Data, w.Rows, y, w.RowGroups);
            MatMul.Group(&product, 1, w.Cols, x, n);
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        FreeBuffers();
        if (_ownsModel) _model.Dispose();
    }

    private void FreeBuffers()
    {
        foreach (var p in _allocations) NativeMemory.Free((void*)p);
        _allocations.Clear();
    }
}

/// <summary>The prompt and the generated tokens no longer fit in the KV cache.</summary>
public sealed class ContextFullException(int contextSize, int needed)
    : InvalidOperationException($"the context holds {contextSize} tokens, {needed} are needed")
{
    public int ContextSize { get; } = contextSize;
    public int Needed { get; } = needed;
}

using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using QuantLlama.Compute;
using QuantLlama.Gguf;
using QuantLlama.Quants;
using QuantLlama.Tensors;
using AttentionKernels = QuantLlama.Compute.Attention;

namespace QuantLlama.Models;

/// <summary>Element type of the key/value cache.</summary>
public enum KvCacheType
{
    /// <summary>Half the memory; what llama.cpp uses by default. Attention rounds as <see cref="FlashAttention"/> says.</summary>
    F16,

    /// <summary>Twice the memory, and attention without f16 rounding (llama.cpp's f32 cache with flash attention off).</summary>
    F32,
}

/// <summary>Which of llama.cpp's two attention computations an f16 cache follows, each rounding where llama.cpp's does.</summary>
public enum FlashAttention
{
    /// <summary>What llama.cpp picks on a CPU: <see cref="On"/>.</summary>
    Auto,

    /// <summary>Query rounded to f16, output accumulated in f16 with an online softmax (tiled in f32 for batches of 64 or more).</summary>
    On,

    /// <summary>Query and softmax weights rounded to f16; scores and output summed in f32.</summary>
    Off,
}

public sealed record LlamaModelOptions
{
    /// <summary>Positions the KV cache holds; null: the model's context length, at most <see cref="DefaultMaxContext"/>.</summary>
    public int? ContextSize { get; init; }

    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;

    /// <summary>Attention over an f16 cache; an f32 cache does not round either way.</summary>
    public FlashAttention FlashAttention { get; init; } = FlashAttention.Auto;

    /// <summary>Prompt tokens processed per matrix-matrix pass; longer prompts go in several passes.</summary>
    public int MaxBatch { get; init; } = 512;

    /// <summary>candle's quantized example's MAX_SEQ_LEN.</summary>
    public const int DefaultMaxContext = 4096;
}

/// <summary>
/// A LLaMA / Mistral / Mixtral transformer over a memory-mapped model file: weights stay in the mapping, activations
/// and the KV cache live in buffers allocated once, so a forward pass allocates nothing.
/// Follows llama.cpp's graph for the <c>llama</c> architecture (normal-mode RoPE on adjacent pairs).
/// </summary>
public sealed unsafe class LlamaModel : IDisposable
{
    /// <summary>A matrix of <see cref="Rows"/> rows of <see cref="Cols"/> values inside the mapping.</summary>
    internal readonly struct Weight(GgmlType type, byte* data, int rows, int cols)
    {
        public readonly GgmlType Type = type;
        public readonly byte* Data = data;
        public readonly int Rows = rows;
        public readonly int Cols = cols;
    }

    private sealed class Layer
    {
        public required float* AttnNorm;
        public required Weight Wq, Wk, Wv, Wo;
        public required float* FfnNorm;
        // Dense feed-forward.
        public Weight Gate, Up, Down;
        // Mixture of experts.
        public Weight Router;
        public Weight[] ExpertGate = [], ExpertUp = [], ExpertDown = [];
    }

    private readonly IModelFile _file;
    private readonly bool _ownsFile;
    private readonly Layer[] _layers;
    private readonly Weight _embedding, _output;
    private readonly float* _outputNorm;
    private readonly List<IntPtr> _allocations = [];

    // Activations, [maxBatch x width] row-major.
    private readonly float* _x, _xb, _q, _k, _v, _att, _hb, _hb2, _ropeCos, _ropeSin, _logits;
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

    public LlamaConfig Config { get; }

    /// <summary>Positions the KV cache holds: prompt plus generated tokens must fit.</summary>
    public int ContextSize { get; }

    public int MaxBatch { get; }

    public KvCacheType KvCacheType { get; }

    /// <summary>The attention an f16 cache follows (<see cref="FlashAttention.Auto"/> resolved).</summary>
    public FlashAttention FlashAttention { get; }

    /// <summary>Records the forward pass's spans when set (--tracing).</summary>
    public ForwardTracer? Tracer { get; set; }

    /// <summary>Bytes of all tensors the model reads (for "loaded N tensors (X GB)").</summary>
    public long WeightBytes { get; }

    public long KvCacheBytes { get; }

    public IModelFile File => _file;

    public static LlamaModel Load(string path, LlamaModelOptions? options = null, int gqa = 1)
    {
        var file = ModelFileLoader.Open(path, gqa);
        try
        {
            return new LlamaModel(file, options, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public LlamaModel(IModelFile file, LlamaModelOptions? options = null, bool ownsFile = false)
    {
        options ??= new LlamaModelOptions();
        _file = file;
        _ownsFile = ownsFile;
        var c = Config = LlamaConfig.FromModelFile(file);
        int ctx = options.ContextSize ?? Math.Min(c.ContextLength, LlamaModelOptions.DefaultMaxContext);
        if (ctx <= 0) throw new ArgumentException($"context size {ctx} must be positive");
        ContextSize = ctx;
        MaxBatch = Math.Clamp(options.MaxBatch, 1, ctx);
        KvCacheType = options.KvCacheType;
        _elementSize = KvCacheType == KvCacheType.F16 ? 2 : 4;
        FlashAttention = options.FlashAttention == FlashAttention.Off ? FlashAttention.Off : FlashAttention.On;

        int dim = c.EmbeddingLength, kvDim = c.KvDim, ff = c.FeedForwardLength;
        _embedding = Matrix("token_embd.weight", dim, c.VocabSize);
        _output = file.FindTensor("output.weight") != null ? Matrix("output.weight", dim, c.VocabSize) : _embedding;
        _outputNorm = Vector("output_norm.weight", dim);
        _layers = new Layer[c.BlockCount];
        for (int l = 0; l < c.BlockCount; l++)
        {
            string p = $"blk.{l}.";
            var layer = new Layer
            {
                AttnNorm = Vector(p + "attn_norm.weight", dim),
                Wq = Matrix(p + "attn_q.weight", dim, dim),
                Wk = Matrix(p + "attn_k.weight", dim, kvDim),
                Wv = Matrix(p + "attn_v.weight", dim, kvDim),
                Wo = Matrix(p + "attn_output.weight", dim, dim),
                FfnNorm = Vector(p + "ffn_norm.weight", dim),
            };
            if (c.IsMixtureOfExperts)
            {
                layer.Router = Matrix(p + "ffn_gate_inp.weight", dim, c.ExpertCount);
                layer.ExpertGate = Experts(p, "ffn_gate", dim, ff, c.ExpertCount);
                layer.ExpertUp = Experts(p, "ffn_up", dim, ff, c.ExpertCount);
                layer.ExpertDown = Experts(p, "ffn_down", ff, dim, c.ExpertCount);
            }
            else
            {
                layer.Gate = Matrix(p + "ffn_gate.weight", dim, ff);
                layer.Up = Matrix(p + "ffn_up.weight", dim, ff);
                layer.Down = Matrix(p + "ffn_down.weight", ff, dim);
            }
            _layers[l] = layer;
        }
        WeightBytes = file.Tensors.Sum(t => t.ByteSize);

        int b = MaxBatch;
        _x = Floats((long)b * dim);
        _xb = Floats((long)b * dim);
        _q = Floats((long)b * dim);
        _k = Floats((long)b * kvDim);
        _v = Floats((long)b * kvDim);
        _att = Floats((long)b * dim);
        _hb = Floats((long)b * ff);
        _hb2 = Floats((long)b * ff);
        _attentionScratch = Floats(c.HeadCount * AttentionKernels.ScratchFloats(ctx, c.HeadDim, MaxBatch));
        _kvScratchPositions = (int)Math.Min(ctx, (32L << 20) / ((long)kvDim * 2 * sizeof(float)));
        _ropeCos = Floats((long)b * (c.RopeDimensionCount / 2));
        _ropeSin = Floats((long)b * (c.RopeDimensionCount / 2));
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

    private Weight Matrix(string name, int cols, int rows)
    {
        var t = _file.FindTensor(name) ?? throw new InvalidDataException($"{_file.FileName}: tensor '{name}' is missing");
        if (t.Dimensions.Length != 2 || t.Dimensions[0] != cols || t.Dimensions[1] != rows)
            throw new InvalidDataException($"{_file.FileName}: tensor '{name}' has shape {t.ShapeText}, expected [{cols}, {rows}]");
        CheckSize(t, rows, cols);
        return new Weight(t.Type, _file.GetTensorPointer(t), rows, cols);
    }

    private Weight[] Experts(string prefix, string kind, int cols, int rows, int count)
    {
        var experts = new Weight[count];
        var stacked = _file.FindTensor($"{prefix}{kind}_exps.weight");
        if (stacked != null)
        {
            if (stacked.Dimensions.Length != 3 || stacked.Dimensions[0] != cols || stacked.Dimensions[1] != rows || stacked.Dimensions[2] != count)
                throw new InvalidDataException($"{_file.FileName}: tensor '{stacked.Name}' has shape {stacked.ShapeText}, expected [{cols}, {rows}, {count}]");
            CheckSize(stacked, (long)rows * count, cols);
            long expertBytes = GgmlTypeInfo.RowBytes(stacked.Type, cols) * rows;
            byte* data = _file.GetTensorPointer(stacked);
            for (int e = 0; e < count; e++) experts[e] = new Weight(stacked.Type, data + e * expertBytes, rows, cols);
            return experts;
        }
        // The older layout: one tensor per expert.
        for (int e = 0; e < count; e++) experts[e] = Matrix($"{prefix}{kind}.{e}.weight", cols, rows);
        return experts;
    }

    private void CheckSize(GgufTensorInfo t, long rows, int cols)
    {
        if (cols % GgmlTypeInfo.BlockSize(t.Type) != 0)
            throw new InvalidDataException($"{_file.FileName}: tensor '{t.Name}' rows of {cols} are not whole {t.Type} blocks");
        long need = GgmlTypeInfo.RowBytes(t.Type, cols) * rows;
        if (t.ByteSize < need)
            throw new InvalidDataException($"{_file.FileName}: tensor '{t.Name}' holds {t.ByteSize} bytes, its shape needs {need}");
    }

    /// <summary>Norm weights: f32 in the mapping is used in place; any other type is converted once (a vector).</summary>
    private float* Vector(string name, int length)
    {
        var t = _file.FindTensor(name) ?? throw new InvalidDataException($"{_file.FileName}: tensor '{name}' is missing");
        if (t.ElementCount != length)
            throw new InvalidDataException($"{_file.FileName}: tensor '{name}' has shape {t.ShapeText}, expected [{length}]");
        CheckSize(t, 1, length);
        byte* data = _file.GetTensorPointer(t);
        if (t.Type == GgmlType.F32) return (float*)data;
        float* converted = Floats(length);
        Dequantizer.DequantizeRow(t.Type, new ReadOnlySpan<byte>(data, (int)t.ByteSize), new Span<float>(converted, length));
        return converted;
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
            throw new ArgumentException($"cannot allocate {bytes / 1e6:F1} MB for the model's buffers (try a smaller --ctx)");
        }
        _allocations.Add((IntPtr)p);
        return p;
    }

    /// <summary>
    /// Runs the tokens at positions startPosition.. through the model, filling the KV cache, and returns the logits
    /// of the last token (valid until the next call). Prompts go through as matrix-matrix batches; one token uses
    /// matrix-vector products.
    /// </summary>
    public ReadOnlySpan<float> Forward(scoped ReadOnlySpan<int> tokens, int startPosition)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.Length == 0) throw new ArgumentException("no tokens to process");
        if (startPosition < 0 || startPosition + tokens.Length > ContextSize)
            throw new ContextFullException(ContextSize, startPosition + tokens.Length);
        foreach (int t in tokens)
            if ((uint)t >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the model's vocabulary of {Config.VocabSize}");

        int done = 0;
        while (done < tokens.Length)
        {
            int n = Math.Min(MaxBatch, tokens.Length - done);
            ForwardBatch(tokens.Slice(done, n), startPosition + done, computeLogits: done + n == tokens.Length);
            done += n;
        }
        return new ReadOnlySpan<float>(_logits, Config.VocabSize);
    }

    private void ForwardBatch(ReadOnlySpan<int> tokens, int start, bool computeLogits)
    {
        var c = Config;
        int n = tokens.Length, dim = c.EmbeddingLength;
        var tracer = Tracer;
        long t0 = tracer?.Begin() ?? 0;

        long embRowBytes = GgmlTypeInfo.RowBytes(_embedding.Type, dim);
        for (int i = 0; i < n; i++)
            Dequantizer.DequantizeRow(_embedding.Type, new ReadOnlySpan<byte>(_embedding.Data + tokens[i] * embRowBytes, (int)embRowBytes),
                new Span<float>(_x + (long)i * dim, dim));
        PrepareRope(n, start);
        tracer?.End(TraceSpan.Embedding, t0);

        for (int l = 0; l < _layers.Length; l++)
        {
            var layer = _layers[l];
            long ta = tracer?.Begin() ?? 0;
            Attention(l, layer, n, start);
            tracer?.End(TraceSpan.Attention, ta);

            long tf = tracer?.Begin() ?? 0;
            RmsNorm(_x, layer.FfnNorm, _xb, n, dim);
            if (c.IsMixtureOfExperts) MixtureOfExperts(layer, n);
            else FeedForward(layer.Gate, layer.Up, layer.Down, _xb, n, _xb);
            Add(_x, _xb, (long)n * dim);
            tracer?.End(c.IsMixtureOfExperts ? TraceSpan.Experts : TraceSpan.FeedForward, tf);
        }

        if (computeLogits)
        {
            long to = tracer?.Begin() ?? 0;
            float* last = _x + (long)(n - 1) * dim;
            RmsNorm(last, _outputNorm, _xb, 1, dim);
            Mul(_output, _xb, 1, _logits);
            tracer?.End(TraceSpan.Output, to);
        }
    }

    private void Attention(int l, Layer layer, int n, int start)
    {
        var c = Config;
        int dim = c.EmbeddingLength, kvDim = c.KvDim, headDim = c.HeadDim;
        RmsNorm(_x, layer.AttnNorm, _xb, n, dim);
        // One quantization of the normed activation and one dispatch for all three projections.
        var qkv = stackalloc MatMul.Product[3];
        qkv[0] = new MatMul.Product(layer.Wq.Type, layer.Wq.Data, layer.Wq.Rows, _q);
        qkv[1] = new MatMul.Product(layer.Wk.Type, layer.Wk.Data, layer.Wk.Rows, _k);
        qkv[2] = new MatMul.Product(layer.Wv.Type, layer.Wv.Data, layer.Wv.Rows, _v);
        MatMul.Group(qkv, 3, dim, _xb, n);
        for (int i = 0; i < n; i++)
        {
            Rope(_q + (long)i * dim, c.HeadCount, i);
            Rope(_k + (long)i * kvDim, c.HeadCountKv, i);
        }

        long layerOffset = (long)l * ContextSize * kvDim * _elementSize;
        byte* keys = _keyCache + layerOffset, values = _valueCache + layerOffset;
        for (int i = 0; i < n; i++)
        {
            long at = (long)(start + i) * kvDim * _elementSize;
            if (KvCacheType == KvCacheType.F16)
            {
                HalfVector.ToHalf(_k + (long)i * kvDim, (Half*)(keys + at), kvDim);
                HalfVector.ToHalf(_v + (long)i * kvDim, (Half*)(values + at), kvDim);
            }
            else
            {
                Buffer.MemoryCopy(_k + (long)i * kvDim, keys + at, kvDim * 4L, kvDim * 4L);
                Buffer.MemoryCopy(_v + (long)i * kvDim, values + at, kvDim * 4L, kvDim * 4L);
            }
        }

        bool f16 = KvCacheType == KvCacheType.F16, rowsF16 = f16;
        if (f16 && n > 1 && start + n <= _kvScratchPositions)
        {
            // A batch reads every cached key and value once per query head and row: convert them to f32 once here
            // instead (the same values, so the same bits), up to 32 MB of scratch.
            if (_kvScratch == null) _kvScratch = Floats((long)_kvScratchPositions * kvDim * 2);
            float* scratchValues = _kvScratch + (long)_kvScratchPositions * kvDim;
            HalfVector.ToSingle((Half*)keys, _kvScratch, (start + n) * kvDim);
            HalfVector.ToSingle((Half*)values, scratchValues, (start + n) * kvDim);
            keys = (byte*)_kvScratch;
            values = (byte*)scratchValues;
            rowsF16 = false;
        }
        var job = new AttentionJob
        {
            Q = _q, Output = _att, Scratch = _attentionScratch, Keys = keys, Values = values, Dim = dim, KvDim = kvDim,
            HeadDim = headDim, Group = c.HeadCount / c.HeadCountKv, ContextSize = ContextSize, MaxBatch = MaxBatch, N = n,
            Start = start, KeysF16 = rowsF16,
            Rounding = !f16 ? AttentionRounding.Full : FlashAttention == FlashAttention.Off ? AttentionRounding.Unfused : AttentionRounding.Flash,
        };
        AttentionKernels.Run(&job, c.HeadCount);

        Mul(layer.Wo, _att, n, _xb);
        Add(_x, _xb, (long)n * dim);
    }

    /// <summary>cos/sin of each rotated pair for every row's position, computed as ggml does (theta *= theta_scale).</summary>
    private void PrepareRope(int n, int start)
    {
        int pairs = Config.RopeDimensionCount / 2;
        float thetaScale = MathF.Pow(Config.RopeFreqBase, -2.0f / Config.RopeDimensionCount);
        for (int i = 0; i < n; i++)
        {
            float theta = start + i;
            for (int p = 0; p < pairs; p++)
            {
                _ropeCos[(long)i * pairs + p] = MathF.Cos(theta);
                _ropeSin[(long)i * pairs + p] = MathF.Sin(theta);
                theta *= thetaScale;
            }
        }
    }

    /// <summary>Normal-mode rotary embedding: pairs (x[2j], x[2j+1]) of the first n_rot values of each head.</summary>
    private void Rope(float* vec, int heads, int row)
    {
        int headDim = Config.HeadDim, pairs = Config.RopeDimensionCount / 2;
        float* cos = _ropeCos + (long)row * pairs, sin = _ropeSin + (long)row * pairs;
        for (int h = 0; h < heads; h++)
        {
            float* x = vec + h * headDim;
            for (int p = 0; p < pairs; p++)
            {
                float x0 = x[2 * p], x1 = x[2 * p + 1];
                // llama.cpp's build contracts each line into one fused multiply-add around the other product.
                x[2 * p] = x0 * cos[p] - x1 * sin[p];
                x[2 * p + 1] = x0 * sin[p] + x1 * cos[p];
            }
        }
    }

    /// <summary>out = W_down (silu(W_gate x) * (W_up x)) for n rows of x.</summary>
    private void FeedForward(in Weight gate, in Weight up, in Weight down, float* x, int n, float* output)
    {
        int ff = gate.Rows;
        var gateUp = stackalloc MatMul.Product[2];
        gateUp[0] = new MatMul.Product(gate.Type, gate.Data, gate.Rows, _hb);
        gateUp[1] = new MatMul.Product(up.Type, up.Data, up.Rows, _hb2);
        MatMul.Group(gateUp, 2, gate.Cols, x, n);
        SwiGlu(_hb, _hb2, (long)n * ff);
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
        Mul(layer.Router, _xb, n, _routerLogits);
        for (int i = 0; i < n; i++)
        {
            float* logits = _routerLogits + (long)i * experts;
            int* ids = _expertIds + (long)i * used;
            float* weights = _expertWeights + (long)i * used;
            for (int k = 0; k < used; k++)
            {
                int best = -1;
                for (int e = 0; e < experts; e++)
                {
                    bool taken = false;
                    for (int j = 0; j < k; j++) taken |= ids[j] == e;
                    if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
                }
                ids[k] = best;
            }
            float max = logits[ids[0]];
            float sum = 0;
            for (int k = 0; k < used; k++) sum += weights[k] = MathF.Exp(logits[ids[k]] - max);
            for (int k = 0; k < used; k++) weights[k] /= sum;
        }

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
                HalfVector.ScaleAdd(w, _expertOut + (long)r * dim, result + (long)i * dim, dim);
            }
        }
        Buffer.MemoryCopy(result, _xb, n * dim * 4L, n * dim * 4L);
    }

    private static void Mul(in Weight w, float* x, int n, float* y)
    {
        if (n == 1)
            MatMul.MatVec(w.Type, w.Data, w.Rows, w.Cols, new ReadOnlySpan<float>(x, w.Cols), new Span<float>(y, w.Rows));
        else
            MatMul.MatMat(w.Type, w.Data, w.Rows, w.Cols, new ReadOnlySpan<float>(x, n * w.Cols), n, new Span<float>(y, n * w.Rows));
    }

    /// <summary>
    /// y = x / rms(x) * weight per row, as ggml does: each square rounded to f32, then summed in order in double.
    /// </summary>
    private void RmsNorm(float* x, float* weight, float* y, int n, int dim)
    {
        float eps = Config.RmsEpsilon;
        for (int i = 0; i < n; i++)
        {
            float* xi = x + (long)i * dim, yi = y + (long)i * dim;
            int j;
            double sum = 0;
            for (j = 0; j < dim; j++) sum += xi[j] * xi[j];
            float scale = 1f / MathF.Sqrt((float)(sum / dim) + eps);
            j = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var s = Vector256.Create(scale);
                for (; j <= dim - 8; j += 8) Vector256.Store(Vector256.Load(xi + j) * s * Vector256.Load(weight + j), yi + j);
            }
            for (; j < dim; j++) yi[j] = xi[j] * scale * weight[j];
        }
    }

    /// <summary>gate = silu(gate) * up, in place, as ggml's swiglu (its vectorised exp, so the same bits).</summary>
    private static void SwiGlu(float* gate, float* up, long count)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= count - 8; i += 8)
                Vector256.Store(VectorMath.Silu(Vector256.Load(gate + i)) * Vector256.Load(up + i), gate + i);
        for (; i < count; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    private static void Add(float* x, float* y, long count)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= count - 8; i += 8) Vector256.Store(Vector256.Load(x + i) + Vector256.Load(y + i), x + i);
        for (; i < count; i++) x[i] += y[i];
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var p in _allocations) NativeMemory.Free((void*)p);
        _allocations.Clear();
        if (_ownsFile) _file.Dispose();
    }
}

/// <summary>The prompt and the generated tokens no longer fit in the KV cache.</summary>
public sealed class ContextFullException(int contextSize, int needed)
    : InvalidOperationException($"the context holds {contextSize} tokens, {needed} are needed (use a shorter prompt or sample length, or a larger --ctx)")
{
    public int ContextSize { get; } = contextSize;
    public int Needed { get; } = needed;
}

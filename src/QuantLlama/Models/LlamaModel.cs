using System.Runtime.InteropServices;
using QuantLlama.Compute;
using QuantLlama.Gguf;
using QuantLlama.Quants;
using QuantLlama.Tensors;

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

/// <summary>The buffers of one <see cref="InferenceContext"/>.</summary>
public sealed record ContextOptions
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

/// <summary>How <see cref="LlamaModel"/> prepares a model file's weights at load; each loaded model keeps its own.</summary>
public sealed record ModelOptions
{
    /// <summary>
    /// True (the default): on CPUs with AVX-512, the Q4_0, Q4_K and Q8_0 matrices (the output matrix too) are
    /// copied at load into layouts of 8 interleaved weight rows, which read prompts 1.3–2x as fast and let several
    /// conversations decoding together share each weight load; generation reads the copy as well. On Linux the copied
    /// matrices' pages of the mapping then leave resident memory, so the process holds about the file's size either
    /// way (the page cache may keep the file too); the copy costs the time to write it at load. False: the weights
    /// stay in the mapping only. The tokens are the same either way.
    /// </summary>
    public bool RepackForPrompts { get; init; } = true;

    /// <summary>
    /// True (the default): once loaded, the model runs a throwaway batch of 8 rows and then 1 row through a scratch
    /// context on a background thread, so that the first prompt of a fresh process finds its methods compiled and
    /// the mapped weights faulted in, and runs at warm speed. The first forward pass of any other context waits for
    /// it. It moves that first-pass cost rather than adding to it (plus the 9 rows' compute): a server or an
    /// interactive session that loads and then waits for input gets it for free. False: the first prompt pays it.
    /// The tokens are the same either way.
    /// </summary>
    public bool WarmUp { get; init; } = true;
}

/// <summary>
/// A LLaMA / Mistral / Mixtral / Qwen2 / Qwen3 / Gemma 2 / Gemma 3 / Phi-3 model over a memory-mapped model file: its configuration and weights, which stay in
/// the mapping and are never written. Immutable, so any number of <see cref="InferenceContext"/>s (one per
/// conversation) share one loaded model, from any threads. Dispose the contexts before the model.
/// </summary>
public sealed unsafe class LlamaModel : IDisposable
{
    /// <summary>A matrix of <see cref="Rows"/> rows of <see cref="Cols"/> values inside the mapping.</summary>
    internal readonly struct Weight(GgmlType type, byte* data, int rows, int cols, byte* rowGroups = null)
    {
        public readonly GgmlType Type = type;
        public readonly byte* Data = data;
        public readonly int Rows = rows;
        public readonly int Cols = cols;
        /// <summary>The same matrix repacked for prompts (<see cref="RepackedWeights"/>), or null.</summary>
        public readonly byte* RowGroups = rowGroups;

        public Weight WithRowGroups(byte* rowGroups) => new(Type, Data, Rows, Cols, rowGroups);
    }

    internal sealed class Layer
    {
        public required float* AttnNorm;
        public required Weight Wq, Wk, Wv, Wo;
        // Projection biases ([rows] each), null where the file has none.
        public float* BiasQ, BiasK, BiasV, BiasO;
        // Qwen3: per-head RMS norm weights of queries and keys ([headDim] each), null otherwise.
        public float* QNorm, KNorm;
        public required float* FfnNorm;
        // Gemma 2 and 3: RMS norm weights of the attention's and the feed-forward's outputs ([dim] each), null otherwise.
        public float* AttnPostNorm, FfnPostNorm;
        // Dense feed-forward.
        public Weight Gate, Up, Down;
        // Mixture of experts.
        public Weight Router;
        public Weight[] ExpertGate = [], ExpertUp = [], ExpertDown = [];
    }

    private readonly IModelFile _file;
    private readonly bool _ownsFile;
    // Norm weights stored in another type than f32, converted once at load.
    private readonly List<IntPtr> _converted = [];
    // Repacked copies of matrices (RepackedWeights), freed with the model.
    private readonly List<IntPtr> _repacked = [];
    // Names of the tensors resolved so far: anything else in the file is refused at load.
    private readonly HashSet<string> _used = [];
    private bool _disposed;

    internal Layer[] Layers { get; }
    internal Weight Embedding { get; }
    internal Weight Output { get; private set; }
    internal float* OutputNorm { get; }

    public LlamaConfig Config { get; }

    /// <summary>The RoPE angles of every position (frequency factors and scaling included).</summary>
    public RotaryEmbedding Rope { get; }

    /// <summary>
    /// LongRoPE (Phi-3 128k, Phi-3.5): the angles with rope_factors_long, for contexts longer than
    /// rope.scaling.original_context_length; <see cref="Rope"/> then holds rope_factors_short's. Null without LongRoPE.
    /// </summary>
    public RotaryEmbedding? LongContextRope { get; }

    /// <summary>The angles a context of <paramref name="contextSize"/> positions uses: llama.cpp picks the long
    /// factors when its context per sequence exceeds the original training context, comparing the context it
    /// allocates, the requested size rounded up to a multiple of 256.</summary>
    public RotaryEmbedding RopeFor(int contextSize)
        => LongContextRope != null && (contextSize + 255L) / 256 * 256 > Config.RopeYarnContext ? LongContextRope : Rope;

    /// <summary>The RoPE angles of sliding-window layers where they differ (Gemma 3: base 10000, unscaled); null: <see cref="Rope"/>.</summary>
    public RotaryEmbedding? LocalRope { get; }

    /// <summary>Bytes of all tensors the model reads (for "loaded N tensors (X GB)").</summary>
    public long WeightBytes { get; }

    public IModelFile File => _file;

    /// <summary>Opens a GGUF or legacy GGML file; <paramref name="gqa"/> is the legacy files' group-query factor.</summary>
    public static LlamaModel Load(string path, int gqa = 1, ModelOptions? options = null)
    {
        var file = ModelFileLoader.Open(path, gqa);
        try
        {
            return new LlamaModel(file, ownsFile: true, options);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public LlamaModel(IModelFile file, bool ownsFile = false, ModelOptions? options = null)
    {
        _file = file;
        _ownsFile = ownsFile;
        Options = options ?? new ModelOptions();
        try
        {
            var c = Config = LlamaConfig.FromModelFile(file);
            var arch = c.Architecture;
            int dim = c.EmbeddingLength, qDim = c.QueryDim, kvDim = c.KvDim, ff = c.FeedForwardLength;
            // Token embeddings are read a row at a time (dequantized); only a tied head multiplies by them.
            bool tiedOutput = file.FindTensor("output.weight") == null;
            Embedding = Matrix("token_embd.weight", dim, c.VocabSize, multiplied: tiedOutput);
            RequireDequantizer(file.FindTensor("token_embd.weight")!);
            Output = tiedOutput ? Embedding : Matrix("output.weight", dim, c.VocabSize);
            OutputNorm = Vector("output_norm.weight", dim);
            // [n_rot/2] per-pair divisors of RoPE's frequencies, each optional.
            float[]? FreqFactors(string name, bool allowed) => allowed && file.FindTensor(name) != null
                ? new Span<float>(Vector(name, c.RopeDimensionCount / 2), c.RopeDimensionCount / 2).ToArray() : null;
            float[]? freqFactors = FreqFactors("rope_freqs.weight", arch.AllowsRopeFreqFactors);
            float[]? shortFactors = FreqFactors("rope_factors_short.weight", arch.AllowsLongRope);
            float[]? longFactors = FreqFactors("rope_factors_long.weight", arch.AllowsLongRope);
            if (arch.FusedQkv && qDim != dim)
                throw new NotSupportedException($"{file.FileName}: {arch.Name} needs heads × head size ({qDim}) equal to embedding_length ({dim})");
            Rope = new RotaryEmbedding(c, freqFactors ?? shortFactors);
            if (shortFactors != null || longFactors != null)
                LongContextRope = new RotaryEmbedding(c, longFactors);
            if (c.RopeFreqBaseLocal > 0)
                LocalRope = new RotaryEmbedding(arch.LocalRopeBase > 0
                    ? c with { RopeFreqBase = c.RopeFreqBaseLocal, RopeScaling = RopeScalingType.None, RopeFreqScale = 1f }
                    : c with { RopeFreqBase = c.RopeFreqBaseLocal }, freqFactors);
            Layers = new Layer[c.BlockCount];
            for (int l = 0; l < c.BlockCount; l++)
            {
                string p = $"blk.{l}.";
                var attnNorm = Vector(p + "attn_norm.weight", dim);
                Weight wq, wk, wv;
                if (arch.FusedQkv && file.FindTensor(p + "attn_qkv.weight") != null)
                {
                    var qkv = Matrix(p + "attn_qkv.weight", dim, qDim + 2 * kvDim);
                    (wq, wk, wv) = (Rows(qkv, 0, qDim), Rows(qkv, qDim, kvDim), Rows(qkv, qDim + kvDim, kvDim));
                }
                else
                {
                    (wq, wk, wv) = (Matrix(p + "attn_q.weight", dim, qDim), Matrix(p + "attn_k.weight", dim, kvDim), Matrix(p + "attn_v.weight", dim, kvDim));
                }
                var layer = new Layer
                {
                    AttnNorm = attnNorm,
                    Wq = wq,
                    Wk = wk,
                    Wv = wv,
                    Wo = Matrix(p + "attn_output.weight", qDim, dim),
                    FfnNorm = Vector(p + "ffn_norm.weight", dim),
                };
                if (arch.RequiresQkvBias || arch.AllowsAttentionBias)
                {
                    bool required = arch.RequiresQkvBias;
                    layer.BiasQ = Bias(p + "attn_q.bias", qDim, required);
                    layer.BiasK = Bias(p + "attn_k.bias", kvDim, required);
                    layer.BiasV = Bias(p + "attn_v.bias", kvDim, required);
                    if (arch.AllowsAttentionBias) layer.BiasO = Bias(p + "attn_output.bias", dim, required: false);
                }
                if (arch.HasQkNorm)
                {
                    layer.QNorm = Vector(p + "attn_q_norm.weight", c.HeadDim);
                    layer.KNorm = Vector(p + "attn_k_norm.weight", c.HeadDim);
                }
                if (arch.HasPostNorms)
                {
                    layer.AttnPostNorm = Vector(p + "post_attention_norm.weight", dim);
                    layer.FfnPostNorm = Vector(p + "post_ffw_norm.weight", dim);
                }
                if (c.IsMixtureOfExperts)
                {
                    layer.Router = Matrix(p + "ffn_gate_inp.weight", dim, c.ExpertCount);
                    layer.ExpertGate = Experts(p, "ffn_gate", dim, ff, c.ExpertCount);
                    layer.ExpertUp = Experts(p, "ffn_up", dim, ff, c.ExpertCount);
                    layer.ExpertDown = Experts(p, "ffn_down", ff, dim, c.ExpertCount);
                }
                else if (arch.FusedGateUp)
                {
                    var gateUp = Matrix(p + "ffn_up.weight", dim, 2 * ff);
                    layer.Gate = Rows(gateUp, 0, ff);
                    layer.Up = Rows(gateUp, ff, ff);
                    layer.Down = Matrix(p + "ffn_down.weight", ff, dim);
                }
                else
                {
                    layer.Gate = Matrix(p + "ffn_gate.weight", dim, ff);
                    layer.Up = Matrix(p + "ffn_up.weight", dim, ff);
                    layer.Down = Matrix(p + "ffn_down.weight", ff, dim);
                }
                Layers[l] = layer;
            }
            // llama.cpp refuses a file with tensors its graph does not read; so do we, before any generation.
            var unused = file.Tensors.FirstOrDefault(t => !_used.Contains(t.Name));
            if (unused != null)
                throw new NotSupportedException($"{file.FileName}: tensor '{unused.Name}' is not supported for architecture '{arch.Name}'");
            if (Options.RepackForPrompts) Repack(); // after every check, so a refused file costs no copying
            WeightBytes = file.Tensors.Sum(t => t.ByteSize);
            if (Options.WarmUp) _warmUp = Task.Factory.StartNew(RunWarmUp, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
        catch
        {
            FreeConverted(); // vectors converted before the failure
            FreeRepacked();
            throw;
        }
    }

    /// <summary>A new conversation over this model: its own KV cache and buffers (<paramref name="options"/>).</summary>
    public InferenceContext CreateContext(ContextOptions? options = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new InferenceContext(this, options);
    }

    private Weight Matrix(string name, int cols, int rows, bool multiplied = true)
    {
        var t = _file.FindTensor(name) ?? throw new InvalidDataException($"{_file.FileName}: tensor '{name}' is missing");
        _used.Add(name);
        if (t.Dimensions.Length != 2 || t.Dimensions[0] != cols || t.Dimensions[1] != rows)
            throw new InvalidDataException($"{_file.FileName}: tensor '{name}' has shape {t.ShapeText}, expected [{cols}, {rows}]");
        CheckSize(t, rows, cols);
        if (multiplied) RequireKernels(t);
        return new Weight(t.Type, _file.GetTensorPointer(t), rows, cols);
    }

    /// <summary>Rows [first, first + count) of a matrix, as a matrix of their own (rows are whole blocks, so contiguous).</summary>
    private static Weight Rows(in Weight w, int first, int count)
        => new(w.Type, w.Data + GgmlTypeInfo.RowBytes(w.Type, w.Cols) * first, count, w.Cols);

    /// <summary>
    /// Fails the load, naming the tensor and its type, when no matrix kernel reads that type: a model that loads is
    /// one that runs, rather than one that fails at its first matrix product.
    /// </summary>
    private void RequireKernels(GgufTensorInfo t)
    {
        if (!QuantKernels.IsSupported(t.Type))
            throw new NotSupportedException($"{_file.FileName}: tensor '{t.Name}' is {t.Type}, a type whose matrix products are not implemented");
    }

    private void RequireDequantizer(GgufTensorInfo t)
    {
        if (!Dequantizer.IsSupported(t.Type))
            throw new NotSupportedException($"{_file.FileName}: tensor '{t.Name}' is {t.Type}, a type whose dequantization is not implemented");
    }

    private Weight[] Experts(string prefix, string kind, int cols, int rows, int count)
    {
        var experts = new Weight[count];
        var stacked = _file.FindTensor($"{prefix}{kind}_exps.weight");
        if (stacked != null)
        {
            _used.Add(stacked.Name);
            if (stacked.Dimensions.Length != 3 || stacked.Dimensions[0] != cols || stacked.Dimensions[1] != rows || stacked.Dimensions[2] != count)
                throw new InvalidDataException($"{_file.FileName}: tensor '{stacked.Name}' has shape {stacked.ShapeText}, expected [{cols}, {rows}, {count}]");
            CheckSize(stacked, (long)rows * count, cols);
            RequireKernels(stacked);
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

    /// <summary>Vectors (norms, biases, RoPE factors): f32 in the mapping is used in place; any other type is converted once.</summary>
    private float* Vector(string name, int length)
    {
        var t = _file.FindTensor(name) ?? throw new InvalidDataException($"{_file.FileName}: tensor '{name}' is missing");
        _used.Add(name);
        if (t.ElementCount != length)
            throw new InvalidDataException($"{_file.FileName}: tensor '{name}' has shape {t.ShapeText}, expected [{length}]");
        CheckSize(t, 1, length);
        if (t.Type != GgmlType.F32) RequireDequantizer(t);
        byte* data = _file.GetTensorPointer(t);
        if (t.Type == GgmlType.F32) return (float*)data;
        float* converted = (float*)NativeMemory.Alloc((nuint)length * sizeof(float));
        _converted.Add((IntPtr)converted);
        Dequantizer.DequantizeRow(t.Type, new ReadOnlySpan<byte>(data, (int)t.ByteSize), new Span<float>(converted, length));
        return converted;
    }

    /// <summary>A projection's bias vector; null when it is optional and absent.</summary>
    private float* Bias(string name, int length, bool required)
        => required || _file.FindTensor(name) != null ? Vector(name, length) : null;

    /// <summary>
    /// Null when this engine runs the file; otherwise the one-line reason (architecture, hyper-parameter or tensor
    /// it does not support, or a malformed file), as loading it would report.
    /// </summary>
    public static string? WhyNotRunnable(IModelFile file)
    {
        try
        {
            using var model = new LlamaModel(file, options: new ModelOptions { RepackForPrompts = false, WarmUp = false });
            return null;
        }
        catch (Exception e) when (e is NotSupportedException or InvalidDataException)
        {
            return e.Message;
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        WaitForWarmUp(); // its scratch context reads the weights freed below
        FreeConverted();
        FreeRepacked();
        if (_ownsFile) _file.Dispose();
    }

    /// <summary>The options this model was loaded with.</summary>
    public ModelOptions Options { get; }

    /// <summary>Bytes of the repacked copies this model holds (<see cref="ModelOptions.RepackForPrompts"/>).</summary>
    public long RepackedBytes { get; private set; }

    private void Repack()
    {
        Weight Copy(in Weight w)
        {
            if (!RepackedWeights.Supported(w.Type, w.Rows, w.Cols)) return w;
            byte* groups = RepackedWeights.Create(w.Type, w.Data, w.Rows, w.Cols);
            _repacked.Add((IntPtr)groups);
            RepackedBytes += RepackedWeights.Bytes(w.Type, w.Rows, w.Cols);
            // Every product reads the copy from here on, so the mapped pages leave resident memory (peak RSS stays
            // about the file's size instead of the file plus the copy); a tied output's rows are still looked up as
            // token embeddings.
            if (w.Data != Embedding.Data) _file.ReleasePages(w.Data, GgmlTypeInfo.RowBytes(w.Type, w.Cols) * w.Rows);
            return w.WithRowGroups(groups);
        }
        foreach (var layer in Layers)
        {
            (layer.Wq, layer.Wk, layer.Wv, layer.Wo) = (Copy(layer.Wq), Copy(layer.Wk), Copy(layer.Wv), Copy(layer.Wo));
            (layer.Gate, layer.Up, layer.Down) = (Copy(layer.Gate), Copy(layer.Up), Copy(layer.Down));
        }
        Output = Copy(Output); // every conversation decoding together needs its logits
    }

    /// <summary>Rows of the warm-up's batch: enough for the products' multi-row tiles and batched attention.</summary>
    private const int WarmUpRows = 8;

    // The warm-up's forward passes (ModelOptions.WarmUp) while they may still run; null once waited for.
    private Task? _warmUp;

    /// <summary>Blocks until the warm-up is over; every other context calls it before its forward passes.</summary>
    internal void WaitForWarmUp()
    {
        var warmUp = Volatile.Read(ref _warmUp);
        if (warmUp == null) return;
        warmUp.Wait();
        Volatile.Write(ref _warmUp, null);
    }

    /// <summary>
    /// A batch of <see cref="WarmUpRows"/> rows, then one row, through a scratch context with a cache just large
    /// enough: the JIT compiles the prompt and generation paths and the mapped weights are faulted in, the outputs
    /// are dropped.
    /// </summary>
    private void RunWarmUp()
    {
        try
        {
            int rows = Math.Min(WarmUpRows, Math.Min(Config.ContextLength, ContextOptions.DefaultMaxContext) - 1);
            if (rows < 1) return;
            using var scratch = new InferenceContext(this, new ContextOptions { ContextSize = rows + 1, MaxBatch = rows }) { IsWarmUp = true };
            Span<int> tokens = stackalloc int[rows];
            for (int i = 0; i < rows; i++) tokens[i] = (i + 1) % Config.VocabSize;
            scratch.Forward(tokens, 0);
            scratch.Forward(tokens[..1], rows);
        }
        catch (Exception)
        {
            // Only ever a head start: whatever failed here fails the first real forward pass, with its own message.
        }
    }

    private void FreeRepacked()
    {
        foreach (var p in _repacked) RepackedWeights.Free((byte*)p);
        _repacked.Clear();
        RepackedBytes = 0;
    }

    private void FreeConverted()
    {
        foreach (var p in _converted) NativeMemory.Free((void*)p);
        _converted.Clear();
    }
}

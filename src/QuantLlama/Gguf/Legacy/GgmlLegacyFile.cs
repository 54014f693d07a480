using System.Text;
using QuantLlama.Tensors;

namespace QuantLlama.Gguf.Legacy;

/// <summary>The three magics of llama.cpp's files before GGUF (August 2023).</summary>
public enum GgmlLegacyFormat
{
    /// <summary><c>ggml</c>: no version field, vocabulary without scores, tensors packed without alignment.</summary>
    Ggml,
    /// <summary><c>ggmf</c> v1: scores added; tensors still unaligned.</summary>
    Ggmf,
    /// <summary><c>ggjt</c> v1-v3: tensor data aligned to 32 bytes so it can be memory-mapped.</summary>
    Ggjt,
}

/// <summary>The seven hyperparameters of a legacy llama file, as stored (all uint32).</summary>
public sealed record GgmlLegacyHyperparameters(
    uint VocabSize, uint EmbeddingLength, uint Mult, uint HeadCount, uint LayerCount, uint RotaryDimensions, uint FileType);

/// <summary>
/// A legacy llama.cpp model file (<c>ggml</c>, <c>ggmf</c> v1, <c>ggjt</c> v1-v3), memory-mapped and presented in GGUF
/// terms: hyperparameters and vocabulary as <c>llama.*</c> / <c>tokenizer.ggml.*</c> metadata, tensors under GGUF names
/// with their dimensions in ggml order (as stored). Nothing is copied: tensor pointers point into the mapping.
/// <para>
/// Block layouts: ggjt v3 blocks are GGUF's, so every type is served as is. llama.cpp changed the Q4/Q5/Q8 layouts
/// twice in May 2023 (PR #1405, ggjt v2: nibble order; PR #1508, ggjt v3: Q4_0/Q4_1/Q8_0 scales from f32 to f16), so
/// quantized tensors of older files are rejected with a message that says so, except Q5_0/Q5_1 in ggjt v2, which
/// #1508 left unchanged. F32 and F16 work in every version.
/// </para>
/// <para>
/// Alignment: ggjt tensors start on 32-byte boundaries; ggml and ggmf tensors start wherever the previous one ended,
/// so their pointers may be unaligned. x86-64 and ARM64 read unaligned floats and vectors (Vector*.Load*, not
/// LoadAligned*) at full speed, so the engine reads them in place; <see cref="IsDataAligned"/> tells which case holds.
/// </para>
/// </summary>
public sealed unsafe class GgmlLegacyFile : IModelFile
{
    public const uint MagicGgml = 0x67676d6c; // "ggml" as a little-endian uint32 (bytes "lmgg")
    public const uint MagicGgmf = 0x67676d66;
    public const uint MagicGgjt = 0x67676a74;
    public const int GgjtAlignment = 32;

    private const int MaxDimensions = 4;
    private const int MaxTensorNameLength = 1 << 16;
    private const string Architecture = "llama";

    private readonly MappedFile? _file;
    private byte* _base;
    private readonly long _length;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _legacyNames = new(StringComparer.Ordinal);

    public string FileName { get; }
    public GgmlLegacyFormat Format { get; }
    /// <summary>The version field (0 for unversioned ggml files).</summary>
    public uint Version { get; }
    public string FormatDescription => Format == GgmlLegacyFormat.Ggml ? "ggml (unversioned)" : $"{Format.ToString().ToLowerInvariant()} v{Version}";
    public GgmlLegacyHyperparameters Hyperparameters { get; }
    public GgmlLegacyOptions Options { get; }
    /// <summary>Unversioned ggml files store no scores (they are synthesized from the token order).</summary>
    public bool HasScores => Format != GgmlLegacyFormat.Ggml;
    public LegacyVocabularyStyle VocabularyStyle { get; }
    /// <summary>Key/value heads, from the K projection's shape when the file has one, else head count / gqa.</summary>
    public int HeadCountKv { get; }
    public long FeedForwardLength { get; }
    /// <summary>True for ggjt files (32-byte aligned tensors); ggml/ggmf tensors may start at any byte.</summary>
    public bool IsDataAligned => Format == GgmlLegacyFormat.Ggjt;
    /// <summary>Tensor offsets are absolute: the data section is the whole file.</summary>
    public long DataOffset => 0;
    public long FileSize => _length;
    public GgufMetadata Metadata { get; }
    /// <summary>Tensor infos in file order, under GGUF names.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>True when the first four bytes are one of the legacy magics.</summary>
    public static bool IsLegacyMagic(uint magic) => magic is MagicGgml or MagicGgmf or MagicGgjt;

    public static GgmlLegacyFile Open(string path, int gqa = 1) => Open(path, new GgmlLegacyOptions { Gqa = gqa });

    /// <summary>Opens and memory-maps a legacy file; reads the header, vocabulary and tensor headers only.</summary>
    public static GgmlLegacyFile Open(string path, GgmlLegacyOptions options)
        => MappedFile.Open(path, file => new GgmlLegacyFile(path, file.Pointer, file.Length, file, options));

    /// <summary>Parses a legacy file image already in memory (tests). The memory must outlive the object.</summary>
    public static GgmlLegacyFile FromMemory(byte* data, long length, string name = "<memory>", GgmlLegacyOptions? options = null)
        => new(name, data, length, null, options ?? GgmlLegacyOptions.Default);

    private GgmlLegacyFile(string fileName, byte* data, long length, MappedFile? file, GgmlLegacyOptions options)
    {
        FileName = fileName;
        _base = data;
        _length = length;
        _file = file;
        Options = options;
        try
        {
            if (options.Gqa < 1) throw new ArgumentException($"the group-query factor must be at least 1 (got {options.Gqa})");
            if (options.ContextLength < 1) throw new ArgumentException($"the context length must be at least 1 (got {options.ContextLength})");
            var r = new ByteCursor(data, length, fileName);

            uint magic = r.U32("magic");
            (Format, Version) = magic switch
            {
                MagicGgml => (GgmlLegacyFormat.Ggml, 0u),
                MagicGgmf => (GgmlLegacyFormat.Ggmf, r.U32("version")),
                MagicGgjt => (GgmlLegacyFormat.Ggjt, r.U32("version")),
                _ => throw Error(0, $"not a ggml, ggmf or ggjt file (magic 0x{magic:X8})"),
            };
            if (Format == GgmlLegacyFormat.Ggmf && Version != 1)
                throw Error(4, $"unsupported ggmf version {Version} (only 1 exists)");
            if (Format == GgmlLegacyFormat.Ggjt && Version is < 1 or > 3)
                throw Error(4, $"unsupported ggjt version {Version} (1, 2 and 3 exist)");

            Hyperparameters = new GgmlLegacyHyperparameters(
                r.U32("n_vocab"), r.U32("n_embd"), r.U32("n_mult"), r.U32("n_head"), r.U32("n_layer"), r.U32("n_rot"), r.U32("ftype"));

            var (tokens, scores, types, style) = ReadVocabulary(r);
            VocabularyStyle = style;

            var tensors = new List<GgufTensorInfo>();
            while (r.Remaining > 0) tensors.Add(ReadTensor(r));
            Tensors = tensors;

            (HeadCountKv, FeedForwardLength) = DeriveShapes();
            Metadata = BuildMetadata(tokens, scores, types);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    // ---- vocabulary ------------------------------------------------------------------------------------------------

    private (string[] Tokens, float[] Scores, int[] Types, LegacyVocabularyStyle Style) ReadVocabulary(ByteCursor r)
    {
        long countAt = r.Position - 7 * 4;
        long n = Hyperparameters.VocabSize;
        int minTokenBytes = HasScores ? 8 : 4;
        if (n > r.Remaining / minTokenBytes)
            throw Error(countAt, $"n_vocab {n} is more tokens than the {r.Remaining} bytes left can hold; the file is truncated or not a llama model");
        var tokens = new string[n];
        var scores = new float[n];
        var types = new int[n];
        int convertPyHints = 0;
        for (int id = 0; id < n; id++)
        {
            long at = r.Position;
            uint length = r.U32($"the length of token {id}");
            if (length > r.Remaining)
                throw Error(at, $"token {id} claims {length} bytes, more than the {r.Remaining} left; the file is truncated");
            var piece = new ReadOnlySpan<byte>(r.Take(length, $"token {id}"), (int)length);
            float? score = HasScores ? r.F32($"the score of token {id}") : null;
            if (LegacyVocabulary.LooksLikeConvertPy(id, piece)) convertPyHints++;
            (tokens[id], scores[id], types[id]) = LegacyVocabulary.Normalize(id, piece, score);
        }
        return (tokens, scores, types, convertPyHints > 0 ? LegacyVocabularyStyle.ConvertPy : LegacyVocabularyStyle.SentencePiece);
    }

    // ---- tensors ---------------------------------------------------------------------------------------------------

    private GgufTensorInfo ReadTensor(ByteCursor r)
    {
        long at = r.Position;
        uint nDims = r.U32("a tensor's dimension count");
        uint nameLength = r.U32("a tensor's name length");
        long typeAt = r.Position;
        uint rawType = r.U32("a tensor's type");
        if (nDims is 0 or > MaxDimensions)
            throw Error(at, $"a tensor has {nDims} dimensions (1 to {MaxDimensions} expected)");
        var dims = new long[nDims];
        long elements = 1;
        for (int d = 0; d < nDims; d++)
        {
            long dimAt = r.Position;
            dims[d] = r.U32($"dimension {d} of a tensor");
            if (dims[d] == 0) throw Error(dimAt, $"a tensor has dimension {d} = 0");
            if (elements > long.MaxValue / dims[d]) throw Error(dimAt, "a tensor has more elements than a 64-bit count can hold");
            elements *= dims[d];
        }
        long nameAt = r.Position;
        if (nameLength > MaxTensorNameLength || nameLength > r.Remaining)
            throw Error(at + 4, $"a tensor name length of {nameLength} bytes is not plausible ({r.Remaining} bytes left)");
        string legacyName = Encoding.UTF8.GetString(r.Take(nameLength, "a tensor name"), (int)nameLength);

        var type = CheckType(rawType, legacyName, typeAt);
        int blockSize = GgmlTypeInfo.BlockSize(type);
        if (dims[0] % blockSize != 0)
            throw Error(at, $"tensor '{legacyName}' has rows of {dims[0]} values, not a multiple of the {type} block size {blockSize}");
        long blocks = elements / blockSize;
        int typeSize = GgmlTypeInfo.TypeSize(type);
        if (blocks > long.MaxValue / typeSize) throw Error(at, $"tensor '{legacyName}' byte size overflows");
        long byteSize = blocks * typeSize;

        if (Format == GgmlLegacyFormat.Ggjt) r.SkipTo(GgufFile.AlignUp(r.Position, GgjtAlignment), $"the padding before tensor '{legacyName}'");
        long dataAt = r.Position;
        if (byteSize > r.Remaining)
            throw Error(dataAt, $"tensor '{legacyName}' needs {byteSize} bytes of data but only {r.Remaining} are left; the file is truncated");
        r.SkipTo(dataAt + byteSize, "tensor data");

        string name = LegacyTensorNames.ToGguf(legacyName);
        var tensor = new GgufTensorInfo(name, dims, type, dataAt, byteSize);
        if (!_tensorsByName.TryAdd(name, tensor)) throw Error(nameAt, $"tensor '{legacyName}' appears twice");
        _legacyNames[name] = legacyName;
        return tensor;
    }

    /// <summary>Accepts a stored type only where its block layout is GGUF's.</summary>
    private GgmlType CheckType(uint rawType, string tensorName, long offset)
    {
        string? removed = rawType switch { 4 => "Q4_2", 5 => "Q4_3", _ => null };
        if (removed != null)
            throw Error(offset, $"tensor '{tensorName}' has type {removed} (ggml type {rawType}), which llama.cpp removed in 2023; re-convert the model from its original weights");
        // Types after Q8_K (15) were defined after GGUF replaced these files.
        if (!GgmlTypeInfo.IsKnown(rawType) || rawType > (uint)GgmlType.Q8_K)
            throw Error(offset, $"tensor '{tensorName}' has unknown ggml type {rawType}");
        var type = (GgmlType)rawType;
        if (type is GgmlType.F32 or GgmlType.F16) return type;

        const string Fix = "re-convert the model from its original weights (or re-quantize an F16/F32 file) to GGUF or ggjt v3";
        bool ggjt = Format == GgmlLegacyFormat.Ggjt;
        if (!ggjt || Version < 2)
            throw Error(offset, $"tensor '{tensorName}' is {type} in a {FormatDescription} file: llama.cpp changed the quantized block layouts in ggjt v2 (PR #1405, May 2023) and these old blocks are not supported; {Fix}");
        if (Version == 2)
        {
            if (type is GgmlType.Q5_0 or GgmlType.Q5_1) return type;
            if (type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q8_0)
                throw Error(offset, $"tensor '{tensorName}' is {type} in a ggjt v2 file: llama.cpp changed its block scales from f32 to f16 in ggjt v3 (PR #1508, May 2023) and the old blocks are not supported; {Fix}");
            throw Error(offset, $"tensor '{tensorName}' has type {type}, which ggjt v2 files did not have");
        }
        return type;
    }

    /// <summary>The key/value head count and the feed-forward length: the tensor shapes are the truth when present.</summary>
    private (int HeadCountKv, long FeedForwardLength) DeriveShapes()
    {
        var hp = Hyperparameters;
        int nHead = (int)Math.Min(hp.HeadCount, int.MaxValue);
        int gqa = Options.Gqa;
        int headCountKv = nHead / gqa;
        long headDim = nHead > 0 ? hp.EmbeddingLength / nHead : 0;
        var wk = FindTensor("blk.0.attn_k.weight");
        if (wk is { Dimensions.Length: 2 } && headDim > 0 && wk.Dimensions[1] % headDim == 0)
        {
            int fromShape = (int)Math.Min(wk.Dimensions[1] / headDim, int.MaxValue);
            if (gqa != 1 && fromShape * gqa != nHead)
                throw new ArgumentException($"{FileName}: group-query factor {gqa} means {nHead / gqa} key/value heads, but the K projection " +
                    $"'{_legacyNames["blk.0.attn_k.weight"]}' has {wk.Dimensions[1]} rows, i.e. {fromShape} heads of {headDim} (group-query factor {(fromShape > 0 ? nHead / fromShape : 0)})");
            headCountKv = fromShape;
        }
        else if (nHead % gqa != 0)
        {
            throw new ArgumentException($"{FileName}: group-query factor {gqa} does not divide the {nHead} attention heads");
        }

        long nFf = 0;
        var w1 = FindTensor("blk.0.ffn_gate.weight");
        if (w1 is { Dimensions.Length: 2 }) nFf = w1.Dimensions[1];
        else if (hp.Mult > 0)
        {
            // llama.cpp's rule before GGUF: 2/3 of 4*n_embd, rounded up to a multiple of n_mult.
            long raw = 2L * (4L * hp.EmbeddingLength) / 3;
            nFf = (raw + hp.Mult - 1) / hp.Mult * hp.Mult;
        }
        return (headCountKv, nFf);
    }

    private GgufMetadata BuildMetadata(string[] tokens, float[] scores, int[] types)
    {
        var hp = Hyperparameters;
        uint headDim = hp.HeadCount > 0 ? hp.EmbeddingLength / hp.HeadCount : 0;
        uint ropeDims = hp.RotaryDimensions > 0 && hp.RotaryDimensions <= headDim ? hp.RotaryDimensions : headDim;
        var e = new List<KeyValuePair<string, GgufValue>>();
        void Add(string key, GgufValue value) => e.Add(new(key, value));
        Add("general.architecture", GgufValue.From(Architecture));
        Add("general.name", GgufValue.From(Path.GetFileNameWithoutExtension(FileName)));
        Add("general.description", GgufValue.From($"converted from a legacy {FormatDescription} file"));
        Add("general.file_type", GgufValue.From(hp.FileType));
        Add("llama.vocab_size", GgufValue.From(hp.VocabSize));
        Add("llama.context_length", GgufValue.From((uint)Options.ContextLength));
        Add("llama.embedding_length", GgufValue.From(hp.EmbeddingLength));
        Add("llama.block_count", GgufValue.From(hp.LayerCount));
        Add("llama.feed_forward_length", GgufValue.From((uint)Math.Min(FeedForwardLength, uint.MaxValue)));
        Add("llama.rope.dimension_count", GgufValue.From(ropeDims));
        Add("llama.rope.freq_base", GgufValue.From(Options.RopeFreqBase));
        Add("llama.attention.head_count", GgufValue.From(hp.HeadCount));
        Add("llama.attention.head_count_kv", GgufValue.From((uint)HeadCountKv));
        Add("llama.attention.layer_norm_rms_epsilon", GgufValue.From(Options.RmsNormEpsilon));
        Add("tokenizer.ggml.model", GgufValue.From("llama"));
        Add("tokenizer.ggml.pre", GgufValue.From("default"));
        Add("tokenizer.ggml.tokens", GgufValue.FromArray(tokens));
        Add("tokenizer.ggml.scores", GgufValue.FromArray(scores));
        Add("tokenizer.ggml.token_type", GgufValue.FromArray(types));
        Add("tokenizer.ggml.unknown_token_id", GgufValue.From((uint)LegacyVocabulary.UnknownId));
        Add("tokenizer.ggml.bos_token_id", GgufValue.From((uint)LegacyVocabulary.BosId));
        Add("tokenizer.ggml.eos_token_id", GgufValue.From((uint)LegacyVocabulary.EosId));
        Add("tokenizer.ggml.add_bos_token", GgufValue.From(true));
        Add("tokenizer.ggml.add_eos_token", GgufValue.From(false));
        return new GgufMetadata(FileName, e);
    }

    private GgufFormatException Error(long offset, string problem) => new(FileName, offset, problem);

    // ---- access ----------------------------------------------------------------------------------------------------

    public GgufTensorInfo? FindTensor(string name) => _tensorsByName.GetValueOrDefault(name);

    public GgufTensorInfo GetTensor(string name) => IModelFile.RequireTensor(this, name);

    /// <summary>The tensor's name as stored in the file (<c>layers.0.attention.wq.weight</c>).</summary>
    public string LegacyName(GgufTensorInfo tensor) => _legacyNames.GetValueOrDefault(tensor.Name, tensor.Name);

    /// <summary>A pointer to the tensor's bytes inside the mapping (unaligned in ggml/ggmf files), valid until disposal.</summary>
    public byte* GetTensorPointer(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (tensor.Offset < 0 || tensor.ByteSize < 0 || tensor.Offset > _length - tensor.ByteSize)
            throw new ArgumentException($"tensor '{tensor.Name}' does not belong to {FileName}");
        return _base + tensor.Offset;
    }

    public ReadOnlySpan<byte> GetTensorData(GgufTensorInfo tensor) => IModelFile.TensorSpan(this, tensor);

    public ReadOnlySpan<byte> GetTensorData(string name) => GetTensorData(GetTensor(name));

    void IModelFile.ReleasePages(byte* start, long bytes) => _file?.ReleasePages(start, bytes);

    public void Dispose()
    {
        _base = null;
        _file?.Dispose();
    }
}

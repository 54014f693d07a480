using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;
using QuantLlama.Gguf;

namespace QuantLlama.Tokenizers;

/// <summary>
/// llama.cpp's vocabulary and tokenizers, built from tokenizer.ggml.* metadata: SentencePiece-style BPE with
/// scores ("llama": llm_tokenizer_spm) and byte-level BPE with ranked merges ("gpt2": llm_tokenizer_bpe with the
/// pre-tokenizer named by tokenizer.ggml.pre). Special tokens in the text are split out first, as llama.cpp's
/// tokenizer_st_partition does: user-defined tokens always, control tokens only when parseSpecial.
/// </summary>
public sealed class LlamaTokenizer : ITokenizer
{
    public enum ModelKind { SentencePiece, BytePairEncoding }

    private const char SpaceMarker = '\u2581'; // ▁
    private const int Null = -1;

    private readonly string[] _texts;
    private readonly float[] _scores;
    private readonly TokenAttributes[] _attrs;
    private readonly byte[][] _bytes;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _textToId;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _mergeRank;
    private readonly PreTokenizer? _pre;
    private readonly bool _ignoreMerges;
    private readonly int[] _specialTokens;
    private readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _prefixesBeforeMarker;
    private readonly int _maxPrefixBeforeMarker;
    private readonly int[] _byteTokens = new int[256];
    private readonly HashSet<int> _endOfGeneration = [];

    public ModelKind Kind { get; }
    public string? PreTokenizerName => _pre?.Name;
    public int VocabSize => _texts.Length;
    public int BosId { get; }
    public int EosId { get; }
    public int EotId { get; }
    public int EomId { get; }
    public int UnknownId { get; }
    public int PaddingId { get; }
    public bool AddBos { get; }
    public bool AddEos { get; }
    public bool AddSpacePrefix { get; }
    public IReadOnlySet<int> EndOfGenerationIds => _endOfGeneration;

    public TokenAttributes GetAttributes(int id) => _attrs[CheckId(id)];
    public float GetScore(int id) => _scores[CheckId(id)];

    /// <summary>The id of a token text, or -1.</summary>
    public int TextToId(string text) => _textToId.TryGetValue(text, out int id) ? id : Null;

    public LlamaTokenizer(GgufMetadata metadata)
    {
        string model = metadata.ContainsKey("tokenizer.ggml.model")
            ? metadata.GetString("tokenizer.ggml.model")
            : throw new InvalidDataException($"{metadata.FileName}: no tokenizer.ggml.model in the metadata (the file has no vocabulary)");
        string? pre = metadata.GetStringOrNull("tokenizer.ggml.pre");

        int bos, eos, unk;
        bool addBos, addEos = false, addSpacePrefix;
        switch (model)
        {
            case "llama":
                Kind = ModelKind.SentencePiece;
                (bos, eos, unk) = (1, 2, 0);
                addBos = true;
                addSpacePrefix = true;
                break;
            case "gpt2":
                Kind = ModelKind.BytePairEncoding;
                (bos, eos, unk) = (11, 11, Null);
                _pre = PreTokenizer.ForName(pre, out _ignoreMerges, out addBos)
                    ?? throw new NotSupportedException($"{metadata.FileName}: pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported");
                addSpacePrefix = false;
                break;
            default:
                throw new NotSupportedException($"{metadata.FileName}: tokenizer model '{model}' is not supported (only 'llama' and 'gpt2')");
        }

        if (!metadata.ContainsKey("tokenizer.ggml.tokens"))
            throw new InvalidDataException($"{metadata.FileName}: no tokenizer.ggml.tokens in the metadata");
        var tokens = metadata.GetStringArray("tokenizer.ggml.tokens");
        int n = tokens.Length;
        if (n == 0) throw new InvalidDataException($"{metadata.FileName}: tokenizer.ggml.tokens is empty");

        _texts = new string[n];
        _scores = new float[n];
        _attrs = new TokenAttributes[n];
        float[]? scores = ReadScores(metadata, n);
        int[]? types = null;
        if (metadata.ContainsKey("tokenizer.ggml.token_type"))
        {
            types = metadata.GetIntArray("tokenizer.ggml.token_type");
            if (types.Length < n) throw new InvalidDataException($"{metadata.FileName}: tokenizer.ggml.token_type has {types.Length} entries for {n} tokens");
        }

        var textToId = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            string text = string.IsNullOrEmpty(tokens[i]) ? $"[EMPTY_{i}]" : tokens[i];
            textToId.TryAdd(text, i); // llama.cpp rejects duplicates; the first one wins here
            _texts[i] = text;
            _scores[i] = scores?[i] ?? 0f;
            _attrs[i] = types == null ? TokenAttributes.Normal : GgufTokenType.ToAttributes(types[i]);
        }
        _textToId = textToId.GetAlternateLookup<ReadOnlySpan<char>>();

        var ranks = new Dictionary<string, int>(StringComparer.Ordinal);
        if (Kind == ModelKind.BytePairEncoding)
        {
            if (!metadata.ContainsKey("tokenizer.ggml.merges"))
                throw new InvalidDataException($"{metadata.FileName}: a gpt2 tokenizer needs tokenizer.ggml.merges");
            var merges = metadata.GetStringArray("tokenizer.ggml.merges");
            for (int i = 0; i < merges.Length; i++)
            {
                string m = merges[i];
                int space = m.Length > 1 ? m.IndexOf(' ', 1) : -1;
                ranks.TryAdd(space < 0 ? "" : m, i);
            }
        }
        _mergeRank = ranks.GetAlternateLookup<ReadOnlySpan<char>>();

        // special ids: defaults disabled when out of range, metadata values used when in range
        int Id(string key, int fallback)
        {
            if (fallback >= n) fallback = Null;
            if (!metadata.ContainsKey(key)) return fallback;
            long v = metadata.GetInteger(key);
            return v >= 0 && v < n ? (int)v : fallback;
        }
        BosId = Id("tokenizer.ggml.bos_token_id", bos);
        EosId = Id("tokenizer.ggml.eos_token_id", eos);
        UnknownId = Id("tokenizer.ggml.unknown_token_id", unk);
        PaddingId = Id("tokenizer.ggml.padding_token_id", Null);
        int eot = Id("tokenizer.ggml.eot_token_id", Null);
        int eom = Id("tokenizer.ggml.eom_token_id", Null);
        int fimPre = Id("tokenizer.ggml.fim_pre_token_id", Null), fimSuf = Id("tokenizer.ggml.fim_suf_token_id", Null);
        int fimMid = Id("tokenizer.ggml.fim_mid_token_id", Null), fimPad = Id("tokenizer.ggml.fim_pad_token_id", Null);

        AddSpacePrefix = metadata.GetBool("tokenizer.ggml.add_space_prefix", addSpacePrefix);
        addBos = metadata.GetBool("tokenizer.ggml.add_bos_token", addBos);
        addEos = metadata.GetBool("tokenizer.ggml.add_eos_token", addEos);
        AddBos = addBos && BosId != Null;
        AddEos = addEos && EosId != Null;

        // llama.cpp finds end-of-turn and fill-in-the-middle tokens by their text and makes them control tokens
        for (int i = 0; i < n; i++)
        {
            string t = _texts[i];
            if (eot == Null && EotNames.Contains(t)) { eot = i; _attrs[i] |= TokenAttributes.Control; }
            if (eom == Null && t == "<|eom_id|>") { eom = i; _attrs[i] |= TokenAttributes.Control; }
            if (fimPre == Null && FimPreNames.Contains(t)) { fimPre = i; _attrs[i] |= TokenAttributes.Control; }
            if (fimSuf == Null && FimSufNames.Contains(t)) { fimSuf = i; _attrs[i] |= TokenAttributes.Control; }
            if (fimMid == Null && FimMidNames.Contains(t)) { fimMid = i; _attrs[i] |= TokenAttributes.Control; }
            if (fimPad == Null && FimPadNames.Contains(t)) { fimPad = i; _attrs[i] |= TokenAttributes.Control; }
        }
        for (int i = 0; i < n; i++)
        {
            if (EogNames.Contains(_texts[i]))
            {
                _endOfGeneration.Add(i);
                _attrs[i] |= TokenAttributes.Control;
            }
        }
        // llama.cpp's Gemma 4 fix: there </s> is ordinary text, not an end of generation
        if (textToId.TryGetValue("<|tool_response>", out int toolResponse) && _endOfGeneration.Contains(toolResponse) &&
            textToId.TryGetValue("</s>", out int endOfSentence) && endOfSentence != EosId)
        {
            _endOfGeneration.Remove(endOfSentence);
            _attrs[endOfSentence] = TokenAttributes.Normal;
        }
        EotId = eot;
        EomId = eom;
        foreach (int id in new[] { EosId, eot, eom })
            if (id != Null) _endOfGeneration.Add(id);

        _specialTokens = Enumerable.Range(0, n)
            .Where(i => (_attrs[i] & (TokenAttributes.Control | TokenAttributes.UserDefined | TokenAttributes.Unknown)) != 0)
            .OrderByDescending(i => _texts[i].Length).ThenBy(i => i).ToArray();

        // llama.cpp's Phi-3 fix: its special tokens swallow the whitespace after them
        string name = metadata.GetStringOrNull("general.name")?.ToLowerInvariant() ?? "";
        if (name.Contains("phi-3") || name.Contains("phi3"))
        {
            foreach (int id in _specialTokens) _attrs[id] |= TokenAttributes.RStrip;
            if (textToId.TryGetValue("</s>", out int s)) _attrs[s] |= TokenAttributes.RStrip;
            foreach (var t in new[] { "<unk>", "<s>", "<|endoftext|>" })
                if (textToId.TryGetValue(t, out int id)) _attrs[id] &= ~TokenAttributes.RStrip;
        }

        // Token prefixes that a ▁ follows inside a token: where none ends just before a ▁, no token can span that ▁'s
        // left edge, so SentencePiece merging may run on the pieces either side of it independently.
        var prefixes = new HashSet<string>(StringComparer.Ordinal);
        if (Kind == ModelKind.SentencePiece)
        {
            foreach (string t in _texts)
                for (int k = t.IndexOf(SpaceMarker, 1); k > 0; k = k + 1 < t.Length ? t.IndexOf(SpaceMarker, k + 1) : -1)
                {
                    prefixes.Add(t[..k]);
                    _maxPrefixBeforeMarker = Math.Max(_maxPrefixBeforeMarker, k);
                }
        }
        _prefixesBeforeMarker = prefixes.GetAlternateLookup<ReadOnlySpan<char>>();

        for (int b = 0; b < 256; b++) _byteTokens[b] = FindByteToken((byte)b);
        _bytes = new byte[n][];
        for (int i = 0; i < n; i++) _bytes[i] = ComputeBytes(i);
    }

    private static readonly HashSet<string> EotNames =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
        "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
    ];

    private static readonly HashSet<string> EogNames =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|tool_response>", "<|endoftext|>", "<|eom_id|>",
        "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<｜end▁of▁sentence｜>", "</s>",
    ];

    private static readonly HashSet<string> FimPreNames = ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>"];
    private static readonly HashSet<string> FimSufNames = ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>"];
    private static readonly HashSet<string> FimMidNames = ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>"];
    private static readonly HashSet<string> FimPadNames = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"];

    private static float[]? ReadScores(GgufMetadata metadata, int n)
    {
        const string key = "tokenizer.ggml.scores";
        if (!metadata.ContainsKey(key)) return null;
        var arr = metadata.GetArray(key);
        if (arr.Count < n) throw new InvalidDataException($"{metadata.FileName}: {key} has {arr.Count} entries for {n} tokens");
        return arr.ElementType switch
        {
            GgufValueType.Float32 => arr.As<float>(),
            GgufValueType.Int32 => arr.As<int>().Select(v => (float)v).ToArray(),
            _ => throw new InvalidDataException($"{metadata.FileName}: {key} must be float32 or int32, not {arr.ElementType}"),
        };
    }

    private int CheckId(int id) => (uint)id < (uint)_texts.Length
        ? id : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary of {_texts.Length}");

    private int FindByteToken(byte b)
    {
        if (Kind == ModelKind.SentencePiece)
        {
            if (_textToId.TryGetValue($"<0x{b:X2}>", out int id)) return id;
            if (b < 0x80 && _textToId.TryGetValue(((char)b).ToString(), out id)) return id;
            return UnknownId;
        }
        return _textToId.TryGetValue(ByteLevel.ByteToChar[b].ToString(), out int bid) ? bid : Null;
    }

    // ---------------------------------------------------------------- decoding

    public string TokenToPiece(int id) => _texts[CheckId(id)];

    public byte[] TokenToBytes(int id) => _bytes[CheckId(id)];

    private byte[] ComputeBytes(int id)
    {
        var attr = _attrs[id];
        string text = _texts[id];
        if ((attr & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0) return [];
        if ((attr & TokenAttributes.UserDefined) != 0) return Encoding.UTF8.GetBytes(text);
        if ((attr & TokenAttributes.Normal) != 0)
        {
            if (Kind == ModelKind.SentencePiece) return Encoding.UTF8.GetBytes(text.Replace(SpaceMarker, ' '));
            var bytes = new List<byte>(text.Length);
            Span<byte> buf = stackalloc byte[4];
            foreach (var rune in text.EnumerateRunes())
            {
                if (rune.IsBmp && ByteLevel.TryCharToByte((char)rune.Value, out byte b)) bytes.Add(b);
                else
                {
                    int len = rune.EncodeToUtf8(buf);
                    for (int k = 0; k < len; k++) bytes.Add(buf[k]);
                }
            }
            return bytes.ToArray();
        }
        if ((attr & TokenAttributes.Byte) != 0)
        {
            if (text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal) &&
                byte.TryParse(text.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte value))
                return [value];
            return Kind == ModelKind.BytePairEncoding && text.Length == 1 && ByteLevel.TryCharToByte(text[0], out byte c) ? [c] : [];
        }
        return [];
    }

    // ---------------------------------------------------------------- encoding

    /// <summary>Tokenizes UTF-8 bytes; invalid sequences become U+FFFD, as llama.cpp's code point decoding does.</summary>
    public List<int> Encode(ReadOnlySpan<byte> utf8, bool addSpecial, bool parseSpecial)
        => Encode(Encoding.UTF8.GetString(utf8), addSpecial, parseSpecial);

    public List<int> Encode(string text, bool addSpecial, bool parseSpecial)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = ReplaceLoneSurrogates(text);
        var output = new List<int>(text.Length / 3 + 4);
        var fragments = Partition(text, parseSpecial);

        if (addSpecial && AddBos) output.Add(BosId);
        if (Kind == ModelKind.SentencePiece)
        {
            bool prevSpecial = true;
            foreach (var f in fragments)
            {
                if (f.Token != Null) { output.Add(f.Token); prevSpecial = true; continue; }
                var sb = new StringBuilder(f.Length + 1);
                if (AddSpacePrefix && prevSpecial) sb.Append(' ');
                sb.Append(text, f.Start, f.Length);
                sb.Replace(' ', SpaceMarker);
                EncodeSentencePiece(sb.ToString(), output);
                prevSpecial = false;
            }
        }
        else
        {
            foreach (var f in fragments)
            {
                if (f.Token != Null) output.Add(f.Token);
                else EncodeBytePairs(text.AsSpan(f.Start, f.Length), output);
            }
        }
        if (addSpecial && AddEos) output.Add(EosId);
        return output;
    }

    private static string ReplaceLoneSurrogates(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            return Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(text)); // lone surrogate: U+FFFD, as UTF-8 would carry it
        }
        return text;
    }

    private readonly record struct Fragment(int Start, int Length, int Token);

    private static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';

    /// <summary>llama.cpp's tokenizer_st_partition: cut special-token texts out of the raw text, longest first.</summary>
    private List<Fragment> Partition(string text, bool parseSpecial)
    {
        var fragments = new List<Fragment>();
        if (text.Length == 0) return fragments;
        fragments.Add(new Fragment(0, text.Length, Null));
        var next = new List<Fragment>();
        foreach (int id in _specialTokens)
        {
            var attr = _attrs[id];
            if (!parseSpecial && (attr & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0) continue;
            string special = _texts[id];
            if (!text.Contains(special, StringComparison.Ordinal)) continue;

            next.Clear();
            foreach (var f in fragments)
            {
                if (f.Token != Null) { next.Add(f); continue; }
                int start = f.Start, end = f.Start + f.Length;
                while (start < end)
                {
                    int rel = text.AsSpan(start, end - start).IndexOf(special, StringComparison.Ordinal);
                    if (rel < 0) break;
                    int match = start + rel;
                    int leftLen = match - start;
                    if ((attr & TokenAttributes.LStrip) != 0)
                        while (leftLen > 0 && IsCSpace(text[start + leftLen - 1])) leftLen--;
                    if (leftLen > 0) next.Add(new Fragment(start, leftLen, Null));
                    next.Add(new Fragment(0, 0, id));
                    start = match + special.Length;
                    if ((attr & TokenAttributes.RStrip) != 0)
                        while (start < end && IsCSpace(text[start])) start++;
                }
                if (start < end) next.Add(new Fragment(start, end - start, Null));
            }
            (fragments, next) = (next, fragments);
        }
        return fragments;
    }

    private struct Symbol
    {
        public int Start, Length, Prev, Next;
    }

    /// <summary>
    /// Merges a dequeued pair (key's low 32 bits: the left symbol) into its left symbol, unless an earlier merge made
    /// the entry stale (either side consumed, or the pair's length no longer the queued size). Shared by SPM and BPE.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryMerge(Symbol[] symbols, int size, long key, out int left)
    {
        left = (int)(uint)key;
        ref var l = ref symbols[left];
        if (l.Length == 0 || l.Next < 0) return false;
        ref var r = ref symbols[l.Next];
        if (r.Length == 0 || l.Length + r.Length != size) return false;

        l.Length += r.Length;
        r.Length = 0;
        l.Next = r.Next;
        if (r.Next >= 0) symbols[r.Next].Prev = left;
        return true;
    }

    // Highest score first, then leftmost: the order of llama.cpp's llm_bigram_spm queue.
    private static long SpmKey(float score, int left)
    {
        uint bits = BitConverter.SingleToUInt32Bits(score);
        uint ordered = (bits & 0x80000000) != 0 ? ~bits : bits | 0x80000000; // ascending with the float
        return (long)(((ulong)~ordered << 32) | (uint)left) ^ long.MinValue;
    }

    // Lowest rank first, then leftmost: the order of llama.cpp's llm_bigram_bpe queue.
    private static long BpeKey(int rank, int left) => ((long)rank << 32) | (uint)left;

    private void EncodeSentencePiece(string text, List<int> output)
    {
        int chunkStart = 0;
        for (int p = text.IndexOf(SpaceMarker, 1); p > 0; p = p + 1 < text.Length ? text.IndexOf(SpaceMarker, p + 1) : -1)
        {
            if (!CanCutBefore(text, p)) continue;
            EncodeSentencePiece(text, chunkStart, p, output);
            chunkStart = p;
        }
        EncodeSentencePiece(text, chunkStart, text.Length, output);
    }

    private bool CanCutBefore(string text, int p)
    {
        for (int len = 1; len <= _maxPrefixBeforeMarker && len <= p; len++)
            if (_prefixesBeforeMarker.Contains(text.AsSpan(p - len, len))) return false;
        return true;
    }

    /// <summary>llama.cpp's llm_tokenizer_spm on text[start..end): merge the best-scoring adjacent pair first.</summary>
    private void EncodeSentencePiece(string text, int start, int end, List<int> output)
    {
        if (end <= start) return;
        bool pooled = end - start <= 1 << 20; // huge inputs get their own array, freed after the call
        var symbols = pooled ? ArrayPool<Symbol>.Shared.Rent(end - start) : new Symbol[end - start];
        try
        {
            int count = 0;
            for (int offs = start; offs < end;)
            {
                int len = char.IsHighSurrogate(text[offs]) && offs + 1 < end && char.IsLowSurrogate(text[offs + 1]) ? 2 : 1;
                symbols[count] = new Symbol { Start = offs, Length = len, Prev = count - 1, Next = offs + len == end ? -1 : count + 1 };
                offs += len;
                count++;
            }

            var queue = new PriorityQueue<int, long>(count);
            for (int i = 1; i < count; i++) TryAddSpmBigram(text, symbols, queue, i - 1, i);

            while (queue.TryDequeue(out int size, out long key))
            {
                if (!TryMerge(symbols, size, key, out int left)) continue;
                TryAddSpmBigram(text, symbols, queue, symbols[left].Prev, left);
                TryAddSpmBigram(text, symbols, queue, left, symbols[left].Next);
            }

            Span<byte> utf8 = stackalloc byte[8];
            for (int i = 0; i != -1 && count > 0; i = symbols[i].Next)
            {
                var piece = text.AsSpan(symbols[i].Start, symbols[i].Length);
                if (_textToId.TryGetValue(piece, out int id)) { output.Add(id); continue; }
                int nb = Encoding.UTF8.GetBytes(piece, utf8);
                for (int k = 0; k < nb; k++)
                    if (_byteTokens[utf8[k]] != Null) output.Add(_byteTokens[utf8[k]]);
            }
        }
        finally
        {
            if (pooled) ArrayPool<Symbol>.Shared.Return(symbols);
        }
    }

    private void TryAddSpmBigram(string text, Symbol[] symbols, PriorityQueue<int, long> queue, int left, int right)
    {
        if (left == -1 || right == -1) return;
        int size = symbols[left].Length + symbols[right].Length;
        if (!_textToId.TryGetValue(text.AsSpan(symbols[left].Start, size), out int id)) return;
        queue.Enqueue(size, SpmKey(_scores[id], left));
    }

    [ThreadStatic] private static char[]? t_wordBuffer;

    private void EncodeBytePairs(ReadOnlySpan<char> fragment, List<int> output)
    {
        // code points of the fragment (surrogates are paired here)
        var cps = new int[fragment.Length];
        int ncp = 0;
        for (int i = 0; i < fragment.Length; i++)
        {
            char c = fragment[i];
            if (char.IsHighSurrogate(c) && i + 1 < fragment.Length && char.IsLowSurrogate(fragment[i + 1]))
            {
                cps[ncp++] = char.ConvertToUtf32(c, fragment[i + 1]);
                i++;
            }
            else cps[ncp++] = c;
        }

        var words = _pre!.Split(cps.AsSpan(0, ncp));
        var queue = new PriorityQueue<int, long>();
        Symbol[] symbols = [];
        int cpStart = 0;
        Span<byte> utf8 = stackalloc byte[4];
        foreach (int wordLength in words)
        {
            // byte-level encoding of the word: one char per UTF-8 byte
            int maxChars = 0;
            for (int k = 0; k < wordLength; k++)
                maxChars += Rune.IsValid(cps[cpStart + k]) ? new Rune(cps[cpStart + k]).Utf8SequenceLength : 3;
            var buffer = maxChars > 65536 ? new char[maxChars] // a huge "word": not kept past this call
                : t_wordBuffer is { } wb && wb.Length >= maxChars ? wb : (t_wordBuffer = new char[Math.Max(maxChars, 256)]);
            int nchar = 0;
            for (int k = 0; k < wordLength; k++)
            {
                int cp = cps[cpStart + k];
                int nb = new Rune(Rune.IsValid(cp) ? cp : 0xFFFD).EncodeToUtf8(utf8);
                for (int b = 0; b < nb; b++) buffer[nchar++] = ByteLevel.ByteToChar[utf8[b]];
            }
            cpStart += wordLength;
            var word = buffer.AsSpan(0, nchar);

            if (_ignoreMerges && _textToId.TryGetValue(word, out int whole)) { output.Add(whole); continue; }

            if (symbols.Length < nchar) symbols = new Symbol[Math.Max(nchar, 64)];
            for (int k = 0; k < nchar; k++)
                symbols[k] = new Symbol { Start = k, Length = 1, Prev = k - 1, Next = k + 1 == nchar ? -1 : k + 1 };

            queue.Clear();
            queue.EnsureCapacity(nchar);
            for (int k = 1; k < nchar; k++) TryAddBpeBigram(word, symbols, queue, k - 1, k);

            while (queue.TryDequeue(out int size, out long key))
            {
                if (!TryMerge(symbols, size, key, out int left)) continue;
                TryAddBpeBigram(word, symbols, queue, symbols[left].Prev, left);
                TryAddBpeBigram(word, symbols, queue, left, symbols[left].Next);
            }

            for (int i = 0; i != -1 && nchar > 0; i = symbols[i].Next)
            {
                var piece = word.Slice(symbols[i].Start, symbols[i].Length);
                if (_textToId.TryGetValue(piece, out int id)) { output.Add(id); continue; }
                foreach (char c in piece)
                    if (_textToId.TryGetValue([c], out int single)) output.Add(single);
            }
        }
    }

    private void TryAddBpeBigram(ReadOnlySpan<char> word, Symbol[] symbols, PriorityQueue<int, long> queue, int left, int right)
    {
        if (left == -1 || right == -1) return;
        int leftLen = symbols[left].Length, rightLen = symbols[right].Length;
        int keyLen = leftLen + 1 + rightLen;
        char[]? rented = null;
        Span<char> key = keyLen <= 256 ? stackalloc char[keyLen] : (rented = ArrayPool<char>.Shared.Rent(keyLen)).AsSpan(0, keyLen);
        word.Slice(symbols[left].Start, leftLen).CopyTo(key);
        key[leftLen] = ' ';
        word.Slice(symbols[right].Start, rightLen).CopyTo(key[(leftLen + 1)..]);
        bool found = _mergeRank.TryGetValue(key, out int rank);
        if (rented != null) ArrayPool<char>.Shared.Return(rented);
        if (found) queue.Enqueue(leftLen + rightLen, BpeKey(rank, left));
    }
}

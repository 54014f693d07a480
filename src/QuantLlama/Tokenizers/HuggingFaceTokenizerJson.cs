using System.Text.Json;
using QuantLlama.Gguf;

namespace QuantLlama.Tokenizers;

/// <summary>
/// Reads a Hugging Face tokenizer.json of the BPE kind and states it as the tokenizer.ggml.* metadata llama.cpp's
/// converter would write: byte-level BPE (Llama 3 style: ByteLevel pre-tokenizer, Split regex) becomes "gpt2" with
/// merges and the matching tokenizer.ggml.pre; SentencePiece-style BPE (Llama 2 / Mistral style: ▁ for spaces,
/// byte_fallback) becomes "llama" with scores that order merges as the file's merge ranks do. Added tokens become
/// control tokens (special) or user-defined ones. BOS/EOS come from tokenizer_config.json beside the file when present.
/// </summary>
public static class HuggingFaceTokenizerJson
{
    private const string Llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Qwen2Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private const string Gpt2Regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

    /// <summary>The metadata (tokenizer.ggml.* keys) for the tokenizer.json at path.</summary>
    public static GgufMetadata ToMetadata(string path)
    {
        string fileName = Path.GetFileName(path);
        JsonDocument doc;
        try
        {
            using var stream = File.OpenRead(path);
            doc = JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{fileName}: not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{fileName}: no \"model\" object; not a Hugging Face tokenizer.json");
            string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
            if (type != "BPE")
                throw new NotSupportedException($"{fileName}: tokenizer model type '{type}' is not supported (only BPE)");
            if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{fileName}: model.vocab is missing");

            // id -> text, from the vocabulary and the added tokens
            var byId = new Dictionary<int, string>();
            foreach (var p in vocab.EnumerateObject())
                if (p.Value.TryGetInt32(out int id) && id >= 0) byId.TryAdd(id, p.Name);
            var added = new Dictionary<int, bool>(); // id -> special
            if (root.TryGetProperty("added_tokens", out var addedTokens) && addedTokens.ValueKind == JsonValueKind.Array)
            {
                foreach (var a in addedTokens.EnumerateArray())
                {
                    if (!a.TryGetProperty("id", out var idEl) || !idEl.TryGetInt32(out int id) || id < 0) continue;
                    if (!a.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String) continue;
                    byId[id] = c.GetString()!;
                    added[id] = a.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True;
                }
            }
            if (byId.Count == 0) throw new InvalidDataException($"{fileName}: the vocabulary is empty");
            int n = byId.Keys.Max() + 1;
            if (n > 16_000_000) throw new InvalidDataException($"{fileName}: token id {n - 1} is implausibly large");

            var merges = ReadMerges(model, fileName);
            bool byteLevel = HasType(root, "pre_tokenizer", "ByteLevel") || HasType(root, "decoder", "ByteLevel");
            bool byteFallback = model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True;
            string? unkToken = model.TryGetProperty("unk_token", out var u) && u.ValueKind == JsonValueKind.String ? u.GetString() : null;

            var tokens = new string[n];
            var types = new int[n];
            for (int i = 0; i < n; i++)
            {
                if (!byId.TryGetValue(i, out var text)) { tokens[i] = $"[PAD{i}]"; types[i] = GgufTokenType.Unused; continue; }
                tokens[i] = text;
                if (added.TryGetValue(i, out bool special))
                    types[i] = special || LooksSpecial(text) ? GgufTokenType.Control : GgufTokenType.UserDefined;
                else if (text == unkToken) types[i] = GgufTokenType.Unknown;
                else if (!byteLevel && byteFallback && IsByteToken(text)) types[i] = GgufTokenType.Byte;
                else types[i] = GgufTokenType.Normal;
            }

            var entries = new List<KeyValuePair<string, GgufValue>>();
            void Add(string key, GgufValue value) => entries.Add(new(key, value));
            var config = ReadConfig(path);

            if (byteLevel)
            {
                string pre = DetectPreTokenizer(root, fileName);
                Add("tokenizer.ggml.model", GgufValue.From("gpt2"));
                Add("tokenizer.ggml.pre", GgufValue.From(pre));
                Add("tokenizer.ggml.tokens", GgufValue.FromArray(tokens));
                Add("tokenizer.ggml.token_type", GgufValue.FromArray(types));
                Add("tokenizer.ggml.merges", GgufValue.FromArray(merges.Select(m => m.Left + " " + m.Right).ToArray()));
            }
            else if (UsesSentencePieceSpaces(root, out bool addSpacePrefix))
            {
                Add("tokenizer.ggml.model", GgufValue.From("llama"));
                Add("tokenizer.ggml.tokens", GgufValue.FromArray(tokens));
                Add("tokenizer.ggml.scores", GgufValue.FromArray(ScoresFromMerges(tokens, merges)));
                Add("tokenizer.ggml.token_type", GgufValue.FromArray(types));
                Add("tokenizer.ggml.add_space_prefix", GgufValue.From(addSpacePrefix));
            }
            else
            {
                throw new NotSupportedException($"{fileName}: a BPE tokenizer that is neither byte-level nor SentencePiece-style (▁ for spaces) is not supported");
            }

            var textToId = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < n; i++) textToId.TryAdd(tokens[i], i);
            void AddId(string key, string? text)
            {
                if (text != null && textToId.TryGetValue(text, out int id)) Add(key, GgufValue.From((uint)id));
            }
            // without tokenizer_config.json: the template's BOS, else the usual names among the added tokens
            string? FirstAdded(params string[] names) => names.FirstOrDefault(name => added.Keys.Any(id => tokens[id] == name));
            AddId("tokenizer.ggml.bos_token_id", config.Bos ?? TemplateBos(root) ?? FirstAdded("<|begin_of_text|>", "<s>", "<|startoftext|>"));
            AddId("tokenizer.ggml.eos_token_id", config.Eos ?? FirstAdded("<|end_of_text|>", "</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>"));
            AddId("tokenizer.ggml.unknown_token_id", config.Unk ?? unkToken);
            AddId("tokenizer.ggml.padding_token_id", config.Pad);
            if (config.AddBos is bool addBos) Add("tokenizer.ggml.add_bos_token", GgufValue.From(addBos));
            else if (TemplateBos(root) != null) Add("tokenizer.ggml.add_bos_token", GgufValue.From(true));
            if (config.AddEos is bool addEos) Add("tokenizer.ggml.add_eos_token", GgufValue.From(addEos));
            return new GgufMetadata(fileName, entries);
        }
    }

    private readonly record struct Merge(string Left, string Right);

    private static List<Merge> ReadMerges(JsonElement model, string fileName)
    {
        var merges = new List<Merge>();
        if (!model.TryGetProperty("merges", out var arr) || arr.ValueKind != JsonValueKind.Array) return merges;
        foreach (var m in arr.EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.String)
            {
                string s = m.GetString()!;
                int space = s.Length > 1 ? s.IndexOf(' ', 1) : -1;
                if (space < 0) throw new InvalidDataException($"{fileName}: merge '{s}' is not two pieces separated by a space");
                merges.Add(new Merge(s[..space], s[(space + 1)..]));
            }
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2)
            {
                merges.Add(new Merge(m[0].GetString() ?? "", m[1].GetString() ?? ""));
            }
            else throw new InvalidDataException($"{fileName}: a merge is neither \"a b\" nor [\"a\", \"b\"]");
        }
        return merges;
    }

    /// <summary>
    /// SentencePiece scores that make llama.cpp's score-ordered merging follow the merge ranks: a token made by
    /// merge r scores -r; tokens no merge makes score far below every merge.
    /// </summary>
    private static float[] ScoresFromMerges(string[] tokens, List<Merge> merges)
    {
        var scores = new float[tokens.Length];
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++) index.TryAdd(tokens[i], i);
        var seen = new bool[tokens.Length];
        for (int r = 0; r < merges.Count; r++)
        {
            if (index.TryGetValue(merges[r].Left + merges[r].Right, out int id) && !seen[id])
            {
                seen[id] = true;
                scores[id] = -r;
            }
        }
        for (int i = 0; i < tokens.Length; i++)
            if (!seen[i]) scores[i] = tokens[i].Length > 1 ? -1e9f : 0f;
        return scores;
    }

    private static bool IsByteToken(string text) =>
        text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal) && text[5] == '>' && Uri.IsHexDigit(text[3]) && Uri.IsHexDigit(text[4]);

    private static bool LooksSpecial(string text) =>
        (text.StartsWith("<|", StringComparison.Ordinal) && text.EndsWith("|>", StringComparison.Ordinal)) ||
        (text.StartsWith("<｜", StringComparison.Ordinal) && text.EndsWith("｜>", StringComparison.Ordinal)) ||
        text is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]";

    private static IEnumerable<JsonElement> Components(JsonElement root, string property)
    {
        if (!root.TryGetProperty(property, out var el) || el.ValueKind != JsonValueKind.Object) yield break;
        var stack = new Stack<JsonElement>();
        stack.Push(el);
        while (stack.Count > 0)
        {
            var e = stack.Pop();
            yield return e;
            foreach (var listName in new[] { "pretokenizers", "normalizers", "decoders" })
                if (e.TryGetProperty(listName, out var list) && list.ValueKind == JsonValueKind.Array)
                    foreach (var child in list.EnumerateArray().Reverse())
                        if (child.ValueKind == JsonValueKind.Object) stack.Push(child);
        }
    }

    private static string? TypeOf(JsonElement e) => e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;

    private static bool HasType(JsonElement root, string property, string type) => Components(root, property).Any(e => TypeOf(e) == type);

    private static string DetectPreTokenizer(JsonElement root, string fileName)
    {
        var splits = Components(root, "pre_tokenizer").Where(e => TypeOf(e) == "Split").ToList();
        var regexes = splits.Select(s => s.TryGetProperty("pattern", out var p) && p.ValueKind == JsonValueKind.Object &&
                                         p.TryGetProperty("Regex", out var r) ? r.GetString() : null).ToList();
        if (regexes.Count == 0)
        {
            bool useRegex = Components(root, "pre_tokenizer").Where(e => TypeOf(e) == "ByteLevel")
                .All(e => !e.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False);
            if (useRegex) return "gpt-2";
        }
        else if (regexes.Count == 1)
        {
            if (regexes[0] == Llama3Regex) return "llama-bpe";
            if (regexes[0] == Qwen2Regex) return "qwen2";
            if (regexes[0] == Gpt2Regex) return "gpt-2";
        }
        throw new NotSupportedException($"{fileName}: this byte-level pre-tokenizer ({string.Join(" then ", regexes.Select(r => r ?? "?"))}) is not supported");
    }

    private static bool UsesSentencePieceSpaces(JsonElement root, out bool addSpacePrefix)
    {
        addSpacePrefix = false;
        bool replaces = false;
        foreach (var e in Components(root, "normalizer"))
        {
            string? type = TypeOf(e);
            if (type == "Prepend" && e.TryGetProperty("prepend", out var p) && p.GetString() == "\u2581") addSpacePrefix = true;
            if (type == "Replace" && e.TryGetProperty("content", out var c) && c.GetString() == "\u2581") replaces = true;
        }
        foreach (var e in Components(root, "pre_tokenizer"))
        {
            if (TypeOf(e) != "Metaspace") continue;
            replaces = true;
            string scheme = e.TryGetProperty("prepend_scheme", out var ps) && ps.ValueKind == JsonValueKind.String ? ps.GetString()!
                : e.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.False ? "never" : "always";
            addSpacePrefix = scheme != "never";
        }
        return replaces;
    }

    private static string? TemplateBos(JsonElement root)
    {
        foreach (var e in Components(root, "post_processor"))
        {
            if (TypeOf(e) != "TemplateProcessing" || !e.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array) continue;
            foreach (var item in single.EnumerateArray())
            {
                if (item.TryGetProperty("Sequence", out _)) return null;
                if (item.TryGetProperty("SpecialToken", out var st) && st.TryGetProperty("id", out var id)) return id.GetString();
            }
        }
        return null;
    }

    private sealed record Config(string? Bos, string? Eos, string? Unk, string? Pad, bool? AddBos, bool? AddEos);

    private static Config ReadConfig(string tokenizerJsonPath)
    {
        string path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tokenizerJsonPath)) ?? ".", "tokenizer_config.json");
        if (!File.Exists(path)) return new Config(null, null, null, null, null, null);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) return new Config(null, null, null, null, null, null);
            string? Token(string key) => r.TryGetProperty(key, out var v) ? v.ValueKind switch
            {
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString(),
                _ => null,
            } : null;
            bool? Flag(string key) => r.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
            return new Config(Token("bos_token"), Token("eos_token"), Token("unk_token"), Token("pad_token"), Flag("add_bos_token"), Flag("add_eos_token"));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{Path.GetFileName(path)}: not valid JSON ({e.Message})", e);
        }
    }
}

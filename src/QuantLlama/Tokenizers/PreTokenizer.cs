namespace QuantLlama.Tokenizers;

/// <summary>
/// Splits text (as code points) into words before byte-level BPE, as llama.cpp's unicode_regex_split does: a
/// sequence of splitters, each cutting every current segment further; text between matches is kept as its own
/// word, never dropped. The GPT-2 and Llama 3 patterns are hand-written scanners (as llama.cpp's custom
/// implementations); the others are simple regexes written as matchers with regex leftmost-first semantics.
/// </summary>
internal sealed class PreTokenizer
{
    private delegate void Splitter(ReadOnlySpan<int> cps, int start, int end, List<int> outLengths);

    private readonly Splitter[] _splitters;

    public string Name { get; }

    private PreTokenizer(string name, params Splitter[] splitters)
    {
        Name = name;
        _splitters = splitters;
    }

    /// <summary>The pre-tokenizer llama.cpp uses for tokenizer.ggml.pre; null when not supported.</summary>
    public static PreTokenizer? ForName(string? pre, out bool ignoreMerges, out bool addBosDefault)
    {
        ignoreMerges = false;
        addBosDefault = false;
        switch (pre)
        {
            case null or "" or "default":
                return new PreTokenizer("default",
                    Matcher(PunctuationAndMathRun), Gpt2, Matcher(NumberRun), Matcher(ThreeAsciiDigits));
            case "llama3" or "llama-v3" or "llama-bpe" or "falcon3" or "falcon-h1" or "pixtral" or "midm-2.0" or "lfm2":
                ignoreMerges = true;
                addBosDefault = true;
                return new PreTokenizer("llama3", Llama3(3));
            case "dbrx" or "smaug-bpe" or "chatglm-bpe" or "glm4":
                return new PreTokenizer("llama3", Llama3(3));
            case "qwen2" or "deepseek-r1-qwen" or "stablelm2" or "megrez" or "hunyuan":
                return new PreTokenizer("qwen2", Llama3(1));
            case "gpt-2" or "phi-2" or "mpt" or "olmo" or "jais" or "jina-es" or "jina-de" or "gigachat" or "jina-v2-es"
                or "jina-v2-de" or "jina-v1-en" or "jina-v2-code" or "roberta-bpe" or "exaone4" or "trillion" or "a.x-4.0"
                or "mellum" or "modern-bert":
                return new PreTokenizer("gpt-2", Gpt2);
            case "starcoder" or "refact" or "command-r" or "smollm" or "codeshell" or "exaone" or "minerva-7b":
                return new PreTokenizer("starcoder", Matcher(SingleNumber), Gpt2);
            case "falcon":
                return new PreTokenizer("falcon", Matcher(FalconPunctuationRun), Gpt2, Matcher(ThreeAsciiDigits));
            case "deepseek-coder":
                return new PreTokenizer("deepseek-coder",
                    Matcher(SingleNewline), Matcher(OptionalSpaceThen(CpFlags.Letter)),
                    Matcher(OptionalSpaceThen(CpFlags.Punctuation)), Matcher(CjkRun), Matcher(SingleNumber));
            default:
                return null;
        }
    }

    /// <summary>Splits the code points into words, returned as lengths (in code points) in order.</summary>
    public List<int> Split(ReadOnlySpan<int> cps)
    {
        var lengths = new List<int> { cps.Length };
        var next = new List<int>();
        foreach (var splitter in _splitters)
        {
            next.Clear();
            int start = 0;
            foreach (int len in lengths)
            {
                splitter(cps, start, start + len, next);
                start += len;
            }
            (lengths, next) = (next, lengths);
        }
        return lengths;
    }

    // --- generic regex-like matchers: length of the match at pos, 0 when none ---

    private delegate int Match(ReadOnlySpan<int> cps, int pos, int end);

    private static Splitter Matcher(Match match) => (cps, start, end, outLengths) =>
    {
        int gapStart = start;
        int pos = start;
        while (pos < end)
        {
            int len = match(cps, pos, end);
            if (len == 0) { pos++; continue; }
            if (pos > gapStart) outLengths.Add(pos - gapStart);
            outLengths.Add(len);
            pos += len;
            gapStart = pos;
        }
        if (end > gapStart) outLengths.Add(end - gapStart);
    };

    private static bool IsRegexSpace(int cp) => CodePointClass.IsWhitespace(cp);

    private static int SingleNewline(ReadOnlySpan<int> cps, int pos, int end) => cps[pos] is '\r' or '\n' ? 1 : 0;

    private static int SingleNumber(ReadOnlySpan<int> cps, int pos, int end) => CodePointClass.IsNumber(cps[pos]) ? 1 : 0;

    private static int NumberRun(ReadOnlySpan<int> cps, int pos, int end)
    {
        int p = pos;
        while (p < end && CodePointClass.IsNumber(cps[p])) p++;
        return p - pos;
    }

    private static int ThreeAsciiDigits(ReadOnlySpan<int> cps, int pos, int end) =>
        pos + 3 <= end && IsAsciiDigit(cps[pos]) && IsAsciiDigit(cps[pos + 1]) && IsAsciiDigit(cps[pos + 2]) ? 3 : 0;

    private static bool IsAsciiDigit(int cp) => cp is >= '0' and <= '9';

    // [\p{P}\$\+<=>\^~\|]+
    private static int PunctuationAndMathRun(ReadOnlySpan<int> cps, int pos, int end)
    {
        int p = pos;
        while (p < end && (CodePointClass.IsPunctuation(cps[p]) || cps[p] is '$' or '+' or '<' or '=' or '>' or '^' or '~' or '|')) p++;
        return p - pos;
    }

    // [\p{P}\$\+<=>\^~\|`]+
    private static int FalconPunctuationRun(ReadOnlySpan<int> cps, int pos, int end)
    {
        int p = pos;
        while (p < end && (CodePointClass.IsPunctuation(cps[p]) || cps[p] is '$' or '+' or '<' or '=' or '>' or '^' or '~' or '|' or '`')) p++;
        return p - pos;
    }

    // \s?\p{X}+
    private static Match OptionalSpaceThen(CpFlags cls) => (cps, pos, end) =>
    {
        int p = pos;
        if (IsRegexSpace(cps[p]) && p + 1 < end && (CodePointClass.Of(cps[p + 1]) & cls) != 0) p++;
        int first = p;
        while (p < end && (CodePointClass.Of(cps[p]) & cls) != 0) p++;
        return p > first ? p - pos : 0;
    };

    // [一-龥ࠀ-一가-퟿]+
    private static int CjkRun(ReadOnlySpan<int> cps, int pos, int end)
    {
        int p = pos;
        while (p < end && cps[p] is >= 0x4E00 and <= 0x9FA5 or >= 0x0800 and <= 0x4E00 or >= 0xAC00 and <= 0xD7FF) p++;
        return p - pos;
    }

    // --- llama.cpp's custom scanners ---

    private const int OutOfRange = -1;

    /// <summary>
    /// What the scanners share: code points and their classes read as out of range outside [start, end), and pieces
    /// emitted by where they end.
    /// </summary>
    private ref struct Scanner
    {
        private readonly ReadOnlySpan<int> _cps;
        private readonly int _start, _end;
        private readonly List<int> _outLengths;
        private int _prevEnd;

        public Scanner(ReadOnlySpan<int> cps, int start, int end, List<int> outLengths)
        {
            _cps = cps;
            _start = start;
            _end = end;
            _outLengths = outLengths;
            _prevEnd = start;
        }

        public readonly int Cp(int p) => p >= _start && p < _end ? _cps[p] : OutOfRange;

        public readonly CpFlags Fl(int p) => p >= _start && p < _end ? CodePointClass.Of(_cps[p]) : CpFlags.None;

        /// <summary>Ends the current piece at e (an empty piece is dropped); returns its length.</summary>
        public int Add(int e)
        {
            int len = e - _prevEnd;
            if (len > 0) _outLengths.Add(len);
            _prevEnd = e;
            return len;
        }
    }

    /// <summary>The length of an English contraction ('s 't 'm 'd 're 've 'll) starting at pos, or 0.</summary>
    private static int ContractionLength(ReadOnlySpan<int> cps, int pos, int end, bool ignoreCase)
    {
        if (cps[pos] != '\'' || pos + 1 >= end) return 0;
        int n1 = ignoreCase ? CodePointClass.ToLower(cps[pos + 1]) : cps[pos + 1];
        if (n1 is 's' or 't' or 'm' or 'd') return 2;
        if (pos + 2 >= end) return 0;
        int n2 = ignoreCase ? CodePointClass.ToLower(cps[pos + 2]) : cps[pos + 2];
        return (n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l') ? 3 : 0;
    }

    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    private static void Gpt2(ReadOnlySpan<int> cps, int start, int end, List<int> outLengths)
    {
        var scan = new Scanner(cps, start, end, outLengths);

        for (int pos = start; pos < end;)
        {
            int cp = scan.Cp(pos);
            var flags = scan.Fl(pos);
            int contraction = ContractionLength(cps, pos, end, ignoreCase: false);
            if (contraction > 0) { pos += scan.Add(pos + contraction); continue; }
            var flags2 = cp == ' ' ? scan.Fl(pos + 1) : flags;
            if ((flags2 & CpFlags.Letter) != 0)
            {
                if (cp == ' ') pos++;
                while ((flags2 & CpFlags.Letter) != 0) flags2 = scan.Fl(++pos);
                scan.Add(pos);
                continue;
            }
            if ((flags2 & CpFlags.Number) != 0)
            {
                if (cp == ' ') pos++;
                while ((flags2 & CpFlags.Number) != 0) flags2 = scan.Fl(++pos);
                scan.Add(pos);
                continue;
            }
            if ((flags2 & (CpFlags.Whitespace | CpFlags.Letter | CpFlags.Number)) == 0 && flags2 != CpFlags.None)
            {
                if (cp == ' ') pos++;
                while ((flags2 & (CpFlags.Whitespace | CpFlags.Letter | CpFlags.Number)) == 0 && flags2 != CpFlags.None) flags2 = scan.Fl(++pos);
                scan.Add(pos);
                continue;
            }
            int spaces = 0;
            while ((scan.Fl(pos + spaces) & CpFlags.Whitespace) != 0) spaces++;
            if (spaces > 1 && scan.Cp(pos + spaces) != OutOfRange) { pos += spaces - 1; scan.Add(pos); continue; }
            if (spaces > 0) { pos += spaces; scan.Add(pos); continue; }
            scan.Add(++pos);
        }
    }

    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    private static Splitter Llama3(int maxDigits) => (cps, start, end, outLengths) =>
    {
        var scan = new Scanner(cps, start, end, outLengths);

        for (int pos = start; pos < end;)
        {
            int cp = scan.Cp(pos);
            var flags = scan.Fl(pos);
            int contraction = ContractionLength(cps, pos, end, ignoreCase: true);
            if (contraction > 0) { pos += scan.Add(pos + contraction); continue; }
            if (!(cp == '\r' || cp == '\n' || (flags & CpFlags.Number) != 0))
            {
                if ((flags & CpFlags.Letter) != 0 || (scan.Fl(pos + 1) & CpFlags.Letter) != 0)
                {
                    pos++;
                    while ((scan.Fl(pos) & CpFlags.Letter) != 0) pos++;
                    scan.Add(pos);
                    continue;
                }
            }
            if ((flags & CpFlags.Number) != 0)
            {
                int ini = pos;
                while ((scan.Fl(pos) & CpFlags.Number) != 0)
                {
                    if (++pos - ini >= maxDigits) { scan.Add(pos); ini = pos; }
                }
                scan.Add(pos);
                continue;
            }
            var flags2 = cp == ' ' ? scan.Fl(pos + 1) : flags;
            if ((flags2 & (CpFlags.Whitespace | CpFlags.Letter | CpFlags.Number)) == 0 && flags != CpFlags.None)
            {
                if (cp == ' ') pos++;
                while ((flags2 & (CpFlags.Whitespace | CpFlags.Letter | CpFlags.Number)) == 0 && flags2 != CpFlags.None) flags2 = scan.Fl(++pos);
                int c2 = scan.Cp(pos);
                while (c2 is '\r' or '\n') c2 = scan.Cp(++pos);
                scan.Add(pos);
                continue;
            }
            int spaces = 0;
            int lastNewlineEnd = 0;
            while ((scan.Fl(pos + spaces) & CpFlags.Whitespace) != 0)
            {
                int c2 = scan.Cp(pos + spaces);
                if (c2 is '\r' or '\n') lastNewlineEnd = pos + spaces + 1;
                spaces++;
            }
            if (lastNewlineEnd > 0) { pos = lastNewlineEnd; scan.Add(pos); continue; }
            if (spaces > 1 && scan.Cp(pos + spaces) != OutOfRange) { pos += spaces - 1; scan.Add(pos); continue; }
            if (spaces > 0) { pos += spaces; scan.Add(pos); continue; }
            scan.Add(++pos);
        }
    };
}

using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace QuantLlama.Templates.Jinja;

internal enum TokenKind { Text, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, End }

internal sealed record Token(TokenKind Kind, string Text, int Line, object? Value = null)
{
    public override string ToString() => Kind switch
    {
        TokenKind.End => "end of template",
        TokenKind.VariableEnd or TokenKind.BlockEnd => "end of tag",
        _ => $"'{Text}'",
    };
}

/// <summary>
/// Splits a template into text and the tokens of its tags, applying whitespace control: '-' at a tag's edge
/// strips whitespace on that side, trim_blocks drops the newline after a block tag or comment, lstrip_blocks the
/// indentation before one; '+' turns either off for that tag.
/// </summary>
internal sealed partial class Lexer
{
    private readonly string _src;
    private readonly JinjaOptions _options;
    private readonly List<Token> _tokens = [];
    private int _pos;
    private int _line = 1;
    private bool _stripNextText;

    private Lexer(string source, JinjaOptions options)
    {
        _src = source;
        _options = options;
    }

    public static List<Token> Tokenize(string source, JinjaOptions options)
    {
        source = source.ReplaceLineEndings("\n");
        if (!options.KeepTrailingNewline && source.EndsWith('\n')) source = source[..^1];
        var lexer = new Lexer(source, options);
        lexer.Run();
        return lexer._tokens;
    }

    [GeneratedRegex(@"\{%([-+]?)\s*endraw\s*([-+]?)%\}")]
    private static partial Regex EndRaw();

    private void Run()
    {
        while (_pos < _src.Length)
        {
            int tag = FindTagStart(_pos);
            int textStart = _pos;
            string text = _src[_pos..(tag < 0 ? _src.Length : tag)];
            if (tag < 0)
            {
                EmitText(text, textStart, '\0', '\0');
                break;
            }
            char kind = _src[tag + 1];
            char modifier = tag + 2 < _src.Length && _src[tag + 2] is '-' or '+' ? _src[tag + 2] : '\0';
            EmitText(text, textStart, kind, modifier);
            _pos = tag + 2 + (modifier != '\0' ? 1 : 0);
            if (kind == '#') LexComment(tag);
            else LexTag(kind == '{');
        }
    }

    private int FindTagStart(int from)
    {
        for (int i = _src.IndexOf('{', from); i >= 0 && i + 1 < _src.Length; i = _src.IndexOf('{', i + 1))
            if (_src[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>Emits the text before a tag of the given kind ('{', '%', '#'; none at the end) after whitespace control.</summary>
    private void EmitText(string text, int start, char nextTagKind, char nextModifier)
    {
        if (_stripNextText)
        {
            int before = text.Length;
            text = text.TrimStart();
            start += before - text.Length;
            _stripNextText = false;
        }
        if (nextModifier == '-')
        {
            text = text.TrimEnd();
        }
        else if (nextModifier != '+' && nextTagKind is '%' or '#' && _options.LstripBlocks)
        {
            int lineStart = text.LastIndexOf('\n') + 1;
            bool atLineStart = lineStart > 0 || start == 0 || _src[start - 1] == '\n';
            if (atLineStart && text.AsSpan(lineStart).IndexOfAnyExcept(' ', '\t') < 0)
                text = text[..lineStart];
        }
        AddText(text);
    }

    private void AddText(string text)
    {
        if (text.Length > 0) _tokens.Add(new Token(TokenKind.Text, text, _line));
        _line += text.AsSpan().Count('\n');
    }

    private void Advance(int to)
    {
        _line += _src.AsSpan(_pos, to - _pos).Count('\n');
        _pos = to;
    }

    private void LexComment(int tagStart)
    {
        int end = _src.IndexOf("#}", _pos, StringComparison.Ordinal);
        if (end < 0) throw Error(tagStart, "unterminated comment");
        char modifier = _src[end - 1] is '-' or '+' && end - 1 >= _pos ? _src[end - 1] : '\0';
        Advance(end + 2);
        AfterBlockEnd(modifier);
    }

    private void AfterBlockEnd(char modifier)
    {
        if (modifier == '-') _stripNextText = true;
        else if (modifier != '+' && _options.TrimBlocks && _pos < _src.Length && _src[_pos] == '\n') Advance(_pos + 1);
    }

    private void LexTag(bool variable)
    {
        int tagLine = _line;
        int first = _tokens.Count;
        _tokens.Add(new Token(variable ? TokenKind.VariableBegin : TokenKind.BlockBegin, variable ? "{{" : "{%", _line));
        int depth = 0;
        while (true)
        {
            while (_pos < _src.Length && char.IsWhiteSpace(_src[_pos])) Advance(_pos + 1);
            if (_pos >= _src.Length) throw new JinjaException($"line {tagLine}: unexpected end of template, the tag is not closed");
            if (depth == 0 && TryTagEnd(variable, out char modifier))
            {
                _tokens.Add(new Token(variable ? TokenKind.VariableEnd : TokenKind.BlockEnd, variable ? "}}" : "%}", _line));
                if (variable)
                {
                    if (modifier == '-') _stripNextText = true;
                }
                else if (_tokens.Count == first + 3 && _tokens[first + 1] is { Kind: TokenKind.Name, Text: "raw" } && modifier != '+')
                {
                    _tokens.RemoveRange(first, 3);
                    LexRaw(modifier, tagLine);
                }
                else
                {
                    AfterBlockEnd(modifier);
                }
                return;
            }
            var token = LexToken();
            if (token.Kind == TokenKind.Operator)
            {
                if (token.Text is "(" or "[" or "{") depth++;
                else if (token.Text is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
            }
            _tokens.Add(token);
        }
    }

    private bool TryTagEnd(bool variable, out char modifier)
    {
        string close = variable ? "}}" : "%}";
        modifier = '\0';
        if (_src[_pos] is '-' or '+' && string.CompareOrdinal(_src, _pos + 1, close, 0, 2) == 0
            && (variable ? _src[_pos] == '-' : true))
        {
            modifier = _src[_pos];
            Advance(_pos + 3);
            return true;
        }
        if (string.CompareOrdinal(_src, _pos, close, 0, 2) == 0)
        {
            Advance(_pos + 2);
            return true;
        }
        return false;
    }

    private void LexRaw(char openModifier, int tagLine)
    {
        // jinja2 trims no newline after {% raw %}, but lstrip_blocks and trim_blocks apply around {% endraw %}.
        int bodyStart = _pos;
        var m = EndRaw().Match(_src, _pos);
        if (!m.Success) throw new JinjaException($"line {tagLine}: missing endraw for raw block");
        string body = _src[_pos..m.Index];
        if (openModifier == '-') body = body.TrimStart();
        char closeModifier = m.Groups[1].Value is { Length: 1 } s ? s[0] : '\0';
        if (closeModifier == '-') body = body.TrimEnd();
        else if (closeModifier != '+' && _options.LstripBlocks)
        {
            int lineStart = body.LastIndexOf('\n') + 1;
            bool atLineStart = lineStart > 0 || _src[bodyStart - 1] == '\n';
            if (atLineStart && body.AsSpan(lineStart).IndexOfAnyExcept(' ', '\t') < 0) body = body[..lineStart];
        }
        AddText(body);
        _line += _src.AsSpan(m.Index, m.Length).Count('\n');
        _pos = m.Index + m.Length;
        AfterBlockEnd(m.Groups[2].Value is { Length: 1 } e ? e[0] : '\0');
    }

    private static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "=", "<", ">", ";"];

    private Token LexToken()
    {
        char c = _src[_pos];
        int start = _pos;
        if (IsNameStart(c))
        {
            int end = _pos;
            while (end < _src.Length && IsNamePart(_src[end])) end++;
            Advance(end);
            return new Token(TokenKind.Name, _src[start..end], _line);
        }
        if (char.IsAsciiDigit(c)) return LexNumber();
        if (c is '\'' or '"') return LexString(c);
        foreach (var op in Operators)
        {
            if (string.CompareOrdinal(_src, _pos, op, 0, op.Length) == 0)
            {
                Advance(_pos + op.Length);
                return new Token(TokenKind.Operator, op, _line);
            }
        }
        throw Error(_pos, $"unexpected character '{c}'");
    }

    // Names are Python identifiers, so they may hold any letter, not only ASCII ones.
    private static bool IsNameStart(char c) => char.IsLetter(c) || c == '_';

    private static bool IsNamePart(char c) => char.IsLetterOrDigit(c) || c == '_'
        || char.GetUnicodeCategory(c) is System.Globalization.UnicodeCategory.NonSpacingMark
            or System.Globalization.UnicodeCategory.SpacingCombiningMark or System.Globalization.UnicodeCategory.ConnectorPunctuation;

    private Token LexNumber()
    {
        int start = _pos, end = _pos;
        while (end < _src.Length && (char.IsAsciiDigit(_src[end]) || _src[end] == '_')) end++;
        bool isFloat = false;
        if (end + 1 < _src.Length && _src[end] == '.' && char.IsAsciiDigit(_src[end + 1]))
        {
            isFloat = true;
            end++;
            while (end < _src.Length && (char.IsAsciiDigit(_src[end]) || _src[end] == '_')) end++;
        }
        if (end < _src.Length && _src[end] is 'e' or 'E')
        {
            int e = end + 1;
            if (e < _src.Length && _src[e] is '+' or '-') e++;
            if (e < _src.Length && char.IsAsciiDigit(_src[e]))
            {
                isFloat = true;
                end = e;
                while (end < _src.Length && char.IsAsciiDigit(_src[end])) end++;
            }
        }
        string text = _src[start..end];
        string digits = text.Replace("_", "", StringComparison.Ordinal);
        Advance(end);
        if (isFloat)
            return new Token(TokenKind.Float, text, _line, double.Parse(digits, NumberStyles.Float, CultureInfo.InvariantCulture));
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            throw Error(start, $"integer {text} is too large");
        return new Token(TokenKind.Integer, text, _line, value);
    }

    private Token LexString(char quote)
    {
        int start = _pos;
        var sb = new StringBuilder();
        int i = _pos + 1;
        while (true)
        {
            if (i >= _src.Length) throw Error(start, "unterminated string");
            char c = _src[i];
            if (c == quote) break;
            if (c != '\\' || i + 1 >= _src.Length)
            {
                sb.Append(c);
                i++;
                continue;
            }
            char e = _src[i + 1];
            i += 2;
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case 'a': sb.Append('\a'); break;
                case '0': sb.Append('\0'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '\n': break;
                case 'x': sb.Append(HexEscape(ref i, 2, start)); break;
                case 'u': sb.Append(HexEscape(ref i, 4, start)); break;
                case 'U': sb.Append(HexEscape(ref i, 8, start)); break;
                default: sb.Append('\\').Append(e); break;
            }
        }
        Advance(i + 1);
        return new Token(TokenKind.String, _src[start..(i + 1)], _line, sb.ToString());
    }

    private string HexEscape(ref int i, int length, int stringStart)
    {
        if (i + length > _src.Length
            || !int.TryParse(_src.AsSpan(i, length), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code)
            || code > 0x10FFFF || code is >= 0xD800 and <= 0xDFFF && length == 8)
            throw Error(stringStart, "bad escape in string");
        i += length;
        return char.ConvertFromUtf32(code is >= 0xD800 and <= 0xDFFF ? 0xFFFD : code);
    }

    private JinjaException Error(int at, string message)
    {
        int line = 1 + _src.AsSpan(0, Math.Min(at, _src.Length)).Count('\n');
        return new JinjaException($"line {line}: {message}");
    }
}

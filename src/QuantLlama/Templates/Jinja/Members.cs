using System.Text;

namespace QuantLlama.Templates.Jinja;

/// <summary>
/// Attribute and item access, and the methods of strings, lists and dicts. Only the members listed here exist;
/// anything else (including names starting with '_') is undefined, so a template cannot reach beyond its data.
/// </summary>
internal static class Members
{
    public static object? GetAttribute(Evaluator ev, object? obj, string name)
    {
        // The sandbox answers private names ('__class__') with undefined before anything else, even on undefined.
        if (name.StartsWith('_')) return NoAttribute(obj, name);
        if (obj is Undefined u) throw u.Fail();
        switch (obj)
        {
            case JinjaDict d:
                return (object?)Method(ev, d, name) ?? (d.TryGetValue(name, out var value) ? value : NoAttribute(obj, name));
            case JinjaNamespace ns:
                return ns.Attributes.TryGetValue(name, out var attribute) ? attribute : NoAttribute(obj, name);
            case LoopInfo loop:
                return loop.Get(name);
            default:
                return (object?)Method(ev, obj, name) ?? NoAttribute(obj, name);
        }
    }

    public static object? GetItem(Evaluator ev, object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined u:
                throw u.Fail();
            case JinjaDict d when key is not (null or Undefined or List<object?> or JinjaDict):
                if (d.TryGetValue(Evaluator.DictKey(key), out var value)) return value;
                break;
            case List<object?> or object?[] or string when key is long or bool:
                if (Sequences.TryIndex(obj, Py.AsLong(key), out var item)) return item;
                return new Undefined($"'{Py.TypeName(obj)} object' has no element {Py.Repr(key)}");
        }
        return key is string name ? GetAttribute(ev, obj, name) : new Undefined($"'{Py.TypeName(obj)} object' has no element {Py.Repr(key)}");
    }

    private static Undefined NoAttribute(object? obj, string name) => new($"'{Py.TypeName(obj)} object' has no attribute '{name}'");

    private static BuiltinFunction? Method(Evaluator ev, object? obj, string name) => obj switch
    {
        string s => StringMethod(ev, s, name),
        JinjaDict d => DictMethod(d, name),
        List<object?> l => ListMethod(ev, l, name),
        object?[] t => name switch
        {
            "index" => Bound(name, (args, _) => IndexOf(t, args)),
            "count" => Bound(name, (args, _) => (long)t.Count(x => Py.AreEqual(x, Arg(args, 0, name)))),
            _ => null,
        },
        _ => null,
    };

    private static BuiltinFunction Bound(string name, Func<IReadOnlyList<object?>, IReadOnlyList<KeyValuePair<string, object?>>, object?> body)
        => new(name, (_, args, kwargs) => body(args, kwargs));

    internal static object? Arg(IReadOnlyList<object?> args, int index, string function)
        => index < args.Count ? args[index] : throw new JinjaException($"{function}() missing required argument {index + 1}");

    internal static object? OptionalArg(IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs, int index, string name, object? fallback = null)
    {
        if (index < args.Count) return args[index];
        foreach (var (key, value) in kwargs)
            if (key == name) return value;
        return fallback;
    }

    internal static string StringArg(object? value, string function) => value switch
    {
        string s => s,
        Undefined u => throw u.Fail(),
        _ => throw new JinjaException($"{function}() argument must be str, not {Py.TypeName(value)}"),
    };

    private static object IndexOf(IReadOnlyList<object?> items, IReadOnlyList<object?> args)
    {
        var wanted = Arg(args, 0, "index");
        for (int i = 0; i < items.Count; i++)
            if (Py.AreEqual(items[i], wanted)) return (long)i;
        throw new JinjaException($"{Py.Repr(wanted)} is not in list");
    }

    private static BuiltinFunction? ListMethod(Evaluator ev, List<object?> list, string name) => name switch
    {
        "append" => Bound(name, (args, _) =>
        {
            ev.CheckListLength(list.Count + 1L);
            list.Add(Arg(args, 0, name));
            return null;
        }),
        "index" => Bound(name, (args, _) => IndexOf(list, args)),
        "count" => Bound(name, (args, _) => (long)list.Count(x => Py.AreEqual(x, Arg(args, 0, name)))),
        _ => null,
    };

    private static BuiltinFunction? DictMethod(JinjaDict dict, string name) => name switch
    {
        "items" => Bound(name, (_, _) => dict.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList()),
        "keys" => Bound(name, (_, _) => dict.Keys.Cast<object?>().ToList()),
        "values" => Bound(name, (_, _) => dict.Values.ToList()),
        "get" => Bound(name, (args, _) =>
        {
            var key = Arg(args, 0, name);
            return key is not (null or Undefined or List<object?> or JinjaDict) && dict.TryGetValue(Evaluator.DictKey(key), out var v)
                ? v : args.Count > 1 ? args[1] : null;
        }),
        _ => null,
    };

    private static BuiltinFunction? StringMethod(Evaluator ev, string s, string name) => name switch
    {
        "strip" => Bound(name, (args, _) => Strip(s, args, name, true, true)),
        "lstrip" => Bound(name, (args, _) => Strip(s, args, name, true, false)),
        "rstrip" => Bound(name, (args, _) => Strip(s, args, name, false, true)),
        "upper" => Bound(name, (_, _) => s.ToUpperInvariant()),
        "lower" => Bound(name, (_, _) => s.ToLowerInvariant()),
        "title" => Bound(name, (_, _) => Text.Title(s)),
        "capitalize" => Bound(name, (_, _) => Text.Capitalize(s)),
        "split" => Bound(name, (args, kwargs) => Split(s, OptionalArg(args, kwargs, 0, "sep"), OptionalArg(args, kwargs, 1, "maxsplit", -1L))),
        "startswith" => Bound(name, (args, _) => Affix(s, Arg(args, 0, name), name, (x, p) => x.StartsWith(p, StringComparison.Ordinal))),
        "endswith" => Bound(name, (args, _) => Affix(s, Arg(args, 0, name), name, (x, p) => x.EndsWith(p, StringComparison.Ordinal))),
        "replace" => Bound(name, (args, _) => Text.Replace(ev, s, StringArg(Arg(args, 0, name), name), StringArg(Arg(args, 1, name), name),
            args.Count > 2 ? Py.AsLong(args[2]) : -1)),
        "find" => Bound(name, (args, _) => (long)s.IndexOf(StringArg(Arg(args, 0, name), name), StringComparison.Ordinal)),
        "count" => Bound(name, (args, _) => Text.Count(s, StringArg(Arg(args, 0, name), name))),
        "join" => Bound(name, (args, _) => Text.Join(ev, s, Evaluator.Iterate(Arg(args, 0, name)).Select(x => StringArg(x, name)))),
        "isdigit" => Bound(name, (_, _) => s.Length > 0 && s.All(char.IsDigit)),
        "isalpha" => Bound(name, (_, _) => s.Length > 0 && s.All(char.IsLetter)),
        "isspace" => Bound(name, (_, _) => s.Length > 0 && s.All(char.IsWhiteSpace)),
        "islower" => Bound(name, (_, _) => s.Any(char.IsLetter) && s.ToLowerInvariant() == s),
        "isupper" => Bound(name, (_, _) => s.Any(char.IsLetter) && s.ToUpperInvariant() == s),
        "splitlines" => Bound(name, (_, _) => s.Split('\n').Select(x => (object?)x.TrimEnd('\r')).ToList() is var lines && s.EndsWith('\n') ? lines[..^1] : lines),
        "format" => Bound(name, (args, kwargs) => Text.Format(ev, s, args, kwargs)),
        _ => null,
    };

    private static string Strip(string s, IReadOnlyList<object?> args, string name, bool left, bool right)
    {
        var chars = args.Count > 0 && args[0] != null ? StringArg(args[0], name).ToCharArray() : null;
        if (chars == null) return left && right ? s.Trim() : left ? s.TrimStart() : s.TrimEnd();
        return left && right ? s.Trim(chars) : left ? s.TrimStart(chars) : s.TrimEnd(chars);
    }

    private static bool Affix(string s, object? affix, string name, Func<string, string, bool> test) => affix switch
    {
        object?[] options => options.Any(o => test(s, StringArg(o, name))),
        _ => test(s, StringArg(affix, name)),
    };

    internal static List<object?> Split(string s, object? separator, object? maxSplitValue)
    {
        long maxSplit = maxSplitValue is long or bool ? Py.AsLong(maxSplitValue) : -1;
        var parts = new List<object?>();
        if (separator == null)
        {
            // Python's split(): runs of whitespace separate, and no empty strings at either end.
            int i = 0;
            while (true)
            {
                while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                if (i >= s.Length) break;
                if (maxSplit >= 0 && parts.Count >= maxSplit)
                {
                    parts.Add(s[i..].TrimEnd());
                    break;
                }
                int start = i;
                while (i < s.Length && !char.IsWhiteSpace(s[i])) i++;
                parts.Add(s[start..i]);
            }
            return parts;
        }
        string sep = StringArg(separator, "split");
        if (sep.Length == 0) throw new JinjaException("empty separator");
        int from = 0;
        while (maxSplit < 0 || parts.Count < maxSplit)
        {
            int at = s.IndexOf(sep, from, StringComparison.Ordinal);
            if (at < 0) break;
            parts.Add(s[from..at]);
            from = at + sep.Length;
        }
        parts.Add(s[from..]);
        return parts;
    }
}

/// <summary>String helpers shared by the methods and filters.</summary>
internal static class Text
{
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char c in s)
        {
            sb.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = char.IsLetter(c);
        }
        return sb.ToString();
    }

    public static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    public static long Count(string s, string sub)
    {
        if (sub.Length == 0) return Sequences.Length(s) + 1;
        long n = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    public static string Replace(Evaluator ev, string s, string old, string replacement, long count)
    {
        if (count < 0) count = long.MaxValue;
        long occurrences = Math.Min(count, old.Length == 0 ? Sequences.Length(s) + 1 : Count(s, old));
        ev.ChargeString(s.Length + occurrences * (replacement.Length - old.Length));
        var sb = new StringBuilder();
        if (old.Length == 0)
        {
            int done = 0;
            foreach (var rune in s.EnumerateRunes())
            {
                if (done++ < count) sb.Append(replacement);
                sb.Append(rune.ToString());
            }
            if (done < count) sb.Append(replacement);
            return sb.ToString();
        }
        int from = 0;
        for (long n = 0; n < count; n++)
        {
            int at = s.IndexOf(old, from, StringComparison.Ordinal);
            if (at < 0) break;
            sb.Append(s, from, at - from).Append(replacement);
            from = at + old.Length;
        }
        return sb.Append(s, from, s.Length - from).ToString();
    }

    public static string Join(Evaluator ev, string separator, IEnumerable<string> parts)
    {
        var sb = new StringBuilder();
        bool first = true;
        foreach (var part in parts)
        {
            if (!first) sb.Append(separator);
            first = false;
            sb.Append(part);
            ev.ChargeString(sb.Length);
        }
        return sb.ToString();
    }

    /// <summary>str.format with {} / {0} / {name} fields, without format specs.</summary>
    public static string Format(Evaluator ev, string s, IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs)
    {
        var sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == '{' && i + 1 < s.Length && s[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < s.Length && s[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (c != '{') { sb.Append(c); continue; }
            int end = s.IndexOf('}', i);
            if (end < 0) throw new JinjaException("single '{' encountered in format string");
            string field = s[(i + 1)..end];
            if (field.Contains(':') || field.Contains('!')) throw new JinjaException("format specs are not supported");
            object? value = field.Length == 0 ? Members.Arg(args, auto++, "format")
                : int.TryParse(field, out int index) ? Members.Arg(args, index, "format")
                : kwargs.FirstOrDefault(k => k.Key == field) is { Key: not null } kv ? kv.Value
                : throw new JinjaException($"format: no argument named '{field}'");
            sb.Append(Py.Str(value));
            ev.ChargeString(sb.Length);
            i = end;
        }
        return sb.ToString();
    }
}

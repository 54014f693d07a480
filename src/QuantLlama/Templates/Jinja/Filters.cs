using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace QuantLlama.Templates.Jinja;

using Kwargs = IReadOnlyList<KeyValuePair<string, object?>>;

/// <summary>The built-in filters (`value | name(args)`), with jinja2's names, arguments and results.</summary>
internal static partial class Filters
{
    [GeneratedRegex(@"\w+")]
    private static partial Regex Words();

    [GeneratedRegex(@"([-\s({\[<]+)")]
    private static partial Regex WordBeginnings();

    /// <summary>Each filter's parameters after the value, in order; null for filters that take any arguments.</summary>
    private static readonly Dictionary<string, string[]?> Parameters = new(StringComparer.Ordinal)
    {
        ["tojson"] = ["ensure_ascii", "indent", "separators", "sort_keys"],
        ["safe"] = [], ["string"] = [], ["upper"] = [], ["lower"] = [], ["capitalize"] = [], ["title"] = [], ["e"] = [], ["escape"] = [],
        ["wordcount"] = [], ["length"] = [], ["count"] = [], ["list"] = [], ["first"] = [], ["last"] = [], ["items"] = [],
        ["reverse"] = [], ["abs"] = [],
        ["trim"] = ["chars"],
        ["replace"] = ["old", "new", "count"],
        ["indent"] = ["width", "first", "blank"],
        ["center"] = ["width"],
        ["default"] = ["default_value", "boolean"],
        ["d"] = ["default_value", "boolean"],
        ["join"] = ["d", "attribute"],
        ["dictsort"] = ["case_sensitive", "by", "reverse"],
        ["unique"] = ["case_sensitive", "attribute"],
        ["sort"] = ["reverse", "case_sensitive", "attribute"],
        ["batch"] = ["linecount", "fill_with"],
        ["sum"] = ["attribute", "start"],
        ["min"] = ["case_sensitive", "attribute"],
        ["max"] = ["case_sensitive", "attribute"],
        ["int"] = ["default", "base"],
        ["float"] = ["default"],
        ["round"] = ["precision", "method"],
        ["attr"] = ["name"],
        ["map"] = null, ["select"] = null, ["reject"] = null, ["selectattr"] = null, ["rejectattr"] = null,
    };

    public static bool Exists(string name) => Parameters.ContainsKey(name);

    private static void CheckArguments(string name, IReadOnlyList<object?> args, Kwargs kwargs)
    {
        if (!Parameters.TryGetValue(name, out var parameters)) throw new JinjaException($"No filter named '{name}' found.");
        if (parameters == null) return;
        if (args.Count > parameters.Length)
            throw new JinjaException($"{name}() takes at most {parameters.Length + 1} positional arguments ({args.Count + 1} given)");
        foreach (var (key, _) in kwargs)
        {
            int index = Array.IndexOf(parameters, key);
            if (index < 0) throw new JinjaException($"{name}() got an unexpected keyword argument '{key}'");
            if (index < args.Count) throw new JinjaException($"{name}() got multiple values for argument '{key}'");
        }
    }

    public static object? Apply(Evaluator ev, string name, object? value, IReadOnlyList<object?> args, Kwargs kwargs)
    {
        CheckArguments(name, args, kwargs);
        object? Opt(int index, string parameter, object? fallback = null) => Members.OptionalArg(args, kwargs, index, parameter, fallback);
        switch (name)
        {
            case "tojson":
            {
                string json = JsonWriter.Write(value, Py.IsTrue(Opt(0, "ensure_ascii", false)), Opt(1, "indent"), Opt(2, "separators"),
                    Py.IsTrue(Opt(3, "sort_keys", false)));
                ev.ChargeString(json.Length);
                return json;
            }
            case "safe":
                return value;
            case "string":
                return Py.Str(value);
            case "trim":
                return Opt(0, "chars") is string chars ? Py.Str(value).Trim(chars.ToCharArray()) : Py.Str(value).Trim();
            case "upper":
                return Py.Str(value).ToUpperInvariant();
            case "lower":
                return Py.Str(value).ToLowerInvariant();
            case "capitalize":
                return Text.Capitalize(Py.Str(value));
            case "title":
                // jinja2's title filter starts a word after whitespace, '-' and opening brackets only (not after quotes).
                return string.Concat(WordBeginnings().Split(Py.Str(value))
                    .Where(part => part.Length > 0).Select(part => char.ToUpperInvariant(part[0]) + part[1..].ToLowerInvariant()));
            case "replace":
            {
                var count = Opt(2, "count");
                return Text.Replace(ev, Py.Str(value), Py.Str(Members.Arg(args, 0, name)), Py.Str(Members.Arg(args, 1, name)), count is long c ? c : -1);
            }
            case "e":
            case "escape":
                return Escape(Py.Str(value));
            case "indent":
                if (value is not string lines)
                    throw value is Undefined u ? u.Fail() : new JinjaException($"unsupported operand type(s) for +=: '{Py.TypeName(value)}' and 'str'");
                return Indent(ev, lines, Opt(0, "width", 4L), Py.IsTrue(Opt(1, "first", false)), Py.IsTrue(Opt(2, "blank", false)));
            case "wordcount":
                return (long)Words().Count(Py.Str(value));
            case "center":
            {
                string text = Py.Str(value);
                int width = (int)Math.Min(ToInt(Opt(0, "width", 80L)), ev.Options.MaxOutputChars);
                if (width <= text.Length) return text;
                int total = width - text.Length, left = total / 2 + (total & width & 1);
                return new string(' ', left) + text + new string(' ', total - left);
            }
            case "length":
            case "count":
                return Length(value);
            case "list":
                return Evaluator.Iterate(value);
            case "first":
            {
                var items = Evaluator.Iterate(value);
                return items.Count > 0 ? items[0] : new Undefined("No first item, sequence was empty.");
            }
            case "last":
            {
                var items = Evaluator.Iterate(value);
                return items.Count > 0 ? items[^1] : new Undefined("No last item, sequence was empty.");
            }
            case "default":
            case "d":
            {
                bool boolean = Py.IsTrue(Opt(1, "boolean", false));
                bool useDefault = value is Undefined || boolean && !Py.IsTrue(value);
                return useDefault ? Opt(0, "default_value", "") : value;
            }
            case "join":
            {
                string separator = Py.Str(Opt(0, "d", ""));
                var attribute = Opt(1, "attribute");
                var items = Evaluator.Iterate(value);
                return Text.Join(ev, separator, items.Select(x => Py.Str(attribute == null ? x : Attribute(ev, x, attribute))));
            }
            case "items":
                return value switch
                {
                    JinjaDict d => new JinjaGenerator(d.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList()),
                    Undefined => new JinjaGenerator([]),
                    _ => throw new JinjaException("Can only get item pairs from a mapping."),
                };
            case "dictsort":
            {
                if (value is not JinjaDict d) throw new JinjaException("You can only sort by either \"key\" or \"value\"");
                bool caseSensitive = Py.IsTrue(Opt(0, "case_sensitive", false));
                bool byValue = Opt(1, "by", "key") is "value";
                bool reverse = Py.IsTrue(Opt(2, "reverse", false));
                var pairs = d.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList();
                return SortBy(pairs, x => SortKey(((object?[])x!)[byValue ? 1 : 0], caseSensitive), reverse);
            }
            // These five walk nothing when the value is false (an empty list, none, 0), as jinja2's do.
            case "map":
                return new JinjaGenerator(Py.IsTrue(value) ? Map(ev, Evaluator.Iterate(value), args, kwargs) : []);
            case "select":
            case "reject":
                return new JinjaGenerator(!Py.IsTrue(value) ? []
                    : Evaluator.Iterate(value).Where(x => SelectTest(ev, x, args, 0) == (name == "select")).ToList());
            case "selectattr":
            case "rejectattr":
            {
                var attribute = Members.Arg(args, 0, name);
                if (!Py.IsTrue(value)) return new JinjaGenerator([]);
                return new JinjaGenerator(Evaluator.Iterate(value)
                    .Where(x => SelectTest(ev, Attribute(ev, x, attribute), args, 1) == (name == "selectattr")).ToList());
            }
            case "unique":
            {
                bool caseSensitive = Py.IsTrue(Opt(0, "case_sensitive", false));
                var attribute = Opt(1, "attribute");
                var seen = new List<object?>();
                var result = new List<object?>();
                foreach (var item in Evaluator.Iterate(value))
                {
                    var key = SortKey(attribute == null ? item : Attribute(ev, item, attribute), caseSensitive);
                    if (key is List<object?> or JinjaDict) throw new JinjaException($"unhashable type: '{Py.TypeName(key)}'");
                    if (seen.Any(s => Py.AreEqual(s, key))) continue;
                    seen.Add(key);
                    result.Add(item);
                }
                return new JinjaGenerator(result);
            }
            case "sort":
            {
                bool reverse = Py.IsTrue(Opt(0, "reverse", false));
                bool caseSensitive = Py.IsTrue(Opt(1, "case_sensitive", false));
                var attribute = Opt(2, "attribute");
                return SortBy(Evaluator.Iterate(value), x => SortKey(attribute == null ? x : Attribute(ev, x, attribute), caseSensitive), reverse);
            }
            case "reverse":
                return value is string str ? Sequences.Slice(str, null, null, -1L) : new JinjaGenerator(Enumerable.Reverse(Evaluator.Iterate(value)).ToList());
            case "batch":
            {
                long size = ToInt(Members.Arg(args, 0, name));
                if (size <= 0) throw new JinjaException("batch size must be positive");
                var fill = Opt(1, "fill_with");
                var items = Evaluator.Iterate(value);
                var batches = new List<object?>();
                for (int i = 0; i < items.Count; i += (int)Math.Min(size, int.MaxValue))
                {
                    var batch = items.Skip(i).Take((int)Math.Min(size, int.MaxValue)).ToList();
                    if (fill != null) while (batch.Count < size) batch.Add(fill);
                    batches.Add(batch);
                }
                return new JinjaGenerator(batches);
            }
            case "sum":
            {
                var attribute = Opt(0, "attribute");
                object? total = Opt(1, "start", 0L);
                foreach (var item in Evaluator.Iterate(value))
                    total = Operators.Binary(ev, "+", total, attribute == null ? item : Attribute(ev, item, attribute));
                return total;
            }
            case "min":
            case "max":
            {
                var items = Evaluator.Iterate(value);
                if (items.Count == 0) return new Undefined($"No aggregated item, sequence was empty.");
                bool caseSensitive = Py.IsTrue(Opt(0, "case_sensitive", false));
                var attribute = Opt(1, "attribute");
                var best = items[0];
                foreach (var item in items.Skip(1))
                {
                    int c = Py.Compare(SortKey(attribute == null ? item : Attribute(ev, item, attribute), caseSensitive),
                        SortKey(attribute == null ? best : Attribute(ev, best, attribute), caseSensitive));
                    if (name == "min" ? c < 0 : c > 0) best = item;
                }
                return best;
            }
            case "int" or "float" when value is Undefined u:
                throw u.Fail();
            case "int":
                return ToIntFilter(value, Opt(0, "default", 0L));
            case "float":
                return ToFloatFilter(value, Opt(0, "default", 0.0));
            case "abs":
                return value switch
                {
                    bool or long => (object)checked(Math.Abs(Py.AsLong(value))),
                    double d => (object)Math.Abs(d),
                    Undefined u => throw u.Fail(),
                    _ => throw new JinjaException($"bad operand type for abs(): '{Py.TypeName(value)}'"),
                };
            case "round":
            {
                long precision = ToInt(Opt(0, "precision", 0L));
                string method = Py.Str(Opt(1, "method", "common"));
                if (value is Undefined u) throw u.Fail();
                if (!Py.IsNumber(value)) throw new JinjaException($"type {Py.TypeName(value)} doesn't define __round__ method");
                if (method == "common" && value is long or bool)
                {
                    // round() of an int is an int; a negative precision rounds to tens, hundreds... (halves to even).
                    if (precision >= 0) return Py.AsLong(value);
                    double unit = Math.Pow(10, Math.Min(-precision, 300));
                    return (long)Math.Clamp(Math.Round(Py.AsLong(value) / unit, MidpointRounding.ToEven) * unit, long.MinValue, long.MaxValue);
                }
                double d = Py.AsDouble(value), factor = Math.Pow(10, Math.Clamp(precision, -300, 300));
                return method switch
                {
                    // Python's round(): halves go to the even neighbour.
                    "common" => precision is >= 0 and <= 15 ? Math.Round(d, (int)precision, MidpointRounding.ToEven)
                        : Math.Round(d * factor, MidpointRounding.ToEven) / factor,
                    "ceil" => Math.Ceiling(d * factor) / factor,
                    "floor" => Math.Floor(d * factor) / factor,
                    _ => throw new JinjaException("method must be common, ceil or floor"),
                };
            }
            case "attr":
                return Members.GetAttribute(ev, value, Py.Str(Members.Arg(args, 0, name)));
            default:
                throw new JinjaException($"No filter named '{name}' found.");
        }
    }

    public static long ToInt(object? value) => value switch
    {
        long or bool => Py.AsLong(value),
        double d => (long)d,
        _ => throw new JinjaException($"an integer is required, got {Py.TypeName(value)}"),
    };

    private static object? ToIntFilter(object? value, object? fallback)
    {
        switch (value)
        {
            case bool or long: return Py.AsLong(value);
            case double d: return double.IsFinite(d) && Math.Abs(d) < 9.2e18 ? (long)d : fallback;
            case string s:
                string t = s.Trim().Replace("_", "", StringComparison.Ordinal);
                if (long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l)) return l;
                if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double f) && double.IsFinite(f) && Math.Abs(f) < 9.2e18)
                    return (long)f;
                return fallback;
            default: return fallback;
        }
    }

    private static object? ToFloatFilter(object? value, object? fallback)
    {
        switch (value)
        {
            case bool or long or double: return Py.AsDouble(value);
            case string s:
                string t = s.Trim();
                if (t is "inf" or "+inf" or "infinity") return double.PositiveInfinity;
                if (t is "-inf" or "-infinity") return double.NegativeInfinity;
                if (t is "nan") return double.NaN;
                return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double f) ? f : fallback;
            default: return fallback;
        }
    }

    public static object? Length(object? value) => value switch
    {
        string s => (long)Sequences.Length(s),
        List<object?> l => (long)l.Count,
        object?[] t => (long)t.Length,
        JinjaDict d => (long)d.Count,
        JinjaNamespace => throw new JinjaException("object of type 'Namespace' has no len()"),
        Undefined => 0L,
        JinjaGenerator => throw new JinjaException("object of type 'generator' has no len()"),
        _ => throw new JinjaException($"object of type '{Py.TypeName(value)}' has no len()"),
    };

    /// <summary>jinja2's attribute argument: "a.b" walks nested attributes, an integer part indexes.</summary>
    private static object? Attribute(Evaluator ev, object? item, object? attribute)
    {
        if (attribute is long or bool) return Members.GetItem(ev, item, attribute);
        foreach (var part in Py.Str(attribute).Split('.'))
            item = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out long index)
                ? Members.GetItem(ev, item, index) : Members.GetItem(ev, item, part);
        return item;
    }

    private static List<object?> Map(Evaluator ev, List<object?> items, IReadOnlyList<object?> args, Kwargs kwargs)
    {
        if (args.Count == 0 && kwargs.Any(k => k.Key == "attribute"))
        {
            var attribute = kwargs.First(k => k.Key == "attribute").Value;
            bool hasDefault = kwargs.Any(k => k.Key == "default");
            var fallback = kwargs.FirstOrDefault(k => k.Key == "default").Value;
            return items.Select(x =>
            {
                var v = Attribute(ev, x, attribute);
                return hasDefault && v is Undefined ? fallback : v;
            }).ToList();
        }
        if (args.Count == 0) throw new JinjaException("map requires a filter argument");
        string filter = Py.Str(args[0]);
        var rest = args.Skip(1).ToList();
        return items.Select(x => Apply(ev, filter, x, rest, kwargs)).ToList();
    }

    private static bool SelectTest(Evaluator ev, object? value, IReadOnlyList<object?> args, int testIndex)
    {
        if (args.Count <= testIndex) return Py.IsTrue(value);
        return Tests.Apply(ev, Py.Str(args[testIndex]), value, args.Skip(testIndex + 1).ToList());
    }

    private static object? SortKey(object? value, bool caseSensitive) => !caseSensitive && value is string s ? s.ToLowerInvariant() : value;

    /// <summary>Python's sorted(): stable, and a reverse sort keeps equal items in their order too.</summary>
    internal static List<object?> SortBy(List<object?> items, Func<object?, object?> key, bool reverse)
    {
        var keyed = items.Select((x, i) => (Key: key(x), Item: x, Index: i)).ToList();
        try
        {
            keyed.Sort((a, b) =>
            {
                int c = Py.Compare(a.Key, b.Key);
                if (reverse) c = -c;
                return c != 0 ? c : a.Index.CompareTo(b.Index);
            });
        }
        catch (InvalidOperationException e) when (e.InnerException is JinjaException inner)
        {
            throw inner; // List.Sort wraps what the comparison throws (items Python cannot order)
        }
        return keyed.Select(k => k.Item).ToList();
    }

    private static string Escape(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (char c in s)
        {
            sb.Append(c switch
            {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&#34;",
                '\'' => "&#39;",
                _ => c.ToString(),
            });
        }
        return sb.ToString();
    }

    private static string Indent(Evaluator ev, string s, object? width, bool first, bool blank)
    {
        string prefix = width is string w ? w : new string(' ', (int)Math.Clamp(ToInt(width), 0, 1000));
        var lines = s.Split('\n');
        var sb = new StringBuilder();
        for (int i = 0; i < lines.Length; i++)
        {
            if (i > 0) sb.Append('\n');
            bool indent = i == 0 ? first : blank || lines[i].Length > 0;
            if (indent) sb.Append(prefix);
            sb.Append(lines[i]);
            ev.ChargeString(sb.Length);
        }
        return sb.ToString();
    }
}

using System.Globalization;
using System.Text;

namespace QuantLlama.Templates.Jinja;

/// <summary>
/// The tojson filter as Hugging Face defines it: Python's json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=(',', ': ') if indent else None, sort_keys=False). Keys keep their order, non-ASCII text is written
/// as is, and numbers print as Python prints them.
/// </summary>
internal static class JsonWriter
{
    public static string Write(object? value, bool ensureAscii = false, object? indent = null, object? separators = null, bool sortKeys = false)
    {
        string? indentText = indent switch
        {
            null => null,
            long or bool => new string(' ', (int)Math.Clamp(Py.AsLong(indent), 0, 100)),
            string s => s,
            Undefined => null,
            _ => throw new JinjaException($"tojson: indent must be an integer or a string, not {Py.TypeName(indent)}"),
        };
        (string item, string key) = separators switch
        {
            null or Undefined => (indentText == null ? ", " : ",", ": "),
            object?[] or List<object?> when Evaluator.Iterate(separators) is [string i, string k] => (i, k),
            _ => throw new JinjaException("tojson: separators must be a pair of strings"),
        };
        var writer = new Writer(new StringBuilder(), indentText, item, key, ensureAscii, sortKeys);
        writer.WriteValue(value, 0);
        return writer.Output.ToString();
    }

    private sealed record Writer(StringBuilder Output, string? Indent, string ItemSeparator, string KeySeparator, bool EnsureAscii, bool SortKeys)
    {
        public void WriteValue(object? value, int depth)
        {
            var sb = Output;
            if (depth > 100) throw new JinjaException("tojson: value nested too deeply");
            switch (value)
            {
                case null: sb.Append("null"); break;
                case bool b: sb.Append(b ? "true" : "false"); break;
                case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d: sb.Append(FloatText(d)); break;
                case string s: WriteString(s); break;
                case List<object?> list: WriteArray(list, depth); break;
                case object?[] tuple: WriteArray(tuple, depth); break;
                case JinjaDict dict:
                {
                    if (dict.Count == 0)
                    {
                        sb.Append("{}");
                        break;
                    }
                    sb.Append('{');
                    bool first = true;
                    IEnumerable<KeyValuePair<object, object?>> pairs = dict;
                    if (SortKeys) pairs = Filters.SortBy(dict.Cast<object?>().ToList(), kv => ((KeyValuePair<object, object?>)kv!).Key, false)
                    .Select(kv => (KeyValuePair<object, object?>)kv!);
                    foreach (var (key, item) in pairs)
                    {
                        if (!first) sb.Append(ItemSeparator);
                        first = false;
                        NewLine(depth + 1);
                        WriteString(key switch
                        {
                            string s => s,
                            bool b => b ? "true" : "false",
                            long l => l.ToString(CultureInfo.InvariantCulture),
                            double d => FloatText(d),
                            _ => throw new JinjaException($"keys must be str, int, float, bool or None, not {Py.TypeName(key)}"),
                        });
                        sb.Append(KeySeparator);
                        WriteValue(item, depth + 1);
                    }
                    NewLine(depth);
                    sb.Append('}');
                    break;
                }
                default:
                    throw new JinjaException($"Object of type {Py.TypeName(value)} is not JSON serializable");
            }
        }

        private void WriteArray(IReadOnlyList<object?> items, int depth)
        {
            var sb = Output;
            if (items.Count == 0)
            {
                sb.Append("[]");
                return;
            }
            sb.Append('[');
            for (int i = 0; i < items.Count; i++)
            {
                if (i > 0) sb.Append(ItemSeparator);
                NewLine(depth + 1);
                WriteValue(items[i], depth + 1);
            }
            NewLine(depth);
            sb.Append(']');
        }

        private void NewLine(int depth)
        {
            if (Indent == null) return;
            Output.Append('\n');
            for (int i = 0; i < depth; i++) Output.Append(Indent);
        }

        private static string FloatText(double d) => double.IsNaN(d) ? "NaN"
            : double.IsPositiveInfinity(d) ? "Infinity"
            : double.IsNegativeInfinity(d) ? "-Infinity"
            : Py.FormatFloat(d);

        private void WriteString(string s)
        {
            var sb = Output;
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < 0x20 || EnsureAscii && c > 0x7e) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }
    }
}

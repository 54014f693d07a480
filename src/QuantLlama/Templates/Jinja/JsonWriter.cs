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
    public static string Write(object? value, object? indent)
    {
        string? indentText = indent switch
        {
            null => null,
            long or bool => new string(' ', (int)Math.Clamp(Py.AsLong(indent), 0, 100)),
            string s => s,
            Undefined => null,
            _ => throw new JinjaException($"tojson: indent must be an integer or a string, not {Py.TypeName(indent)}"),
        };
        var sb = new StringBuilder();
        WriteValue(sb, value, indentText, 0);
        return sb.ToString();
    }

    private static void WriteValue(StringBuilder sb, object? value, string? indent, int depth)
    {
        if (depth > 100) throw new JinjaException("tojson: value nested too deeply");
        switch (value)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FloatText(d)); break;
            case string s: WriteString(sb, s); break;
            case List<object?> list: WriteArray(sb, list, indent, depth); break;
            case object?[] tuple: WriteArray(sb, tuple, indent, depth); break;
            case JinjaDict dict:
            {
                if (dict.Count == 0)
                {
                    sb.Append("{}");
                    break;
                }
                sb.Append('{');
                bool first = true;
                foreach (var (key, item) in dict)
                {
                    if (!first) sb.Append(indent == null ? ", " : ",");
                    first = false;
                    NewLine(sb, indent, depth + 1);
                    WriteString(sb, key switch
                    {
                        string s => s,
                        bool b => b ? "true" : "false",
                        long l => l.ToString(CultureInfo.InvariantCulture),
                        double d => FloatText(d),
                        _ => throw new JinjaException($"keys must be str, int, float, bool or None, not {Py.TypeName(key)}"),
                    });
                    sb.Append(": ");
                    WriteValue(sb, item, indent, depth + 1);
                }
                NewLine(sb, indent, depth);
                sb.Append('}');
                break;
            }
            default:
                throw new JinjaException($"Object of type {Py.TypeName(value)} is not JSON serializable");
        }
    }

    private static void WriteArray(StringBuilder sb, IReadOnlyList<object?> items, string? indent, int depth)
    {
        if (items.Count == 0)
        {
            sb.Append("[]");
            return;
        }
        sb.Append('[');
        for (int i = 0; i < items.Count; i++)
        {
            if (i > 0) sb.Append(indent == null ? ", " : ",");
            NewLine(sb, indent, depth + 1);
            WriteValue(sb, items[i], indent, depth + 1);
        }
        NewLine(sb, indent, depth);
        sb.Append(']');
    }

    private static void NewLine(StringBuilder sb, string? indent, int depth)
    {
        if (indent == null) return;
        sb.Append('\n');
        for (int i = 0; i < depth; i++) sb.Append(indent);
    }

    private static string FloatText(double d) => double.IsNaN(d) ? "NaN"
        : double.IsPositiveInfinity(d) ? "Infinity"
        : double.IsNegativeInfinity(d) ? "-Infinity"
        : Py.FormatFloat(d);

    private static void WriteString(StringBuilder sb, string s)
    {
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
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}

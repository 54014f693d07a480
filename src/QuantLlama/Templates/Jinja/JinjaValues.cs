using System.Collections;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace QuantLlama.Templates.Jinja;

/// <summary>
/// Converts .NET data into template values: strings, booleans, integers (to long), floating-point numbers (to
/// double), null, lists and dictionaries (keys in their order), and JSON (JsonElement, JsonNode). Anything else is
/// refused, so a template only ever sees plain data.
/// </summary>
public static class JinjaValues
{
    private const int MaxDepth = 256;

    public static object? FromPlain(object? value) => Convert(value, 0);

    public static object? FromJson(JsonElement element) => Convert(element, 0);

    public static object? FromJson(JsonNode? node) => Convert(node, 0);

    private static object? Convert(object? value, int depth)
    {
        if (depth > MaxDepth) throw new JinjaException("value nested too deeply");
        switch (value)
        {
            case null: return null;
            case string or bool or long or double: return value;
            case int or short or sbyte or byte or ushort or uint: return System.Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture);
            case ulong u: return u <= long.MaxValue ? (object)(long)u : (double)u;
            case float f: return (double)f;
            case decimal m: return (double)m;
            case JsonElement e: return FromElement(e, depth);
            case JsonNode n: return FromElement(JsonSerializer.SerializeToElement(n), depth);
            case JinjaDict d:
            {
                var copy = new JinjaDict();
                foreach (var (k, v) in d) copy[k] = Convert(v, depth + 1);
                return copy;
            }
            case IEnumerable<KeyValuePair<string, object?>> pairs:
            {
                var dict = new JinjaDict();
                foreach (var (k, v) in pairs) dict[k] = Convert(v, depth + 1);
                return dict;
            }
            case IDictionary map:
            {
                var dict = new JinjaDict();
                foreach (DictionaryEntry entry in map)
                    dict[entry.Key as string ?? throw new JinjaException("dictionary keys must be strings")] = Convert(entry.Value, depth + 1);
                return dict;
            }
            case object?[] tuple: return tuple.Select(x => Convert(x, depth + 1)).ToArray();
            case IEnumerable items:
            {
                var list = new List<object?>();
                foreach (var item in items) list.Add(Convert(item, depth + 1));
                return list;
            }
            default:
                throw new JinjaException($"a template variable cannot hold a {value.GetType().Name}");
        }
    }

    private static object? FromElement(JsonElement e, int depth)
    {
        if (depth > MaxDepth) throw new JinjaException("value nested too deeply");
        switch (e.ValueKind)
        {
            case JsonValueKind.Null:
            case JsonValueKind.Undefined:
                return null;
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            case JsonValueKind.String: return e.GetString();
            case JsonValueKind.Number:
            {
                string raw = e.GetRawText();
                bool integral = !raw.Contains('.') && !raw.Contains('e') && !raw.Contains('E');
                return integral && e.TryGetInt64(out long l) ? (object)l : e.GetDouble();
            }
            case JsonValueKind.Array: return e.EnumerateArray().Select(x => FromElement(x, depth + 1)).ToList();
            case JsonValueKind.Object:
            {
                var dict = new JinjaDict();
                foreach (var p in e.EnumerateObject()) dict[p.Name] = FromElement(p.Value, depth + 1);
                return dict;
            }
            default: throw new JinjaException($"unexpected JSON value {e.ValueKind}");
        }
    }
}

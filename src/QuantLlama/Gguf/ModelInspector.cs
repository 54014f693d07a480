using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using QuantLlama.Tensors;

namespace QuantLlama.Gguf;

/// <summary>
/// Describes a model file for people (an aligned text report) and for programs (JSON): format and version,
/// metadata with long arrays summarized, and the tensor table with totals. Used by `quantllama inspect`.
/// </summary>
public static class ModelInspector
{
    public const int DefaultArrayItems = 8;
    private const int MaxTextStringLength = 120;

    /// <summary>The short type names GGUF tools print (u8 ... f64, bool, string, array).</summary>
    public static string TypeName(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 => "u8",
        GgufValueType.Int8 => "i8",
        GgufValueType.UInt16 => "u16",
        GgufValueType.Int16 => "i16",
        GgufValueType.UInt32 => "u32",
        GgufValueType.Int32 => "i32",
        GgufValueType.Float32 => "f32",
        GgufValueType.Bool => "bool",
        GgufValueType.String => "string",
        GgufValueType.Array => "array",
        GgufValueType.UInt64 => "u64",
        GgufValueType.Int64 => "i64",
        GgufValueType.Float64 => "f64",
        _ => $"type{(uint)type}",
    };

    // ---- text --------------------------------------------------------------------------------------------------

    /// <param name="arrayItems">How many leading items of each array to show (negative: all).</param>
    /// <param name="chatTemplateFamily">The family the caller recognised in tokenizer.chat_template, if any.</param>
    /// <param name="whyNotRunnable">The caller's verdict on running the file: null when it runs, else why not (one line);
    /// no "runs:" line when <paramref name="verdictKnown"/> is false.</param>
    public static string FormatText(IModelFile file, int arrayItems = DefaultArrayItems, string? chatTemplateFamily = null,
        bool verdictKnown = false, string? whyNotRunnable = null)
    {
        var sb = new StringBuilder();
        sb.Append("file:     ").AppendLine(file.FileName);
        sb.Append("format:   ").Append(file.FormatDescription);
        if (file is GgufFile g)
            sb.Append(CultureInfo.InvariantCulture, $" (alignment {g.Alignment}, tensor data at byte {g.DataOffset:N0}, file {g.FileSize:N0} bytes)");
        sb.AppendLine();
        string? chatTemplate = ChatTemplateText(file);
        sb.Append("chat:     ").AppendLine(chatTemplate == null ? "no tokenizer.chat_template"
            : string.Create(CultureInfo.InvariantCulture, $"tokenizer.chat_template ({chatTemplate.Length:N0} chars), family {chatTemplateFamily ?? "not recognised"}"));
        if (verdictKnown) sb.Append("runs:     ").AppendLine(whyNotRunnable == null ? "yes" : "no: " + whyNotRunnable);

        var entries = file.Metadata.Entries;
        sb.AppendLine(CultureInfo.InvariantCulture, $"metadata: {entries.Count} entries");
        int keyWidth = entries.Count == 0 ? 0 : Math.Min(48, entries.Max(e => e.Key.Length));
        foreach (var (key, value) in entries)
        {
            string type = value.Value is GgufArray a ? $"[{TypeName(a.ElementType)} x {a.Count}]" : TypeName(value.Type);
            sb.Append("  ").Append(key.PadRight(keyWidth)).Append("  ").Append(type.PadRight(16)).Append(' ')
              .AppendLine(ValueText(value, arrayItems));
        }

        var tensors = file.Tensors;
        sb.AppendLine(CultureInfo.InvariantCulture, $"tensors:  {tensors.Count}");
        if (tensors.Count > 0)
        {
            int nameWidth = Math.Max(4, tensors.Max(t => t.Name.Length));
            int typeWidth = Math.Max(4, tensors.Max(t => t.Type.ToString().Length));
            int shapeWidth = Math.Max(5, tensors.Max(t => t.ShapeText.Length));
            sb.Append("  ").Append("name".PadRight(nameWidth)).Append("  ").Append("type".PadRight(typeWidth)).Append("  ")
              .Append("shape".PadRight(shapeWidth)).Append("  ").AppendLine("bytes".PadLeft(14));
            foreach (var t in tensors)
            {
                sb.Append("  ").Append(t.Name.PadRight(nameWidth)).Append("  ").Append(t.Type.ToString().PadRight(typeWidth)).Append("  ")
                  .Append(t.ShapeText.PadRight(shapeWidth)).Append("  ").AppendLine(t.ByteSize.ToString("N0", CultureInfo.InvariantCulture).PadLeft(14));
            }
        }
        var totals = Totals(file);
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"total:    {tensors.Count} tensors, {totals.Elements:N0} elements, {totals.Bytes:N0} bytes ({totals.Bytes / 1048576.0:F2} MiB)");
        foreach (var (type, count, elements, bytes) in totals.ByType)
            sb.AppendLine(CultureInfo.InvariantCulture, $"  {type,-8} {count,5} tensors {elements,16:N0} elements {bytes,16:N0} bytes");
        return sb.ToString();
    }

    private static string ValueText(GgufValue value, int arrayItems) => value.Value switch
    {
        GgufArray a => ArrayText(a, arrayItems),
        string s => Quote(s, MaxTextStringLength),
        _ => ScalarText(value.Value),
    };

    private static string ArrayText(GgufArray a, int arrayItems)
    {
        int shown = arrayItems < 0 ? a.Count : Math.Min(arrayItems, a.Count);
        var parts = new List<string>(shown + 1);
        for (int i = 0; i < shown; i++)
        {
            object item = a.Items.GetValue(i)!;
            parts.Add(item switch
            {
                string s => Quote(s, 40),
                GgufArray inner => $"[{TypeName(inner.ElementType)} x {inner.Count}]",
                _ => ScalarText(item),
            });
        }
        if (shown < a.Count) parts.Add($"... ({a.Count - shown:N0} more)");
        return "[" + string.Join(", ", parts) + "]";
    }

    private static string ScalarText(object v) => v switch
    {
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };

    /// <summary>A string on one line: quoted, control characters escaped, long ones cut with their length.</summary>
    private static string Quote(string s, int maxLength)
    {
        var sb = new StringBuilder("\"");
        int limit = Math.Min(s.Length, maxLength);
        for (int i = 0; i < limit; i++)
        {
            char c = s[i];
            sb.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '"' => "\\\"",
                '\\' => "\\\\",
                _ when char.IsControl(c) => $"\\u{(int)c:X4}",
                _ => c.ToString(),
            });
        }
        sb.Append('"');
        if (s.Length > maxLength) sb.Append(CultureInfo.InvariantCulture, $"... ({s.Length:N0} chars)");
        return sb.ToString();
    }

    private static string? ChatTemplateText(IModelFile file)
        => file.Metadata.ContainsKey("tokenizer.chat_template") && file.Metadata.GetValue("tokenizer.chat_template").Value is string s ? s : null;

    // ---- JSON --------------------------------------------------------------------------------------------------

    /// <param name="arrayItems">How many leading items of each array to include (negative: all).</param>
    /// <param name="chatTemplateFamily">The family the caller recognised in tokenizer.chat_template, if any.</param>
    /// <param name="whyNotRunnable">As <see cref="FormatText"/>'s: written as "runnable" and "notRunnableBecause".</param>
    public static string FormatJson(IModelFile file, int arrayItems = DefaultArrayItems, string? chatTemplateFamily = null,
        bool verdictKnown = false, string? whyNotRunnable = null)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("file", file.FileName);
            w.WriteString("format", file.FormatDescription);
            if (file is GgufFile g)
            {
                w.WriteNumber("version", g.Version);
                w.WriteNumber("alignment", g.Alignment);
                w.WriteNumber("dataOffset", g.DataOffset);
                w.WriteNumber("fileSize", g.FileSize);
            }
            string? chatTemplate = ChatTemplateText(file);
            w.WriteStartObject("chatTemplate");
            w.WriteBoolean("present", chatTemplate != null);
            if (chatTemplate != null)
            {
                w.WriteNumber("chars", chatTemplate.Length);
                if (chatTemplateFamily != null) w.WriteString("family", chatTemplateFamily);
                else w.WriteNull("family");
            }
            w.WriteEndObject();
            if (verdictKnown)
            {
                w.WriteBoolean("runnable", whyNotRunnable == null);
                if (whyNotRunnable != null) w.WriteString("notRunnableBecause", whyNotRunnable);
            }
            w.WriteStartArray("metadata");
            foreach (var (key, value) in file.Metadata.Entries)
            {
                w.WriteStartObject();
                w.WriteString("key", key);
                w.WriteString("type", TypeName(value.Type));
                if (value.Value is GgufArray a) WriteArray(w, a, arrayItems);
                else
                {
                    w.WritePropertyName("value");
                    WriteScalar(w, value.Value);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("tensors");
            foreach (var t in file.Tensors)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.WriteString("type", t.Type.ToString());
                w.WriteStartArray("shape");
                foreach (var d in t.Dimensions) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteNumber("elements", t.ElementCount);
                w.WriteNumber("bytes", t.ByteSize);
                w.WriteNumber("offset", t.Offset);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            var totals = Totals(file);
            w.WriteStartObject("totals");
            w.WriteNumber("tensors", file.Tensors.Count);
            w.WriteNumber("elements", totals.Elements);
            w.WriteNumber("bytes", totals.Bytes);
            w.WriteStartObject("byType");
            foreach (var (type, count, elements, bytes) in totals.ByType)
            {
                w.WriteStartObject(type.ToString());
                w.WriteNumber("tensors", count);
                w.WriteNumber("elements", elements);
                w.WriteNumber("bytes", bytes);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>An array as its element type, its length and its first items ("truncated" when cut).</summary>
    private static void WriteArray(Utf8JsonWriter w, GgufArray a, int arrayItems)
    {
        w.WriteString("elementType", TypeName(a.ElementType));
        w.WriteNumber("count", a.Count);
        int shown = arrayItems < 0 ? a.Count : Math.Min(arrayItems, a.Count);
        w.WriteBoolean("truncated", shown < a.Count);
        w.WriteStartArray("items");
        for (int i = 0; i < shown; i++)
        {
            object item = a.Items.GetValue(i)!;
            if (item is GgufArray inner)
            {
                w.WriteStartObject();
                WriteArray(w, inner, arrayItems);
                w.WriteEndObject();
            }
            else WriteScalar(w, item);
        }
        w.WriteEndArray();
    }

    private static void WriteScalar(Utf8JsonWriter w, object v)
    {
        switch (v)
        {
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            // JSON has no NaN or infinities: those go out as strings.
            case float f when !float.IsFinite(f): w.WriteStringValue(f.ToString(CultureInfo.InvariantCulture)); break;
            case double d when !double.IsFinite(d): w.WriteStringValue(d.ToString(CultureInfo.InvariantCulture)); break;
            case float f: w.WriteNumberValue(f); break;
            case double d: w.WriteNumberValue(d); break;
            case ulong u: w.WriteNumberValue(u); break;
            case long l: w.WriteNumberValue(l); break;
            default: w.WriteNumberValue(Convert.ToInt64(v, CultureInfo.InvariantCulture)); break;
        }
    }

    // ---- totals ------------------------------------------------------------------------------------------------

    private sealed record TensorTotals(long Elements, long Bytes, List<(GgmlType Type, int Count, long Elements, long Bytes)> ByType);

    private static TensorTotals Totals(IModelFile file)
    {
        long elements = 0, bytes = 0;
        var byType = new SortedDictionary<GgmlType, (int Count, long Elements, long Bytes)>();
        foreach (var t in file.Tensors)
        {
            elements += t.ElementCount;
            bytes += t.ByteSize;
            var (c, e, b) = byType.GetValueOrDefault(t.Type);
            byType[t.Type] = (c + 1, e + t.ElementCount, b + t.ByteSize);
        }
        return new TensorTotals(elements, bytes, byType.Select(kv => (kv.Key, kv.Value.Count, kv.Value.Elements, kv.Value.Bytes)).ToList());
    }
}

using System.Globalization;
using System.Text;

namespace QuantLlama.Templates.Jinja;

/// <summary>Python's printf-style `format % values` for strings: %s %r %d %i %f %e %g %x %o %c and %%, with flags, width and precision.</summary>
internal static class PercentFormat
{
    public static string Apply(Evaluator ev, string format, object? args)
    {
        var values = args is object?[] tuple ? tuple : [args];
        // Python takes a dict (or any non-tuple sequence) as a mapping, and then does not mind unused values.
        bool mapping = args is JinjaDict or List<object?> or Undefined;
        int next = 0;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            char c = format[i];
            if (c != '%')
            {
                sb.Append(c);
                continue;
            }
            if (++i >= format.Length) throw new JinjaException("incomplete format");
            object? value = null;
            bool haveValue = false;
            if (format[i] == '(')
            {
                int close = format.IndexOf(')', i);
                if (close < 0) throw new JinjaException("incomplete format key");
                if (args is not JinjaDict dict) throw new JinjaException("format requires a mapping");
                string key = format[(i + 1)..close];
                value = dict.TryGetValue(key, out var v) ? v : throw new JinjaException($"KeyError: '{key}'");
                haveValue = true;
                i = close + 1;
            }
            string flags = "";
            while (i < format.Length && format[i] is '-' or '+' or ' ' or '0' or '#') flags += format[i++];
            int width = ReadNumber(format, ref i, values, ref next);
            int precision = -1;
            if (i < format.Length && format[i] == '.')
            {
                i++;
                precision = Math.Max(0, ReadNumber(format, ref i, values, ref next));
            }
            while (i < format.Length && format[i] is 'h' or 'l' or 'L') i++;
            if (i >= format.Length) throw new JinjaException("incomplete format");
            char conversion = format[i];
            if (conversion == '%')
            {
                sb.Append('%');
                continue;
            }
            if (!haveValue)
            {
                if (next >= values.Length) throw new JinjaException("not enough arguments for format string");
                value = values[next++];
            }
            string text = Convert(value, conversion, flags, precision);
            if (text.Length < width)
            {
                bool zeroPad = flags.Contains('0') && !flags.Contains('-') && conversion is not ('s' or 'r' or 'c');
                if (flags.Contains('-')) text = text.PadRight(width);
                else if (zeroPad)
                {
                    int signLength = text.StartsWith('-') || text.StartsWith('+') || text.StartsWith(' ') ? 1 : 0;
                    text = text[..signLength] + new string('0', width - text.Length) + text[signLength..];
                }
                else text = text.PadLeft(width);
            }
            sb.Append(text);
            ev.ChargeString(sb.Length);
        }
        if (next < values.Length && !mapping) throw new JinjaException("not all arguments converted during string formatting");
        return sb.ToString();
    }

    private static int ReadNumber(string format, ref int i, object?[] values, ref int next)
    {
        if (i < format.Length && format[i] == '*')
        {
            i++;
            if (next >= values.Length) throw new JinjaException("not enough arguments for format string");
            return (int)Math.Clamp(Filters.ToInt(values[next++]), -1_000_000, 1_000_000);
        }
        int n = 0;
        while (i < format.Length && char.IsAsciiDigit(format[i]))
        {
            n = Math.Min(n * 10 + (format[i++] - '0'), 1_000_000);
        }
        return n;
    }

    private static string Convert(object? value, char conversion, string flags, int precision)
    {
        string sign(bool negative) => negative ? "-" : flags.Contains('+') ? "+" : flags.Contains(' ') ? " " : "";
        switch (conversion)
        {
            case 's':
            case 'r':
            {
                string s = conversion == 's' ? Py.Str(value) : Py.Repr(value);
                return precision >= 0 && precision < s.Length ? s[..precision] : s;
            }
            case 'c':
                return value switch
                {
                    string { Length: 1 } s => s,
                    long code when code is >= 0 and <= 0x10FFFF => char.ConvertFromUtf32((int)code),
                    _ => throw new JinjaException("%c requires an int or a single character"),
                };
            case 'd' or 'i' or 'u':
            {
                if (Number(value, conversion) is double d)
                {
                    if (!double.IsFinite(d)) throw new JinjaException("cannot convert float infinity or NaN to integer");
                    double whole = Math.Truncate(d);
                    return sign(whole < 0) + Math.Abs(whole).ToString("F0", CultureInfo.InvariantCulture);
                }
                long n = Py.AsLong(value);
                return sign(n < 0) + Math.Abs((decimal)n).ToString(CultureInfo.InvariantCulture);
            }
            case 'x' or 'X' or 'o':
            {
                if (!Py.IsInteger(value)) throw new JinjaException($"%{conversion} format: an integer is required, not {Py.TypeName(value)}");
                long n = Py.AsLong(value);
                ulong magnitude = n < 0 ? (ulong)(-(n + 1)) + 1 : (ulong)n;
                string digits = conversion == 'o' ? System.Convert.ToString((long)magnitude, 8) : magnitude.ToString(conversion == 'x' ? "x" : "X", CultureInfo.InvariantCulture);
                string prefix = flags.Contains('#') ? conversion == 'o' ? "0o" : conversion == 'x' ? "0x" : "0X" : "";
                return sign(n < 0) + prefix + digits;
            }
            case 'f' or 'F' or 'e' or 'E' or 'g' or 'G':
            {
                double d = Py.AsDouble(Number(value, conversion));
                if (!double.IsFinite(d))
                    return double.IsNaN(d) ? "nan" : sign(d < 0) + (char.IsUpper(conversion) ? "INF" : "inf");
                string body = FormatFloat(Math.Abs(d), char.ToLowerInvariant(conversion), precision < 0 ? 6 : precision, flags.Contains('#'));
                return sign(double.IsNegative(d)) + (char.IsUpper(conversion) ? body.ToUpperInvariant() : body);
            }
            default:
                throw new JinjaException($"unsupported format character '{conversion}'");
        }
    }

    private static object Number(object? value, char conversion) => value switch
    {
        bool or long or double => value!,
        Undefined u => throw u.Fail(),
        _ => throw new JinjaException($"%{conversion} format: a real number is required, not {Py.TypeName(value)}"),
    };

    private static string FormatFloat(double d, char conversion, int precision, bool alternate)
    {
        switch (conversion)
        {
            case 'f':
                return d.ToString("F" + precision, CultureInfo.InvariantCulture);
            case 'e':
                return Exponent(d, precision);
            default: // 'g': the shorter of e and f at this many significant digits, trailing zeros dropped
            {
                int significant = precision == 0 ? 1 : precision;
                int exponent = d == 0 ? 0 : (int)Math.Floor(Math.Log10(double.Parse(Exponent(d, significant - 1), CultureInfo.InvariantCulture)));
                string text = exponent >= -4 && exponent < significant
                    ? d.ToString("F" + Math.Max(0, significant - 1 - exponent), CultureInfo.InvariantCulture)
                    : Exponent(d, significant - 1);
                if (alternate) return text;
                int e = text.IndexOf('e');
                string mantissa = e < 0 ? text : text[..e];
                if (mantissa.Contains('.')) mantissa = mantissa.TrimEnd('0').TrimEnd('.');
                return mantissa + (e < 0 ? "" : text[e..]);
            }
        }
    }

    /// <summary>d.ddde+XX with at least two exponent digits, as C's printf writes it.</summary>
    private static string Exponent(double d, int precision)
    {
        return d.ToString((precision == 0 ? "0" : "0." + new string('0', precision)) + "e+00", CultureInfo.InvariantCulture);
    }
}

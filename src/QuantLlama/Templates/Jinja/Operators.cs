using System.Text;

namespace QuantLlama.Templates.Jinja;

/// <summary>Python's arithmetic and comparison operators on template values.</summary>
internal static class Operators
{
    public static object? Unary(string op, object? value)
    {
        if (op == "not") return !Py.IsTrue(value);
        return value switch
        {
            Undefined u => throw u.Fail(),
            // Arms typed object: a switch mixing long and double would turn every long into a double.
            bool or long when op == "-" => (object)checked(-Py.AsLong(value)),
            bool or long => (object)Py.AsLong(value),
            double d => (object)(op == "-" ? -d : d),
            _ => throw new JinjaException($"bad operand type for unary {op}: '{Py.TypeName(value)}'"),
        };
    }

    public static object? Binary(Evaluator ev, string op, object? a, object? b)
    {
        if (op == "~")
        {
            string left = Py.Str(a), right = Py.Str(b);
            ev.ChargeString(left.Length + (long)right.Length);
            return left + right;
        }
        if (op == "%" && a is string format) return PercentFormat.Apply(ev, format, b);
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
        if (Py.IsNumber(a) && Py.IsNumber(b)) return Arithmetic(op, a, b);
        switch (op, a, b)
        {
            case ("+", string x, string y):
                ev.ChargeString(x.Length + (long)y.Length);
                return x + y;
            case ("+", List<object?> x, List<object?> y):
                ev.CheckListLength(x.Count + (long)y.Count);
                return (List<object?>)[.. x, .. y];
            case ("+", object?[] x, object?[] y):
                ev.CheckListLength(x.Length + (long)y.Length);
                return (object?[])[.. x, .. y];
            case ("*", string s, _) when Py.IsInteger(b):
                return Repeat(ev, s, Py.AsLong(b));
            case ("*", _, string s) when Py.IsInteger(a):
                return Repeat(ev, s, Py.AsLong(a));
            case ("*", object?[] t, _) when Py.IsInteger(b):
                return RepeatList(ev, [.. t], Py.AsLong(b)).ToArray();
            case ("*", _, object?[] t) when Py.IsInteger(a):
                return RepeatList(ev, [.. t], Py.AsLong(a)).ToArray();
            case ("*", List<object?> l, _) when Py.IsInteger(b):
                return RepeatList(ev, l, Py.AsLong(b));
            case ("*", _, List<object?> l) when Py.IsInteger(a):
                return RepeatList(ev, l, Py.AsLong(a));
        }
        throw new JinjaException($"unsupported operand type(s) for {op}: '{Py.TypeName(a)}' and '{Py.TypeName(b)}'");
    }

    private static string Repeat(Evaluator ev, string s, long count)
    {
        if (count <= 0 || s.Length == 0) return "";
        ev.ChargeString(s.Length * Math.Min(count, int.MaxValue));
        return new StringBuilder(s.Length * (int)count).Insert(0, s, (int)count).ToString();
    }

    private static List<object?> RepeatList(Evaluator ev, List<object?> list, long count)
    {
        if (count <= 0) return [];
        ev.CheckListLength(list.Count * Math.Min(count, int.MaxValue));
        var result = new List<object?>();
        for (long i = 0; i < count; i++) result.AddRange(list);
        return result;
    }

    private static object Arithmetic(string op, object? a, object? b)
    {
        bool integers = Py.IsInteger(a) && Py.IsInteger(b);
        try
        {
            if (integers)
            {
                long x = Py.AsLong(a), y = Py.AsLong(b);
                switch (op)
                {
                    case "+": return checked(x + y);
                    case "-": return checked(x - y);
                    case "*": return checked(x * y);
                    case "/": return y == 0 ? throw DivisionByZero() : (double)x / y;
                    case "//": return y == 0 ? throw DivisionByZero() : FloorDiv(x, y);
                    case "%": return y == 0 ? throw DivisionByZero() : x - y * FloorDiv(x, y);
                    case "**":
                        if (y < 0) return x == 0 ? throw new JinjaException("0.0 cannot be raised to a negative power") : Math.Pow(x, y);
                        long result = 1;
                        for (long i = 0; i < y; i++)
                        {
                            result = checked(result * x);
                            if (result is 0 or 1 && x is 0 or 1) break;
                            if (result == 1 && x == -1) { result = y % 2 == 0 ? 1 : -1; break; }
                        }
                        return result;
                }
            }
            double p = Py.AsDouble(a), q = Py.AsDouble(b);
            switch (op)
            {
                case "+": return p + q;
                case "-": return p - q;
                case "*": return p * q;
                case "/": return q == 0 ? throw DivisionByZero() : p / q;
                case "//": return q == 0 ? throw DivisionByZero() : Math.Floor(p / q);
                case "%":
                {
                    if (q == 0) throw DivisionByZero();
                    double m = p % q;
                    return m != 0 && (m < 0) != (q < 0) ? m + q : m;
                }
                case "**":
                    if (p == 0 && q < 0) throw new JinjaException("0.0 cannot be raised to a negative power");
                    if (p < 0 && q != Math.Floor(q)) throw new JinjaException("complex results are not supported");
                    return Math.Pow(p, q);
            }
        }
        catch (OverflowException)
        {
            throw new JinjaException("integer overflow (values beyond 64 bits are not supported)");
        }
        throw new JinjaException($"unsupported operator {op}");
    }

    private static JinjaException DivisionByZero() => new("division by zero");

    private static long FloorDiv(long x, long y)
    {
        if (x == long.MinValue && y == -1) throw new OverflowException();
        long q = x / y;
        return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;
    }

    public static bool Compare(string op, object? a, object? b) => op switch
    {
        "==" => Py.AreEqual(a, b),
        "!=" => !Py.AreEqual(a, b),
        "<" => Py.Compare(a, b) < 0,
        "<=" => Py.Compare(a, b) <= 0,
        ">" => Py.Compare(a, b) > 0,
        ">=" => Py.Compare(a, b) >= 0,
        "in" => Contains(b, a),
        "not in" => !Contains(b, a),
        _ => throw new JinjaException($"unknown operator {op}"),
    };

    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal)
            : throw new JinjaException($"'in <string>' requires string as left operand, not {Py.TypeName(item)}"),
        JinjaDict d => item is List<object?> or JinjaDict ? throw new JinjaException($"unhashable type: '{Py.TypeName(item)}'")
            : item is not null and not Undefined && d.ContainsKey(Evaluator.DictKey(item)),
        Undefined => false,
        _ => Evaluator.Iterate(container).Any(x => Py.AreEqual(x, item)),
    };
}

/// <summary>Strings by code point (as Python indexes them) and slicing of strings, lists and tuples.</summary>
internal static class Sequences
{
    public static List<object?> Characters(string s)
    {
        var list = new List<object?>(s.Length);
        foreach (var rune in s.EnumerateRunes()) list.Add(rune.ToString());
        return list;
    }

    public static int Length(string s) => s.Any(char.IsSurrogate) ? s.EnumerateRunes().Count() : s.Length;

    public static object? Slice(object? value, object? start, object? stop, object? step)
    {
        long stepValue = step == null ? 1 : ToIndex(step);
        if (stepValue == 0) throw new JinjaException("slice step cannot be zero");
        switch (value)
        {
            case string s:
            {
                bool simple = !s.Any(char.IsSurrogate);
                var chars = simple ? null : Characters(s);
                int length = simple ? s.Length : chars!.Count;
                var indices = SliceIndices(length, start, stop, stepValue);
                var sb = new StringBuilder();
                foreach (int i in indices)
                {
                    if (simple) sb.Append(s[i]);
                    else sb.Append((string)chars![i]!);
                }
                return sb.ToString();
            }
            case List<object?> l:
                return SliceIndices(l.Count, start, stop, stepValue).Select(i => l[i]).ToList();
            case object?[] t:
                return SliceIndices(t.Length, start, stop, stepValue).Select(i => t[i]).ToArray();
            case Undefined u:
                throw u.Fail();
            default:
                throw new JinjaException($"'{Py.TypeName(value)}' object is not subscriptable");
        }
    }

    private static long ToIndex(object? value) => value switch
    {
        long or bool => Py.AsLong(value),
        Undefined u => throw u.Fail(),
        _ => throw new JinjaException("slice indices must be integers or None"),
    };

    /// <summary>The indices a Python slice selects, clamped the way Python clamps them.</summary>
    private static IEnumerable<int> SliceIndices(int length, object? start, object? stop, long step)
    {
        long lo, hi;
        if (step > 0)
        {
            lo = start == null ? 0 : Clamp(ToIndex(start), length, 0, length);
            hi = stop == null ? length : Clamp(ToIndex(stop), length, 0, length);
            for (long i = lo; i < hi; i += step) yield return (int)i;
        }
        else
        {
            lo = start == null ? length - 1 : Clamp(ToIndex(start), length, -1, length - 1);
            hi = stop == null ? -1 : Clamp(ToIndex(stop), length, -1, length - 1);
            for (long i = lo; i > hi; i += step) yield return (int)i;
        }
    }

    private static long Clamp(long index, int length, long min, long max)
    {
        if (index < 0) index += length;
        return Math.Clamp(index, min, max);
    }

    /// <summary>Python's s[i] for a list, tuple or string; null when out of range.</summary>
    public static bool TryIndex(object? value, long index, out object? item)
    {
        item = null;
        switch (value)
        {
            case List<object?> l:
                if (index < 0) index += l.Count;
                if (index < 0 || index >= l.Count) return false;
                item = l[(int)index];
                return true;
            case object?[] t:
                if (index < 0) index += t.Length;
                if (index < 0 || index >= t.Length) return false;
                item = t[(int)index];
                return true;
            case string s:
            {
                var chars = s.Any(char.IsSurrogate) ? Characters(s) : null;
                int length = chars?.Count ?? s.Length;
                if (index < 0) index += length;
                if (index < 0 || index >= length) return false;
                item = chars != null ? chars[(int)index] : s[(int)index].ToString();
                return true;
            }
        }
        return false;
    }
}

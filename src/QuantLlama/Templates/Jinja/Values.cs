using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace QuantLlama.Templates.Jinja;

// The template's value model, after Python's: null is None, bool, long (int), double (float), string,
// List<object?> (list), object?[] (tuple), JinjaDict (dict), and the types below. Nothing else ever reaches a
// template, so it cannot reach .NET objects.

/// <summary>A name or key that does not exist: prints as nothing, is false, iterates as empty, fails when used further.</summary>
internal sealed class Undefined(string message)
{
    /// <summary>The error raised when the value is used in a way only a defined value allows.</summary>
    public string Message { get; } = message;

    public JinjaException Fail() => new(Message);
}

/// <summary>A dict: keys keep their insertion order and compare as Python's do (1 == 1.0 == True).</summary>
public sealed class JinjaDict : OrderedDictionary<object, object?>
{
    public JinjaDict() : base(PyKeyComparer.Instance) { }
}

/// <summary>The object namespace() returns: attributes the template may assign inside loops.</summary>
internal sealed class JinjaNamespace
{
    public JinjaDict Attributes { get; } = new();
}

/// <summary>
/// A lazy sequence in jinja2 (map, select, reverse, ...). It iterates like a list, but tojson refuses it and it
/// prints as a generator object, as in Python.
/// </summary>
internal sealed class JinjaGenerator(List<object?> items)
{
    public List<object?> Items { get; } = items;
}

/// <summary>Something a template can call: a macro, a global function, a bound method.</summary>
internal abstract class JinjaCallable
{
    public abstract string Name { get; }

    public abstract object? Call(Evaluator evaluator, IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs);
}

internal sealed class BuiltinFunction(string name, Func<Evaluator, IReadOnlyList<object?>, IReadOnlyList<KeyValuePair<string, object?>>, object?> body) : JinjaCallable
{
    public override string Name => name;

    public override object? Call(Evaluator evaluator, IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs)
        => body(evaluator, args, kwargs);
}

/// <summary>Python's equality and hashing for dict keys.</summary>
internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static PyKeyComparer Instance { get; } = new();

    public new bool Equals(object? x, object? y) => Py.AreEqual(x, y);

    public int GetHashCode(object obj) => obj switch
    {
        bool b => b ? 1 : 0,
        long l => l.GetHashCode(),
        double d => d == Math.Floor(d) && Math.Abs(d) < 9.2e18 ? ((long)d).GetHashCode() : d.GetHashCode(),
        string s => s.GetHashCode(StringComparison.Ordinal),
        object?[] t => Py.EnoughStack() ? t.Aggregate(17, (h, e) => h * 31 + (e == null ? 0 : GetHashCode(e))) : 0,
        _ => throw new JinjaException($"unhashable type: '{Py.TypeName(obj)}'"),
    };
}

/// <summary>Python semantics of the template values: truth, equality, ordering, str() and repr().</summary>
internal static class Py
{
    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        object?[] => "tuple",
        JinjaDict => "dict",
        JinjaNamespace => "Namespace",
        JinjaGenerator => "generator",
        Undefined => "Undefined",
        LoopInfo => "LoopContext",
        JinjaCallable => "function",
        _ => "object",
    };

    public static bool IsTrue(object? v) => v switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        object?[] t => t.Length > 0,
        JinjaDict d => d.Count > 0,
        Undefined => false,
        _ => true,
    };

    public static bool IsNumber(object? v) => v is long or double or bool;

    public static bool IsInteger(object? v) => v is long or bool;

    public static long AsLong(object? v) => v switch { bool b => b ? 1 : 0, long l => l, _ => throw new InvalidCastException() };

    public static double AsDouble(object? v) => v switch { bool b => b ? 1 : 0, long l => l, double d => d, _ => throw new InvalidCastException() };

    public static bool AreEqual(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
            return IsInteger(a) && IsInteger(b) ? AsLong(a) == AsLong(b) : AsDouble(a) == AsDouble(b);
        return (a, b) switch
        {
            (null, null) => true,
            (string x, string y) => string.Equals(x, y, StringComparison.Ordinal),
            (List<object?> x, List<object?> y) => SequenceEqual(x, y),
            (object?[] x, object?[] y) => SequenceEqual(x, y),
            (JinjaDict x, JinjaDict y) => EnoughStack() && x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var v) && AreEqual(kv.Value, v)),
            (Undefined, Undefined) => true,
            _ => a != null && ReferenceEquals(a, b),
        };
    }

    private static bool SequenceEqual(IReadOnlyList<object?> x, IReadOnlyList<object?> y)
    {
        // Values can nest as deep as a loop makes them; fail cleanly rather than overflow the stack.
        RuntimeHelpers.EnsureSufficientExecutionStack();
        if (x.Count != y.Count) return false;
        for (int i = 0; i < x.Count; i++)
            if (!AreEqual(x[i], y[i])) return false;
        return true;
    }

    internal static bool EnoughStack()
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        return true;
    }

    /// <summary>Python's ordering (&lt; is negative): numbers with numbers, strings by code point, sequences item by item.</summary>
    public static int Compare(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
            return IsInteger(a) && IsInteger(b) ? AsLong(a).CompareTo(AsLong(b)) : AsDouble(a).CompareTo(AsDouble(b));
        switch (a, b)
        {
            case (string x, string y):
                return Math.Sign(string.CompareOrdinal(x, y));
            case (List<object?> x, List<object?> y):
                return CompareSequences(x, y);
            case (object?[] x, object?[] y):
                return CompareSequences(x, y);
        }
        if (a is Undefined u) throw u.Fail();
        if (b is Undefined v) throw v.Fail();
        throw new JinjaException($"'<' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static int CompareSequences(IReadOnlyList<object?> x, IReadOnlyList<object?> y)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        for (int i = 0; i < Math.Min(x.Count, y.Count); i++)
        {
            if (AreEqual(x[i], y[i])) continue;
            return Compare(x[i], y[i]);
        }
        return x.Count.CompareTo(y.Count);
    }

    /// <summary>Python's str(): what {{ value }} prints.</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(v),
    };

    /// <summary>Python's repr(), as lists and dicts print their items.</summary>
    public static string Repr(object? v)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, v, 0);
        return sb.ToString();
    }

    private static void AppendRepr(StringBuilder sb, object? v, int depth)
    {
        if (depth > 100) throw new JinjaException("value nested too deeply to print");
        switch (v)
        {
            case null: sb.Append("None"); break;
            case bool b: sb.Append(b ? "True" : "False"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FormatFloat(d)); break;
            case string s: AppendStringRepr(sb, s); break;
            case Undefined: sb.Append("Undefined"); break;
            case List<object?> list:
                sb.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(", ");
                    AppendRepr(sb, list[i], depth + 1);
                }
                sb.Append(']');
                break;
            case object?[] tuple:
                sb.Append('(');
                for (int i = 0; i < tuple.Length; i++)
                {
                    if (i > 0) sb.Append(", ");
                    AppendRepr(sb, tuple[i], depth + 1);
                }
                sb.Append(tuple.Length == 1 ? ",)" : ")");
                break;
            case JinjaDict dict:
                sb.Append('{');
                bool first = true;
                foreach (var (key, value) in dict)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    AppendRepr(sb, key, depth + 1);
                    sb.Append(": ");
                    AppendRepr(sb, value, depth + 1);
                }
                sb.Append('}');
                break;
            case JinjaNamespace ns:
                sb.Append("<Namespace ");
                AppendRepr(sb, ns.Attributes, depth + 1);
                sb.Append('>');
                break;
            case JinjaCallable c: sb.Append("<function ").Append(c.Name).Append('>'); break;
            default: sb.Append('<').Append(TypeName(v)).Append(" object>"); break;
        }
    }

    private static void AppendStringRepr(StringBuilder sb, string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        sb.Append(quote);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == quote) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append(quote);
    }

    /// <summary>Python's repr of a float: the shortest digits that round-trip, 1.0 not 1, exponent form below 1e-4 and from 1e16.</summary>
    public static string FormatFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        // "E16" is not shortest; "R" is, so read the digits and exponent back from it.
        string r = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int exponent = 0;
        int e = r.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(r[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..e];
        }
        int dot = r.IndexOf('.');
        string digits = dot < 0 ? r : r[..dot] + r[(dot + 1)..];
        int pointPos = (dot < 0 ? r.Length : dot) + exponent; // digits before the decimal point
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') { lead++; pointPos--; }
        digits = digits[lead..].TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        int decimalExponent = pointPos - 1; // scientific exponent
        string sign = d < 0 ? "-" : "";
        if (decimalExponent < -4 || decimalExponent >= 16)
        {
            string mantissa = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            string exp = (decimalExponent < 0 ? "-" : "+") + Math.Abs(decimalExponent).ToString("00", CultureInfo.InvariantCulture);
            return sign + mantissa + "e" + exp;
        }
        if (pointPos <= 0) return sign + "0." + new string('0', -pointPos) + digits;
        if (pointPos >= digits.Length) return sign + digits + new string('0', pointPos - digits.Length) + ".0";
        return sign + digits[..pointPos] + "." + digits[pointPos..];
    }
}

namespace QuantLlama.Templates.Jinja;

/// <summary>The built-in tests (`value is name(args)`).</summary>
internal static class Tests
{
    public static bool Apply(Evaluator ev, string name, object? value, IReadOnlyList<object?> args)
    {
        object? Arg(int i) => Members.Arg(args, i, name);
        switch (name)
        {
            case "defined": return value is not Undefined;
            case "undefined": return value is Undefined;
            case "none": return value is null;
            case "boolean": return value is bool;
            case "true": return value is true;
            case "false": return value is false;
            case "string": return value is string;
            case "number": return value is long or double or bool;
            case "integer": return value is long;
            case "float": return value is double;
            case "mapping": return value is JinjaDict;
            case "sequence": return value is string or List<object?> or object?[] or JinjaDict or Undefined; // jinja2's Undefined has a length and items
            case "iterable": return value is string or List<object?> or object?[] or JinjaDict or JinjaGenerator or Undefined;
            case "callable": return value is JinjaCallable or Undefined; // jinja2's Undefined can be called (and fails)
            // Python's value % 2 == 1: a float can be odd or even only when it is whole.
            case "odd": return Py.AreEqual(Operators.Binary(ev, "%", Integer(value), 2L), 1L);
            case "even": return Py.AreEqual(Operators.Binary(ev, "%", Integer(value), 2L), 0L);
            case "divisibleby": return Py.AreEqual(Operators.Binary(ev, "%", Integer(value), Integer(Arg(0))), 0L);
            case "equalto" or "eq" or "==": return Operators.Compare("==", value, Arg(0));
            case "ne" or "!=": return Operators.Compare("!=", value, Arg(0));
            case "lt" or "lessthan" or "<": return Operators.Compare("<", value, Arg(0));
            case "le" or "<=": return Operators.Compare("<=", value, Arg(0));
            case "gt" or "greaterthan" or ">": return Operators.Compare(">", value, Arg(0));
            case "ge" or ">=": return Operators.Compare(">=", value, Arg(0));
            case "in": return Operators.Contains(Arg(0), value);
            case "sameas":
            {
                var other = Arg(0);
                return value is null or bool or long or double || other is null or bool or long or double
                    ? value?.GetType() == other?.GetType() && Equals(value, other)
                    : ReferenceEquals(value, other);
            }
            case "lower": return value is string s && s.ToLowerInvariant() == s;
            case "upper": return value is string u && u.ToUpperInvariant() == u;
            case "escaped": return false;
            case "filter": return value is string f && Filters.Exists(f);
            case "test": return value is string t && Exists(t);
            default: throw new JinjaException($"No test named '{name}' found.");
        }
    }

    private static object? Integer(object? value) => value switch
    {
        Undefined u => throw u.Fail(),
        long or bool or double => value,
        _ => throw new JinjaException($"unsupported operand type for %: '{Py.TypeName(value)}'"),
    };

    public static bool Exists(string name) => name is "defined" or "undefined" or "none" or "boolean" or "true" or "false"
        or "string" or "number" or "integer" or "float" or "mapping" or "sequence" or "iterable" or "callable" or "odd" or "even"
        or "divisibleby" or "equalto" or "eq" or "ne" or "lt" or "lessthan" or "le" or "gt" or "greaterthan" or "ge" or "in"
        or "sameas" or "lower" or "upper" or "escaped" or "filter" or "test" or "==" or "!=" or "<" or "<=" or ">" or ">=";
}

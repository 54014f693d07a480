using System.Globalization;
using System.Text;

namespace QuantLlama.Templates.Jinja;

/// <summary>
/// A parsed Jinja template, rendered the way Python's jinja2 renders it (the subset chat templates use).
/// Variables are plain data: string, bool, integers, floating-point numbers, null, lists and dictionaries (see
/// <see cref="JinjaValues"/>). Only <see cref="JinjaException"/> leaves Parse and Render.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Node> _body;
    private readonly JinjaOptions _options;

    private JinjaTemplate(List<Node> body, JinjaOptions options)
    {
        _body = body;
        _options = options;
    }

    public static JinjaTemplate Parse(string source, JinjaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        options ??= JinjaOptions.Default;
        return Guard(() => new JinjaTemplate(Parser.Parse(source, options), options));
    }

    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        return Guard(() =>
        {
            var globals = new Scope(null);
            foreach (var (name, function) in Globals.Functions(_options)) globals.Set(name, function);
            var scope = new Scope(globals);
            foreach (var (name, value) in variables) scope.Set(name, JinjaValues.FromPlain(value));
            return new Evaluator(_options).Render(_body, scope);
        });
    }

    /// <summary>Turns what a hostile template can provoke in .NET (deep stacks, overflow) into a one-line JinjaException.</summary>
    private static T Guard<T>(Func<T> body)
    {
        try
        {
            return body();
        }
        catch (JinjaException)
        {
            throw;
        }
        catch (InsufficientExecutionStackException)
        {
            throw new JinjaException("template nested too deeply");
        }
        catch (OverflowException)
        {
            throw new JinjaException("integer overflow (values beyond 64 bits are not supported)");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new JinjaException($"internal error: {e.GetType().Name}: {e.Message}");
        }
    }
}

/// <summary>The global functions: range, namespace, dict, and Hugging Face's raise_exception and strftime_now.</summary>
internal static class Globals
{
    public static IEnumerable<(string Name, JinjaCallable Function)> Functions(JinjaOptions options)
    {
        yield return ("range", new BuiltinFunction("range", (ev, args, _) => Range(ev, args)));
        yield return ("namespace", new BuiltinFunction("namespace", (_, args, kwargs) =>
        {
            var ns = new JinjaNamespace();
            foreach (var arg in args)
            {
                if (arg is not JinjaDict d) throw new JinjaException("namespace() takes a dict or keyword arguments");
                foreach (var (k, v) in d) ns.Attributes[k] = v;
            }
            foreach (var (k, v) in kwargs) ns.Attributes[k] = v;
            return ns;
        }));
        yield return ("dict", new BuiltinFunction("dict", (_, args, kwargs) =>
        {
            var d = new JinjaDict();
            foreach (var arg in args)
            {
                if (arg is JinjaDict source)
                    foreach (var (k, v) in source) d[k] = v;
                else
                    foreach (var pair in Evaluator.Iterate(arg))
                    {
                        var kv = Evaluator.Iterate(pair);
                        if (kv.Count != 2) throw new JinjaException("dictionary update sequence element has wrong length");
                        d[Evaluator.DictKey(kv[0])] = kv[1];
                    }
            }
            foreach (var (k, v) in kwargs) d[k] = v;
            return d;
        }));
        yield return ("raise_exception", new BuiltinFunction("raise_exception", (_, args, _) =>
            throw new JinjaException(args.Count > 0 ? Py.Str(args[0]) : "raise_exception called")));
        yield return ("strftime_now", new BuiltinFunction("strftime_now", (_, args, _) =>
            Strftime((options.Clock ?? (() => DateTime.Now))(), Members.StringArg(Members.Arg(args, 0, "strftime_now"), "strftime_now"))));
    }

    private static List<object?> Range(Evaluator ev, IReadOnlyList<object?> args)
    {
        var numbers = args.Select(a => a is long or bool ? Py.AsLong(a)
            : a is Undefined u ? throw u.Fail()
            : throw new JinjaException($"'{Py.TypeName(a)}' object cannot be interpreted as an integer")).ToList();
        long start = 0, stop, step = 1;
        switch (numbers.Count)
        {
            case 1: stop = numbers[0]; break;
            case 2: (start, stop) = (numbers[0], numbers[1]); break;
            case 3: (start, stop, step) = (numbers[0], numbers[1], numbers[2]); break;
            default: throw new JinjaException($"range expected 1 to 3 arguments, got {numbers.Count}");
        }
        if (step == 0) throw new JinjaException("range() arg 3 must not be zero");
        double count = Math.Max(0, Math.Ceiling(((double)stop - start) / step));
        ev.CheckListLength((long)Math.Min(count, long.MaxValue));
        var list = new List<object?>((int)count);
        for (long i = 0, v = start; i < (long)count; i++, v += step) list.Add(v);
        return list;
    }

    private static readonly string[] Months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    private static readonly string[] Days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

    /// <summary>Python's strftime for the directives templates use (C locale).</summary>
    internal static string Strftime(DateTime t, string format)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                sb.Append(format[i]);
                continue;
            }
            char c = format[++i];
            bool noPad = c == '-' && i + 1 < format.Length;
            if (noPad) c = format[++i];
            string Num(int v, int width) => noPad ? v.ToString(CultureInfo.InvariantCulture) : v.ToString(new string('0', width), CultureInfo.InvariantCulture);
            sb.Append(c switch
            {
                'd' => Num(t.Day, 2),
                'e' => noPad ? t.Day.ToString(CultureInfo.InvariantCulture) : t.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                'm' => Num(t.Month, 2),
                'Y' => t.Year.ToString(CultureInfo.InvariantCulture),
                'y' => Num(t.Year % 100, 2),
                'H' => Num(t.Hour, 2),
                'I' => Num(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2),
                'M' => Num(t.Minute, 2),
                'S' => Num(t.Second, 2),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'b' or 'h' => Months[t.Month - 1][..3],
                'B' => Months[t.Month - 1],
                'a' => Days[(int)t.DayOfWeek][..3],
                'A' => Days[(int)t.DayOfWeek],
                'j' => Num(t.DayOfYear, 3),
                'w' => ((int)t.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                'F' => t.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                'T' => t.ToString("HH:mm:ss", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => "%" + c,
            });
        }
        return sb.ToString();
    }
}

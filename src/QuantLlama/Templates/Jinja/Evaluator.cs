using System.Runtime.CompilerServices;
using System.Text;

namespace QuantLlama.Templates.Jinja;

/// <summary>Variables of one block level; a lookup walks out to the enclosing levels.</summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);

    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s != null; s = s.Parent)
            if (s._vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}

/// <summary>The `loop` variable inside a for block.</summary>
internal sealed class LoopInfo
{
    internal LoopInfo(List<object?> items) => Items = items;

    internal List<object?> Items { get; }

    internal int Index0 { get; set; }

    internal object? Get(string name) => name switch
    {
        "index0" => (long)Index0,
        "index" => (long)Index0 + 1,
        "revindex" => (long)(Items.Count - Index0),
        "revindex0" => (long)(Items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Items.Count - 1,
        "length" => (long)Items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 < Items.Count - 1 ? Items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BuiltinFunction("cycle", (_, args, _) =>
            args.Count == 0 ? throw new JinjaException("no items for cycling given") : args[Index0 % args.Count]),
        "changed" => new BuiltinFunction("changed", (_, _, _) => throw new JinjaException("loop.changed is not supported")),
        _ => new Undefined($"'LoopContext' object has no attribute '{name}'"),
    };
}

/// <summary>Runs a parsed template: statements write to a buffer, expressions evaluate to template values.</summary>
internal sealed class Evaluator
{
    private enum Flow { Normal, Break, Continue }

    private readonly JinjaOptions _options;
    private long _work;
    private long _iterations;
    private int _callDepth;

    internal Evaluator(JinjaOptions options) => _options = options;

    internal JinjaOptions Options => _options;

    internal string Render(List<Node> body, Scope globals)
    {
        var output = new StringBuilder();
        var flow = Execute(body, new Scope(globals), output);
        if (flow != Flow.Normal) throw new JinjaException("break or continue outside a loop");
        return output.ToString();
    }

    // ---- limits -----------------------------------------------------------------------------------------------

    /// <summary>Counts characters a render produces, so that building big strings fails fast instead of running long.</summary>
    internal void ChargeString(long length)
    {
        if (length > _options.MaxOutputChars)
            throw new JinjaException($"string of {length} characters exceeds the limit of {_options.MaxOutputChars}");
        ChargeWork(length);
    }

    private void ChargeWork(long length)
    {
        _work += length;
        if (_work > _options.MaxWorkChars)
            throw new JinjaException($"template produced more than {_options.MaxWorkChars} characters in all");
    }

    internal void CheckListLength(long length)
    {
        if (length > _options.MaxListLength)
            throw new JinjaException($"list of {length} items exceeds the limit of {_options.MaxListLength}");
    }

    private void CountIteration()
    {
        if (++_iterations > _options.MaxLoopIterations)
            throw new JinjaException($"more than {_options.MaxLoopIterations} loop iterations");
    }

    private void Write(StringBuilder output, string text)
    {
        if (output.Length + (long)text.Length > _options.MaxOutputChars)
            throw new JinjaException($"output exceeds the limit of {_options.MaxOutputChars} characters");
        ChargeWork(text.Length);
        output.Append(text);
    }

    // ---- statements -------------------------------------------------------------------------------------------

    private Flow Execute(List<Node> body, Scope scope, StringBuilder output)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        foreach (var node in body)
        {
            var flow = ExecuteNode(node, scope, output);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecuteNode(Node node, Scope scope, StringBuilder output)
    {
        switch (node)
        {
            case TextNode t:
                Write(output, t.Text);
                return Flow.Normal;
            case OutputNode o:
                Write(output, Py.Str(Evaluate(o.Value, scope)));
                return Flow.Normal;
            case IfNode i:
                foreach (var (condition, branch) in i.Branches)
                    if (Py.IsTrue(Evaluate(condition, scope))) return Execute(branch, scope, output);
                return i.Else != null ? Execute(i.Else, scope, output) : Flow.Normal;
            case ForNode f:
                return ExecuteFor(f, scope, output);
            case SetNode s:
                Assign(s.Target, Evaluate(s.Value, scope), scope);
                return Flow.Normal;
            // Names set inside a block assignment or filter block stay inside it, as in jinja2.
            // A break or continue inside them leaves the enclosing loop before the result is used.
            case SetBlockNode sb:
            {
                var flow = Capture(sb.Body, new Scope(scope), out string text);
                if (flow == Flow.Normal) Assign(sb.Target, ApplyFilterChain(sb.Filters, text, scope), scope);
                return flow;
            }
            case FilterBlockNode fb:
            {
                var flow = Capture(fb.Body, new Scope(scope), out string text);
                if (flow == Flow.Normal) Write(output, Py.Str(ApplyFilterChain(fb.Filters, text, scope)));
                return flow;
            }
            case MacroNode m:
                scope.Set(m.Name, new Macro(m.Name, m.Parameters, m.Body, scope));
                return Flow.Normal;
            case CallBlockNode c:
            {
                var caller = new Macro("caller", c.CallerParameters, c.Body, scope);
                var call = c.Call with { Kwargs = [.. c.Call.Kwargs, ("caller", new LiteralExpr(c.Line, null))] };
                Write(output, Py.Str(EvaluateCall(call, scope, caller)));
                return Flow.Normal;
            }
            case BreakNode:
                return Flow.Break;
            case ContinueNode:
                return Flow.Continue;
            default:
                throw new JinjaException($"line {node.Line}: cannot execute {node.GetType().Name}");
        }
    }

    private Flow Capture(List<Node> body, Scope scope, out string text)
    {
        var buffer = new StringBuilder();
        var flow = Execute(body, scope, buffer);
        text = buffer.ToString();
        return flow;
    }

    private object? ApplyFilterChain(List<(string Name, List<Expr> Args, List<(string, Expr)> Kwargs)> filters, object? value, Scope scope)
    {
        foreach (var (name, args, kwargs) in filters)
            value = Filters.Apply(this, name, value, EvaluateArgs(args, scope), EvaluateKwargs(kwargs, scope));
        return value;
    }

    /// <returns>Normal, or the break/continue of an enclosing loop that the else block ran into.</returns>
    private Flow ExecuteFor(ForNode f, Scope scope, StringBuilder output)
    {
        var items = Iterate(Evaluate(f.Iterable, scope));
        if (f.Filter != null)
        {
            var kept = new List<object?>();
            foreach (var item in items)
            {
                CountIteration();
                var filterScope = new Scope(scope);
                Assign(f.Target, item, filterScope);
                if (Py.IsTrue(Evaluate(f.Filter, filterScope))) kept.Add(item);
            }
            items = kept;
        }
        // As jinja2 compiles it, else runs unless some iteration ran its body to the end: for an empty loop, and
        // also when every iteration ended in break or continue.
        bool completedAny = false;
        var loop = new LoopInfo(items);
        for (int i = 0; i < items.Count; i++)
        {
            CountIteration();
            loop.Index0 = i;
            var iterationScope = new Scope(scope);
            iterationScope.Set("loop", loop);
            Assign(f.Target, items[i], iterationScope);
            var flow = Execute(f.Body, iterationScope, output);
            if (flow == Flow.Normal) completedAny = true;
            else if (flow == Flow.Break) break;
        }
        return !completedAny && f.Else != null ? Execute(f.Else, new Scope(scope), output) : Flow.Normal;
    }

    private void Assign(Target target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameTarget n:
                scope.Set(n.Name, value);
                break;
            case TupleTarget t:
            {
                var items = Iterate(value);
                if (items.Count != t.Names.Count)
                    throw new JinjaException(items.Count > t.Names.Count
                        ? $"too many values to unpack (expected {t.Names.Count})"
                        : $"not enough values to unpack (expected {t.Names.Count}, got {items.Count})");
                for (int i = 0; i < items.Count; i++) scope.Set(t.Names[i], items[i]);
                break;
            }
            case AttributeTarget a:
            {
                if (!scope.TryGet(a.Object, out var obj) || obj is not JinjaNamespace ns)
                    throw new JinjaException("cannot assign attribute on non-namespace object");
                ns.Attributes[a.Attribute] = value;
                break;
            }
        }
    }

    // ---- expressions ------------------------------------------------------------------------------------------

    internal object? Evaluate(Expr expr, Scope scope)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        switch (expr)
        {
            case LiteralExpr l:
                return l.Value;
            case NameExpr n:
                return scope.TryGet(n.Name, out var value) ? value : new Undefined($"'{n.Name}' is undefined");
            case ListExpr l:
                return l.Items.Select(i => Evaluate(i, scope)).ToList();
            case TupleExpr t:
                return t.Items.Select(i => Evaluate(i, scope)).ToArray();
            case DictExpr d:
            {
                var dict = new JinjaDict();
                foreach (var (k, v) in d.Items) dict[DictKey(Evaluate(k, scope))] = Evaluate(v, scope);
                return dict;
            }
            case AttributeExpr a:
                return Members.GetAttribute(this, Evaluate(a.Object, scope), a.Name);
            case ItemExpr i:
                return Members.GetItem(this, Evaluate(i.Object, scope), Evaluate(i.Index, scope));
            case SliceExpr s:
                return Sequences.Slice(Evaluate(s.Object, scope), EvaluateOptional(s.Start, scope), EvaluateOptional(s.Stop, scope),
                    EvaluateOptional(s.Step, scope));
            case CallExpr c:
                return EvaluateCall(c, scope, null);
            case FilterExpr f:
                return Filters.Apply(this, f.Name, Evaluate(f.Value, scope), EvaluateArgs(f.Args, scope), EvaluateKwargs(f.Kwargs, scope));
            case TestExpr t:
                return Tests.Apply(this, t.Name, Evaluate(t.Value, scope), EvaluateArgs(t.Args, scope)) != t.Negated;
            case UnaryExpr u:
                return Operators.Unary(u.Operator, Evaluate(u.Operand, scope));
            case BinaryExpr { Operator: "and" } b:
            {
                var left = Evaluate(b.Left, scope);
                return Py.IsTrue(left) ? Evaluate(b.Right, scope) : left;
            }
            case BinaryExpr { Operator: "or" } b:
            {
                var left = Evaluate(b.Left, scope);
                return Py.IsTrue(left) ? left : Evaluate(b.Right, scope);
            }
            case BinaryExpr b:
                return Operators.Binary(this, b.Operator, Evaluate(b.Left, scope), Evaluate(b.Right, scope));
            case CompareExpr c:
            {
                var left = Evaluate(c.First, scope);
                foreach (var (op, operand) in c.Rest)
                {
                    var right = Evaluate(operand, scope);
                    if (!Operators.Compare(op, left, right)) return false;
                    left = right;
                }
                return true;
            }
            case ConditionalExpr c:
                if (Py.IsTrue(Evaluate(c.Condition, scope))) return Evaluate(c.Then, scope);
                return c.Else != null
                    ? Evaluate(c.Else, scope)
                    : new Undefined($"the inline if-expression on line {c.Line} evaluated to false and no else section was defined.");
            default:
                throw new JinjaException($"line {expr.Line}: cannot evaluate {expr.GetType().Name}");
        }
    }

    private object? EvaluateOptional(Expr? expr, Scope scope) => expr == null ? null : Evaluate(expr, scope);

    private List<object?> EvaluateArgs(List<Expr> args, Scope scope) => args.Select(a => Evaluate(a, scope)).ToList();

    private List<KeyValuePair<string, object?>> EvaluateKwargs(List<(string Name, Expr Value)> kwargs, Scope scope)
        => kwargs.Select(k => new KeyValuePair<string, object?>(k.Name, Evaluate(k.Value, scope))).ToList();

    internal static object DictKey(object? key) => key switch
    {
        null => throw new JinjaException("None as a dict key is not supported"),
        string or long or double or bool or object?[] => key,
        Undefined u => throw u.Fail(),
        _ => throw new JinjaException($"unhashable type: '{Py.TypeName(key)}'"),
    };

    private object? EvaluateCall(CallExpr c, Scope scope, Macro? caller)
    {
        var callee = Evaluate(c.Callee, scope);
        var args = EvaluateArgs(c.Args, scope);
        var kwargs = EvaluateKwargs(c.Kwargs, scope);
        if (caller != null) kwargs[^1] = new KeyValuePair<string, object?>("caller", caller);
        return callee switch
        {
            JinjaCallable f => f.Call(this, args, kwargs),
            Undefined u => throw u.Fail(),
            _ => throw new JinjaException($"'{Py.TypeName(callee)}' object is not callable"),
        };
    }

    /// <summary>The items a for loop (or a filter) walks through: list and tuple items, dict keys, string characters.</summary>
    internal static List<object?> Iterate(object? value) => value switch
    {
        List<object?> l => [.. l],
        object?[] t => [.. t],
        JinjaDict d => [.. d.Keys],
        string s => Sequences.Characters(s),
        JinjaGenerator g => [.. g.Items],
        Undefined => [],
        _ => throw new JinjaException($"'{Py.TypeName(value)}' object is not iterable"),
    };

    // ---- macros -----------------------------------------------------------------------------------------------

    private sealed class Macro(string name, List<(string Name, Expr? Default)> parameters, List<Node> body, Scope definedIn) : JinjaCallable
    {
        public override string Name => name;

        public override object? Call(Evaluator evaluator, IReadOnlyList<object?> args, IReadOnlyList<KeyValuePair<string, object?>> kwargs)
        {
            if (args.Count > parameters.Count)
                throw new JinjaException($"macro '{name}' takes not more than {parameters.Count} argument(s)");
            if (evaluator._callDepth >= evaluator._options.MaxCallDepth)
                throw new JinjaException($"macro calls nested more than {evaluator._options.MaxCallDepth} deep");
            var scope = new Scope(definedIn);
            var given = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (key, value) in kwargs)
            {
                if (key != "caller" && !parameters.Any(p => p.Name == key))
                    throw new JinjaException($"macro '{name}' takes no keyword argument '{key}'");
                given[key] = value;
            }
            if (given.TryGetValue("caller", out var caller)) scope.Set("caller", caller);
            evaluator._callDepth++;
            try
            {
                // A default names the macro's own parameters, not outer variables of the same name.
                foreach (var (parameter, _) in parameters) scope.Set(parameter, new Undefined($"'{parameter}' is undefined"));
                for (int i = 0; i < parameters.Count; i++)
                {
                    var (parameter, defaultValue) = parameters[i];
                    object? value = i < args.Count ? args[i]
                        : given.TryGetValue(parameter, out var named) ? named
                        : defaultValue != null ? evaluator.Evaluate(defaultValue, scope)
                        : new Undefined($"parameter '{parameter}' was not provided");
                    scope.Set(parameter, value);
                }
                evaluator.Capture(body, scope, out string text); // the parser allows no break or continue here
                return text;
            }
            finally
            {
                evaluator._callDepth--;
            }
        }
    }
}

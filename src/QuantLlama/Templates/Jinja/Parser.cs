using System.Runtime.CompilerServices;

namespace QuantLlama.Templates.Jinja;

/// <summary>Builds the syntax tree from the lexer's tokens, with jinja2's grammar and operator precedence.</summary>
internal sealed class Parser
{
    private readonly List<Token> _tokens;
    private readonly int _maxDepth;
    private int _pos;
    private int _depth;
    private bool _inLoop; // break and continue are allowed: inside a for body, not inside a macro or call body

    private Parser(List<Token> tokens, int maxDepth)
    {
        _tokens = tokens;
        _maxDepth = maxDepth;
    }

    public static List<Node> Parse(string source, JinjaOptions options)
    {
        var parser = new Parser(Lexer.Tokenize(source, options), options.MaxNestingDepth);
        var body = parser.ParseBody([], out _);
        foreach (var node in body) CheckNames(node, conditional: false);
        return body;
    }

    /// <summary>
    /// jinja2 rejects an unknown filter or test when it compiles the template, except inside an if statement or a
    /// conditional expression (the code may never run there, so it fails only when reached). A loop, macro or
    /// block body starts strict again.
    /// </summary>
    private static void CheckNames(Node node, bool conditional)
    {
        void All(IEnumerable<Node?> nodes, bool soft)
        {
            foreach (var n in nodes)
                if (n != null) CheckNames(n, soft);
        }
        RuntimeHelpers.EnsureSufficientExecutionStack();
        switch (node)
        {
            case FilterExpr f:
                if (!conditional && !Filters.Exists(f.Name)) throw new JinjaException($"line {f.Line}: No filter named '{f.Name}'.");
                All([f.Value, .. f.Args, .. f.Kwargs.Select(k => k.Value)], conditional);
                break;
            case TestExpr t:
                if (!conditional && !Tests.Exists(t.Name)) throw new JinjaException($"line {t.Line}: No test named '{t.Name}'.");
                All([t.Value, .. t.Args], conditional);
                break;
            case IfNode i:
                All(i.Branches.SelectMany(b => b.Body.Prepend(b.Condition)), true);
                All(i.Else ?? [], true);
                break;
            case ConditionalExpr c:
                All([c.Condition, c.Then, c.Else], true);
                break;
            case ForNode f:
                CheckNames(f.Iterable, conditional);
                All([f.Filter, .. f.Body, .. f.Else ?? []], false);
                break;
            case MacroNode m:
                All([.. m.Parameters.Select(p => p.Default), .. m.Body], false);
                break;
            case CallBlockNode c:
                CheckNames(c.Call, conditional);
                All([.. c.CallerParameters.Select(p => p.Default), .. c.Body], false);
                break;
            case SetBlockNode s:
                CheckFilterChain(s.Filters);
                All(s.Body, false);
                break;
            case FilterBlockNode f:
                CheckFilterChain(f.Filters);
                All(f.Body, false);
                break;
            case OutputNode o: CheckNames(o.Value, conditional); break;
            case SetNode s: CheckNames(s.Value, conditional); break;
            case ListExpr l: All(l.Items, conditional); break;
            case TupleExpr t: All(t.Items, conditional); break;
            case DictExpr d: All(d.Items.SelectMany(kv => new[] { kv.Key, kv.Value }), conditional); break;
            case AttributeExpr a: CheckNames(a.Object, conditional); break;
            case ItemExpr i: All([i.Object, i.Index], conditional); break;
            case SliceExpr s: All([s.Object, s.Start, s.Stop, s.Step], conditional); break;
            case CallExpr c: All([c.Callee, .. c.Args, .. c.Kwargs.Select(k => k.Value)], conditional); break;
            case UnaryExpr u: CheckNames(u.Operand, conditional); break;
            case BinaryExpr b: All([b.Left, b.Right], conditional); break;
            case CompareExpr c: All([c.First, .. c.Rest.Select(r => r.Operand)], conditional); break;
        }
    }

    private static void CheckFilterChain(List<(string Name, List<Expr> Args, List<(string, Expr)> Kwargs)> filters)
    {
        foreach (var (name, args, kwargs) in filters)
        {
            if (!Filters.Exists(name)) throw new JinjaException($"No filter named '{name}'.");
            foreach (var e in args.Concat(kwargs.Select(k => k.Item2))) CheckNames(e, false);
        }
    }

    private Token Current => _pos < _tokens.Count ? _tokens[_pos] : new Token(TokenKind.End, "", _tokens.Count > 0 ? _tokens[^1].Line : 1);

    private Token Next()
    {
        var t = Current;
        _pos++;
        return t;
    }

    private bool Is(TokenKind kind, string? text = null) => Current.Kind == kind && (text == null || Current.Text == text);

    private bool IsOperator(string text) => Is(TokenKind.Operator, text);

    private bool IsName(string text) => Is(TokenKind.Name, text);

    private bool Skip(TokenKind kind, string text)
    {
        if (!Is(kind, text)) return false;
        _pos++;
        return true;
    }

    private Token Expect(TokenKind kind, string? text = null)
    {
        if (!Is(kind, text))
            throw Error($"expected {(text != null ? $"'{text}'" : kind.ToString().ToLowerInvariant())}, got {Current}");
        return Next();
    }

    private string ExpectName() => Expect(TokenKind.Name).Text;

    private JinjaException Error(string message) => new($"line {Current.Line}: {message}");

    private void Enter()
    {
        if (++_depth > _maxDepth) throw Error($"template nested too deeply (more than {_maxDepth} levels)");
    }

    // ---- statements -------------------------------------------------------------------------------------------

    /// <summary>Parses nodes until a block tag whose name is one of <paramref name="endNames"/> (consumed up to its name).</summary>
    private List<Node> ParseBody(string[] endNames, out string? endedBy)
    {
        Enter();
        var nodes = new List<Node>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.End:
                    if (endNames.Length > 0) throw Error($"unexpected end of template, expected {string.Join(" or ", endNames.Select(n => $"'{n}'"))}");
                    endedBy = null;
                    _depth--;
                    return nodes;
                case TokenKind.Text:
                    nodes.Add(new TextNode(t.Line, t.Text));
                    _pos++;
                    break;
                case TokenKind.VariableBegin:
                    _pos++;
                    var value = ParseTupleOrExpression();
                    Expect(TokenKind.VariableEnd);
                    nodes.Add(new OutputNode(t.Line, value));
                    break;
                case TokenKind.BlockBegin:
                    _pos++;
                    var name = Current;
                    if (name.Kind == TokenKind.Name && endNames.Contains(name.Text))
                    {
                        _pos++;
                        endedBy = name.Text;
                        _depth--;
                        return nodes;
                    }
                    nodes.Add(ParseStatement());
                    break;
                default:
                    throw Error($"unexpected {t}");
            }
        }
    }

    private void EndTag() => Expect(TokenKind.BlockEnd);

    private Node ParseStatement()
    {
        var t = Current;
        if (t.Kind != TokenKind.Name) throw Error($"expected a tag name, got {t}");
        _pos++;
        switch (t.Text)
        {
            case "if": return ParseIf(t.Line);
            case "for": return ParseFor(t.Line);
            case "set": return ParseSet(t.Line);
            case "macro": return ParseMacro(t.Line);
            case "call": return ParseCallBlock(t.Line);
            case "filter":
            {
                var filters = ParseFilterChain();
                EndTag();
                var body = ParseBody(["endfilter"], out _);
                EndTag();
                return new FilterBlockNode(t.Line, filters, body);
            }
            case "break":
            case "continue":
                if (!_inLoop) throw new JinjaException($"line {t.Line}: '{t.Text}' outside a loop");
                EndTag();
                return t.Text == "break" ? new BreakNode(t.Line) : new ContinueNode(t.Line);
            default:
                throw new JinjaException($"line {t.Line}: unknown tag '{t.Text}'");
        }
    }

    private IfNode ParseIf(int line)
    {
        var branches = new List<(Expr, List<Node>)>();
        List<Node>? elseBody = null;
        var condition = ParseCondition();
        while (true)
        {
            EndTag();
            var body = ParseBody(["elif", "else", "endif"], out string? endedBy);
            branches.Add((condition, body));
            if (endedBy == "elif")
            {
                condition = ParseCondition();
                continue;
            }
            if (endedBy == "else")
            {
                EndTag();
                elseBody = ParseBody(["endif"], out _);
            }
            EndTag();
            return new IfNode(line, branches, elseBody);
        }
    }

    private ForNode ParseFor(int line)
    {
        var target = ParseAssignTarget(allowAttribute: false);
        Expect(TokenKind.Name, "in");
        var iterable = ParseOr(); // jinja2 stops the iterable before 'if', which starts the filter
        if (IsOperator(","))
        {
            var items = new List<Expr> { iterable };
            while (Skip(TokenKind.Operator, ",") && !IsName("if") && !Is(TokenKind.BlockEnd)) items.Add(ParseOr());
            iterable = new TupleExpr(line, items);
        }
        Expr? filter = null;
        if (Skip(TokenKind.Name, "if")) filter = ParseExpression();
        if (Skip(TokenKind.Name, "recursive")) throw Error("recursive loops are not supported");
        EndTag();
        bool outerInLoop = _inLoop;
        _inLoop = true;
        var body = ParseBody(["else", "endfor"], out string? endedBy);
        _inLoop = outerInLoop;
        List<Node>? elseBody = null;
        if (endedBy == "else")
        {
            EndTag();
            elseBody = ParseBody(["endfor"], out _);
        }
        EndTag();
        return new ForNode(line, target, iterable, filter, body, elseBody);
    }

    private Target ParseAssignTarget(bool allowAttribute)
    {
        string first = ExpectName();
        if (allowAttribute && Skip(TokenKind.Operator, "."))
            return new AttributeTarget(first, ExpectName());
        if (!IsOperator(",")) return new NameTarget(first);
        var names = new List<string> { first };
        while (Skip(TokenKind.Operator, ","))
        {
            if (!Is(TokenKind.Name) || IsName("in")) break;
            names.Add(ExpectName());
        }
        return new TupleTarget(names);
    }

    private Node ParseSet(int line)
    {
        bool parenthesized = Skip(TokenKind.Operator, "(");
        var target = ParseAssignTarget(allowAttribute: !parenthesized);
        if (parenthesized) Expect(TokenKind.Operator, ")");
        if (Skip(TokenKind.Operator, "="))
        {
            var value = ParseTupleOrExpression();
            EndTag();
            return new SetNode(line, target, value);
        }
        var filters = IsOperator("|") ? ParseFilterChain() : [];
        EndTag();
        var body = ParseBody(["endset"], out _);
        EndTag();
        return new SetBlockNode(line, target, filters, body);
    }

    private List<(string Name, Expr? Default)> ParseParameters()
    {
        var parameters = new List<(string, Expr?)>();
        Expect(TokenKind.Operator, "(");
        while (!IsOperator(")"))
        {
            if (parameters.Count > 0) Expect(TokenKind.Operator, ",");
            if (IsOperator(")")) break;
            string name = ExpectName();
            Expr? defaultValue = Skip(TokenKind.Operator, "=") ? ParseExpression() : null;
            parameters.Add((name, defaultValue));
        }
        Expect(TokenKind.Operator, ")");
        return parameters;
    }

    private MacroNode ParseMacro(int line)
    {
        string name = ExpectName();
        var parameters = ParseParameters();
        EndTag();
        var body = ParseFunctionBody("endmacro");
        if (Is(TokenKind.Name)) _pos++; // {% endmacro name %}
        EndTag();
        return new MacroNode(line, name, parameters, body);
    }

    /// <summary>The body of a macro or call block: a function of its own, so a loop around it does not take break.</summary>
    private List<Node> ParseFunctionBody(string endName)
    {
        bool outerInLoop = _inLoop;
        _inLoop = false;
        var body = ParseBody([endName], out _);
        _inLoop = outerInLoop;
        return body;
    }

    private CallBlockNode ParseCallBlock(int line)
    {
        var callerParameters = IsOperator("(") ? ParseParameters() : [];
        var call = ParseExpression() as CallExpr ?? throw Error("expected a macro call after 'call'");
        EndTag();
        var body = ParseFunctionBody("endcall");
        EndTag();
        return new CallBlockNode(line, call, callerParameters, body);
    }

    private List<(string Name, List<Expr> Args, List<(string, Expr)> Kwargs)> ParseFilterChain()
    {
        var filters = new List<(string, List<Expr>, List<(string, Expr)>)>();
        do
        {
            string name = ParseDottedName();
            var args = new List<Expr>();
            var kwargs = new List<(string, Expr)>();
            if (IsOperator("(")) ParseArguments(args, kwargs);
            filters.Add((name, args, kwargs));
        } while (Skip(TokenKind.Operator, "|"));
        return filters;
    }

    private string ParseDottedName()
    {
        string name = ExpectName();
        while (Skip(TokenKind.Operator, ".")) name += "." + ExpectName();
        return name;
    }

    // ---- expressions ------------------------------------------------------------------------------------------

    /// <summary>An expression, or a tuple of them written without parentheses (`a, b`).</summary>
    private Expr ParseTupleOrExpression()
    {
        int line = Current.Line;
        var first = ParseExpression();
        if (!IsOperator(",")) return first;
        var items = new List<Expr> { first };
        while (Skip(TokenKind.Operator, ",") && !Is(TokenKind.BlockEnd) && !Is(TokenKind.VariableEnd)) items.Add(ParseExpression());
        return new TupleExpr(line, items);
    }

    private Expr ParseExpression()
    {
        Enter();
        var expr = ParseConditional();
        _depth--;
        return expr;
    }

    /// <summary>The test of if/elif: jinja2 allows no inline `x if c else y` there, but a tuple (`if a, b`).</summary>
    private Expr ParseCondition()
    {
        Enter();
        int line = Current.Line;
        var expr = ParseOr();
        if (IsOperator(","))
        {
            var items = new List<Expr> { expr };
            while (Skip(TokenKind.Operator, ",") && !Is(TokenKind.BlockEnd)) items.Add(ParseOr());
            expr = new TupleExpr(line, items);
        }
        _depth--;
        return expr;
    }

    private Expr ParseConditional()
    {
        var expr = ParseOr();
        while (Skip(TokenKind.Name, "if"))
        {
            var condition = ParseOr();
            Expr? otherwise = Skip(TokenKind.Name, "else") ? ParseConditional() : null;
            expr = new ConditionalExpr(expr.Line, condition, expr, otherwise);
        }
        return expr;
    }

    /// <summary>A left-associative chain `operand (operator operand)*` of one precedence level.</summary>
    private Expr ParseBinary(Func<Expr> operand, params string[] operators)
    {
        var left = operand();
        while (Current.Kind is TokenKind.Operator or TokenKind.Name && operators.Contains(Current.Text))
        {
            var op = Next();
            left = new BinaryExpr(op.Line, op.Text, left, operand());
        }
        return left;
    }

    private Expr ParseOr() => ParseBinary(ParseAnd, "or");

    private Expr ParseAnd() => ParseBinary(ParseNot, "and");

    private Expr ParseNot()
    {
        if (IsName("not"))
        {
            int line = Next().Line;
            Enter();
            var operand = ParseNot();
            _depth--;
            return new UnaryExpr(line, "not", operand);
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && Current.Text is "==" or "!=" or "<" or "<=" or ">" or ">=")
                rest.Add((Next().Text, ParseMath1()));
            else if (IsName("in"))
            {
                _pos++;
                rest.Add(("in", ParseMath1()));
            }
            else if (IsName("not") && _pos + 1 < _tokens.Count && _tokens[_pos + 1] is { Kind: TokenKind.Name, Text: "in" })
            {
                _pos += 2;
                rest.Add(("not in", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first.Line, first, rest);
    }

    private Expr ParseMath1() => ParseBinary(ParseConcat, "+", "-");

    private Expr ParseConcat() => ParseBinary(ParseMath2, "~");

    private Expr ParseMath2() => ParseBinary(ParsePow, "*", "/", "//", "%");

    private Expr ParsePow() => ParseBinary(() => ParseUnary(withFilter: true), "**");

    private Expr ParseUnary(bool withFilter)
    {
        Expr node;
        if (Current.Kind == TokenKind.Operator && Current.Text is "-" or "+")
        {
            var op = Next();
            Enter();
            node = new UnaryExpr(op.Line, op.Text, ParseUnary(withFilter: false));
            _depth--;
        }
        else
        {
            node = ParsePostfix(ParsePrimary());
        }
        return withFilter ? ParseFiltersAndTests(node) : node;
    }

    private Expr ParsePrimary()
    {
        var t = Next();
        switch (t.Kind)
        {
            case TokenKind.Name:
                return t.Text switch
                {
                    "true" or "True" => new LiteralExpr(t.Line, true),
                    "false" or "False" => new LiteralExpr(t.Line, false),
                    "none" or "None" => new LiteralExpr(t.Line, null),
                    _ => new NameExpr(t.Line, t.Text),
                };
            case TokenKind.String:
            {
                string s = (string)t.Value!;
                while (Is(TokenKind.String)) s += (string)Next().Value!;
                return new LiteralExpr(t.Line, s);
            }
            case TokenKind.Integer:
            case TokenKind.Float:
                return new LiteralExpr(t.Line, t.Value);
            case TokenKind.Operator when t.Text == "(":
            {
                Enter();
                if (Skip(TokenKind.Operator, ")"))
                {
                    _depth--;
                    return new TupleExpr(t.Line, []);
                }
                var first = ParseExpression();
                if (Skip(TokenKind.Operator, ")"))
                {
                    _depth--;
                    return first;
                }
                var items = new List<Expr> { first };
                while (Skip(TokenKind.Operator, ",") && !IsOperator(")")) items.Add(ParseExpression());
                Expect(TokenKind.Operator, ")");
                _depth--;
                return new TupleExpr(t.Line, items);
            }
            case TokenKind.Operator when t.Text == "[":
            {
                Enter();
                var items = new List<Expr>();
                while (!IsOperator("]"))
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    if (IsOperator("]")) break;
                    items.Add(ParseExpression());
                }
                Expect(TokenKind.Operator, "]");
                _depth--;
                return new ListExpr(t.Line, items);
            }
            case TokenKind.Operator when t.Text == "{":
            {
                Enter();
                var items = new List<(Expr, Expr)>();
                while (!IsOperator("}"))
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    if (IsOperator("}")) break;
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    items.Add((key, ParseExpression()));
                }
                Expect(TokenKind.Operator, "}");
                _depth--;
                return new DictExpr(t.Line, items);
            }
            default:
                _pos--;
                throw Error($"unexpected {t}");
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            if (IsOperator("."))
            {
                int line = Next().Line;
                var t = Next();
                if (t.Kind == TokenKind.Name) node = new AttributeExpr(line, node, t.Text);
                else if (t.Kind == TokenKind.Integer) node = new ItemExpr(line, node, new LiteralExpr(line, t.Value));
                else
                {
                    _pos--;
                    throw Error($"expected an attribute name after '.', got {t}");
                }
            }
            else if (IsOperator("["))
            {
                node = ParseSubscript(node);
            }
            else if (IsOperator("("))
            {
                node = ParseCall(node);
            }
            else return node;
        }
    }

    private Expr ParseSubscript(Expr node)
    {
        int line = Next().Line;
        Enter();
        Expr? start = null, stop = null, step = null;
        if (!IsOperator(":") && !IsOperator("]")) start = ParseExpression();
        if (Skip(TokenKind.Operator, ":"))
        {
            if (!IsOperator("]") && !IsOperator(":")) stop = ParseExpression();
            if (Skip(TokenKind.Operator, ":") && !IsOperator("]")) step = ParseExpression();
            Expect(TokenKind.Operator, "]");
            _depth--;
            return new SliceExpr(line, node, start, stop, step);
        }
        // x[a, b] indexes with a tuple, and x[] with the empty tuple, as jinja2 parses them.
        var items = start == null ? [] : new List<Expr> { start };
        bool isTuple = start == null;
        while (start != null && Skip(TokenKind.Operator, ","))
        {
            isTuple = true;
            if (IsOperator("]")) break;
            items.Add(ParseExpression());
        }
        Expect(TokenKind.Operator, "]");
        _depth--;
        return new ItemExpr(line, node, isTuple ? new TupleExpr(line, items) : start!);
    }

    private CallExpr ParseCall(Expr callee)
    {
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        ParseArguments(args, kwargs);
        return new CallExpr(callee.Line, callee, args, kwargs);
    }

    private void ParseArguments(List<Expr> args, List<(string, Expr)> kwargs)
    {
        Expect(TokenKind.Operator, "(");
        Enter();
        while (!IsOperator(")"))
        {
            if (args.Count + kwargs.Count > 0) Expect(TokenKind.Operator, ",");
            if (IsOperator(")")) break;
            if (Is(TokenKind.Name) && _pos + 1 < _tokens.Count && _tokens[_pos + 1] is { Kind: TokenKind.Operator, Text: "=" })
            {
                string name = Next().Text;
                _pos++;
                kwargs.Add((name, ParseExpression()));
            }
            else
            {
                if (kwargs.Count > 0) throw Error("positional argument after keyword argument");
                args.Add(ParseExpression());
            }
        }
        Expect(TokenKind.Operator, ")");
        _depth--;
    }

    private Expr ParseFiltersAndTests(Expr node)
    {
        while (true)
        {
            if (IsOperator("|"))
            {
                int line = Next().Line;
                string name = ParseDottedName();
                var args = new List<Expr>();
                var kwargs = new List<(string, Expr)>();
                if (IsOperator("(")) ParseArguments(args, kwargs);
                node = new FilterExpr(line, node, name, args, kwargs);
            }
            else if (IsOperator("("))
            {
                node = ParseCall(node); // `x | f (y)` calls what the filter returned; `.` and `[` may not follow a filter
            }
            else if (IsName("is"))
            {
                int line = Next().Line;
                bool negated = Skip(TokenKind.Name, "not");
                string name = ParseDottedName();
                var args = new List<Expr>();
                if (IsOperator("("))
                {
                    var kwargs = new List<(string, Expr)>();
                    ParseArguments(args, kwargs);
                    if (kwargs.Count > 0) throw Error("tests take no keyword arguments");
                }
                else if (StartsTestArgument())
                {
                    args.Add(ParsePostfix(ParsePrimary()));
                }
                node = new TestExpr(line, node, name, args, negated);
            }
            else return node;
        }
    }

    /// <summary>`x is divisibleby 3`: a test takes one argument without parentheses when a primary follows.</summary>
    private bool StartsTestArgument() => Current.Kind switch
    {
        TokenKind.String or TokenKind.Integer or TokenKind.Float => true,
        TokenKind.Name => Current.Text is not ("else" or "or" or "and" or "is" or "in" or "not" or "if"),
        TokenKind.Operator => Current.Text is "[" or "{",
        _ => false,
    };
}

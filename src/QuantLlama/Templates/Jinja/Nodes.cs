namespace QuantLlama.Templates.Jinja;

// The syntax tree. Every node keeps the line it starts on for error messages.

internal abstract record Node(int Line);

// ---- statements -------------------------------------------------------------------------------------------------

internal sealed record TextNode(int Line, string Text) : Node(Line);

internal sealed record OutputNode(int Line, Expr Value) : Node(Line);

internal sealed record IfNode(int Line, List<(Expr Condition, List<Node> Body)> Branches, List<Node>? Else) : Node(Line);

internal sealed record ForNode(int Line, Target Target, Expr Iterable, Expr? Filter, List<Node> Body, List<Node>? Else) : Node(Line);

internal sealed record SetNode(int Line, Target Target, Expr Value) : Node(Line);

internal sealed record SetBlockNode(int Line, Target Target, List<(string Name, List<Expr> Args, List<(string, Expr)> Kwargs)> Filters, List<Node> Body) : Node(Line);

internal sealed record MacroNode(int Line, string Name, List<(string Name, Expr? Default)> Parameters, List<Node> Body) : Node(Line);

internal sealed record CallBlockNode(int Line, CallExpr Call, List<(string Name, Expr? Default)> CallerParameters, List<Node> Body) : Node(Line);

internal sealed record FilterBlockNode(int Line, List<(string Name, List<Expr> Args, List<(string, Expr)> Kwargs)> Filters, List<Node> Body) : Node(Line);

internal sealed record BreakNode(int Line) : Node(Line);

internal sealed record ContinueNode(int Line) : Node(Line);

/// <summary>What set and for assign to: a name, names unpacked from a tuple, or a namespace attribute.</summary>
internal abstract record Target;

internal sealed record NameTarget(string Name) : Target;

internal sealed record TupleTarget(List<string> Names) : Target;

internal sealed record AttributeTarget(string Object, string Attribute) : Target;

// ---- expressions ------------------------------------------------------------------------------------------------

internal abstract record Expr(int Line) : Node(Line);

internal sealed record LiteralExpr(int Line, object? Value) : Expr(Line);

internal sealed record NameExpr(int Line, string Name) : Expr(Line);

internal sealed record ListExpr(int Line, List<Expr> Items) : Expr(Line);

internal sealed record TupleExpr(int Line, List<Expr> Items) : Expr(Line);

internal sealed record DictExpr(int Line, List<(Expr Key, Expr Value)> Items) : Expr(Line);

internal sealed record AttributeExpr(int Line, Expr Object, string Name) : Expr(Line);

internal sealed record ItemExpr(int Line, Expr Object, Expr Index) : Expr(Line);

internal sealed record SliceExpr(int Line, Expr Object, Expr? Start, Expr? Stop, Expr? Step) : Expr(Line);

internal sealed record CallExpr(int Line, Expr Callee, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr(Line);

internal sealed record FilterExpr(int Line, Expr Value, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr(Line);

internal sealed record TestExpr(int Line, Expr Value, string Name, List<Expr> Args, bool Negated) : Expr(Line);

internal sealed record UnaryExpr(int Line, string Operator, Expr Operand) : Expr(Line);

internal sealed record BinaryExpr(int Line, string Operator, Expr Left, Expr Right) : Expr(Line);

internal sealed record CompareExpr(int Line, Expr First, List<(string Operator, Expr Operand)> Rest) : Expr(Line);

internal sealed record ConditionalExpr(int Line, Expr Condition, Expr Then, Expr? Else) : Expr(Line);

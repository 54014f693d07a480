using System.Text;
using System.Text.Json;
using QuantLlama.Templates;
using QuantLlama.Templates.Jinja;

namespace QuantLlama.Tests.Templates;

/// <summary>
/// Templates come from downloaded files: whatever they do, Parse and Render stop at one of the engine's counted
/// limits (output, work, loop iterations, call depth, nesting), and only with a JinjaException (never a hang, a
/// stack overflow, running out of memory, or another exception type).
/// </summary>
public class JinjaHostileTemplateTests
{
    private static JinjaException FailsFast(string source, JinjaOptions? options = null)
    {
        var e = Assert.Throws<JinjaException>(() =>
            JinjaTemplate.Parse(source, options).Render(new Dictionary<string, object?> { ["messages"] = new List<object?>() }));
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain("internal error", e.Message);
        return e;
    }

    public static TheoryData<string, string> Hostile() => new()
    {
        { "infinite macro recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}" },
        { "mutual macro recursion", "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}" },
        { "huge range", "{% for i in range(10**9) %}x{% endfor %}" },
        { "nested loops multiplying", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}" },
        { "string repetition", "{{ 'a' * 10**9 }}" },
        { "list repetition", "{{ [1, 2] * 10**9 }}" },
        { "string doubling", "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}" },
        { "list doubling", "{% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}{% endfor %}" },
        { "output over the limit", "{% set s = 'a' * 1000000 %}{% for i in range(100) %}{{ s }}{% endfor %}" },
        { "work over the limit", "{% set s = 'a' * 1000000 %}{% for i in range(1000) %}{% set t = s ~ i %}{% endfor %}" },
        { "replace blow-up", "{% set ns = namespace(s='aa') %}{% for i in range(60) %}{% set ns.s = ns.s.replace('a', 'aa') %}{% endfor %}" },
        { "appending forever", "{% set l = [] %}{% for i in range(10**6) %}{% for j in range(10) %}{% set _ = l.append(j) %}{% endfor %}{% endfor %}" },
        { "integer overflow", "{{ 10 ** 100 }}" },
        { "nested parentheses", "{{ " + new string('(', 10000) + "1" + new string(')', 10000) + " }}" },
        { "nested brackets", "{{ " + new string('[', 10000) + new string(']', 10000) + " }}" },
        { "nested dicts", "{{ " + string.Concat(Enumerable.Repeat("{'a': ", 5000)) + "1" + new string('}', 5000) + " }}" },
        { "nested not", "{{ " + string.Concat(Enumerable.Repeat("not ", 10000)) + "1 }}" },
        { "nested minus", "{{ " + new string('-', 10000) + "1 }}" },
        { "nested ifs", string.Concat(Enumerable.Repeat("{% if true %}", 10000)) + string.Concat(Enumerable.Repeat("{% endif %}", 10000)) },
        { "long operator chain", "{{ " + string.Join(" + ", Enumerable.Repeat("1", 200000)) + " }}" },
        { "long filter chain", "{{ 'a'" + string.Concat(Enumerable.Repeat("|upper", 200000)) + " }}" },
        { "deeply nested values compared", "{% set ns = namespace(a=1, b=1) %}{% for i in range(200000) %}{% set ns.a = [ns.a] %}{% set ns.b = [ns.b] %}{% endfor %}{{ ns.a == ns.b }}" },
        { "deeply nested value printed", "{% set ns = namespace(a=1) %}{% for i in range(200000) %}{% set ns.a = [ns.a] %}{% endfor %}{{ ns.a }}" },
        { "deeply nested value to json", "{% set ns = namespace(a=1) %}{% for i in range(200000) %}{% set ns.a = [ns.a] %}{% endfor %}{{ ns.a | tojson }}" },
        { "unterminated variable", "{{ x " },
        { "unterminated block", "{% if x " },
        { "unterminated comment", "{# x " },
        { "unterminated string", "{{ 'abc }}" },
        { "missing endif", "{% if x %}a" },
        { "missing endfor", "{% for x in y %}a" },
        { "stray endfor", "a{% endfor %}" },
        { "unknown tag", "{% frobnicate %}" },
        { "unknown filter", "{{ 1 | frobnicate }}" },
        { "calling a private attribute", "{{ ''.__class__() }}" },
        { "calling GetType", "{{ 'a'.GetType() }}" },
        { "division by zero", "{{ 1 // 0 }}" },
        { "undefined arithmetic", "{{ nothing + 1 }}" },
        { "break outside a loop", "{% break %}" },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void FailsFastWithAJinjaException(string what, string source)
    {
        Assert.NotEmpty(what);
        FailsFast(source);
    }

    [Theory]
    [InlineData("{{ x.__class__ }}{{ ''.__class__ }}{{ [].GetType }}{{ {}.items.__self__ }}{{ messages.__len__ }}{{ 'a'.Length }}")]
    [InlineData("{{ messages.GetType is defined }}{{ ''.ToString is defined }}{{ ''.__class__.__mro__ is defined }}")]
    public void DotNetAndPrivateMembersAreUndefined(string source)
    {
        string text = JinjaTemplate.Parse(source).Render(new Dictionary<string, object?> { ["messages"] = new List<object?>() });
        Assert.DoesNotContain("True", text);
        Assert.DoesNotContain("System", text);
    }

    [Fact]
    public void LimitsAreConfigurable()
    {
        var small = new JinjaOptions { MaxOutputChars = 10 };
        Assert.Contains("limit", FailsFast("{{ 'a' * 11 }}", small).Message);
        Assert.Equal("aaaaaaaaaa", JinjaTemplate.Parse("{{ 'a' * 10 }}", small).Render(new Dictionary<string, object?>()));
        FailsFast("{% for i in range(5) %}{% endfor %}", new JinjaOptions { MaxLoopIterations = 4 });
        FailsFast("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}", new JinjaOptions { MaxCallDepth = 5 });
    }

    /// <summary>
    /// Each real template, mutated at random (a fixed seed) by deleting, duplicating, swapping or inserting
    /// characters and template tokens: Parse and Render either succeed or fail with a JinjaException.
    /// </summary>
    [Fact]
    public void MutatedTemplatesFailOnlyWithJinjaException()
    {
        string[] fragments = ["{%", "%}", "{{", "}}", "{#", "#}", "-", "(", ")", "[", "]", "{", "}", "|", "'", "\"", ",", ".", ":", "=",
            " if ", " endif ", " for ", " endfor ", " in ", " not ", " is ", " else ", " set ", " macro ", " loop ", " and ", " ~ ", "*", "**",
            "//", "%", "0", "-1", "none", "messages", "message", "tojson", "join", "[::-1]", "[1:]", "\n", " "];
        var cases = JsonDocument.Parse(File.ReadAllText(Path.Combine(ChatTemplateCorpusTests.Root, "cases.json"))).RootElement;
        var conversation = cases.EnumerateArray().First(c => c.GetProperty("name").GetString() == "multi_turn");
        var tools = cases.EnumerateArray().First(c => c.TryGetProperty("tools", out _)).GetProperty("tools");
        var options = ChatTemplateCorpusTests.Options with { MaxLoopIterations = 20_000, MaxOutputChars = 200_000, MaxWorkChars = 2_000_000 };
        var random = new Random(20260115);
        int rendered = 0, failed = 0;
        foreach (var name in ChatTemplateCorpusTests.TemplateNames)
        {
            string source = File.ReadAllText(Path.Combine(ChatTemplateCorpusTests.Root, "templates", name + ".jinja"), Encoding.UTF8);
            for (int trial = 0; trial < 80; trial++)
            {
                var text = new StringBuilder(source);
                int mutations = 1 + random.Next(3);
                for (int m = 0; m < mutations && text.Length > 2; m++)
                {
                    int at = random.Next(text.Length);
                    int span = Math.Min(1 + random.Next(random.Next(2) == 0 ? 1 : 12), text.Length - at);
                    switch (random.Next(5))
                    {
                        case 0: text.Remove(at, span); break;
                        case 1: text.Insert(at, text.ToString(at, span)); break;
                        case 2:
                        {
                            int other = random.Next(text.Length - span + 1);
                            string a = text.ToString(at, span);
                            text.Remove(at, span).Insert(at, text.ToString(Math.Min(other, text.Length - span), span));
                            text.Remove(Math.Min(other, text.Length - span), span).Insert(Math.Min(other, text.Length - span), a);
                            break;
                        }
                        default: text.Insert(at, fragments[random.Next(fragments.Length)]); break;
                    }
                }
                string mutated = text.ToString();
                try
                {
                    ChatTemplateRenderer.Render(JinjaTemplate.Parse(mutated, options), conversation.GetProperty("messages"), true, "<s>", "</s>",
                        random.Next(2) == 0 ? tools : null);
                    rendered++;
                }
                catch (JinjaException e)
                {
                    Assert.False(e.Message.StartsWith("internal error", StringComparison.Ordinal), $"{name} trial {trial}: {e.Message}\n{mutated}");
                    Assert.DoesNotContain('\n', e.Message);
                    failed++;
                }
            }
        }
        Assert.True(rendered > 0 && failed > 0, $"rendered {rendered}, failed {failed}");
    }
}

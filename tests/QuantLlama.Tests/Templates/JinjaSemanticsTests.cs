using QuantLlama.Templates.Jinja;

namespace QuantLlama.Tests.Templates;

/// <summary>
/// Expression and statement semantics. The expected texts are what Python's jinja2 3.1.6 renders for the same
/// template with Hugging Face's settings (trim_blocks, lstrip_blocks, loopcontrols, the tojson filter of the
/// chat-templates README, a clock at 2026-01-15 10:00:00).
/// </summary>
public class JinjaSemanticsTests
{
    internal static JinjaOptions Options { get; } = new() { Clock = () => new DateTime(2026, 1, 15, 10, 0, 0) };

    internal static string Render(string source, IReadOnlyDictionary<string, object?>? variables = null)
        => JinjaTemplate.Parse(source, Options).Render(variables ?? new Dictionary<string, object?>());

    [Theory]
    [InlineData("{% for x in [1, 2, 3] %}{{ loop.index0 }}{{ loop.index }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", "0132TrueFalse3|1221FalseFalse3|2310FalseTrue3|")]
    [InlineData("{% for x in 'abc' %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}", "-b,a-c,b-,")]
    [InlineData("{% for x in [] %}a{% else %}empty{% endfor %}", "empty")]
    [InlineData("{% for x in range(10) if x is odd %}{{ x }}{{ loop.last }} {% endfor %}", "1False 3False 5False 7False 9True ")]
    [InlineData("{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "b=1;a=2;")]
    [InlineData("{% for x in range(10) %}{% if x == 5 %}{% break %}{% endif %}{% if x is even %}{% continue %}{% endif %}{{ x }}{% endfor %}", "13")]
    [InlineData("{% set ns = namespace(count=0, found=false) %}{% for x in range(4) %}{% set ns.count = ns.count + x %}{% endfor %}{{ ns.count }} {{ ns.found }}", "6 False")]
    [InlineData("{% set x = 1 %}{% for i in range(3) %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}", "2221")]
    [InlineData("{% set x %}a {{ 1 + 1 }} b{% endset %}[{{ x }}]", "[a 2 b]")]
    [InlineData("{% macro greet(name, greeting='Hi') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Ann', greeting='Yo') }}", "Hi, Bob! Yo, Ann!")]
    [InlineData("{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner{% endcall %}", "<inner>")]
    [InlineData("{% filter upper %}hello {{ 'world' }}{% endfilter %}", "HELLO WORLD")]
    [InlineData("{{ [1, 2, 3, 4][::-1] }} {{ 'hello'[1:] }} {{ 'hello'[:-2] }} {{ [1,2,3,4,5][1::2] }} {{ 'abc'[-1] }}", "[4, 3, 2, 1] ello hel [2, 4] c")]
    [InlineData("{{ 1 == 1.0 }} {{ True == 1 }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ none is none }}", "True True True True True True")]
    [InlineData("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}", "3 -4 -2 2 3.5 2.0 1024 0.5 3.0 0.5")]
    [InlineData("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 100.0 }} {{ 1e16 }} {{ 123456789012345.6 }} {{ -0.0 }} {{ 3 * 1.0 }}", "1.0 0.30000000000000004 1e+20 1.5e-07 100.0 1e+16 123456789012345.6 -0.0 3.0")]
    [InlineData("{{ none }} {{ true }} {{ [1, 'a', none, true, 1.5] }} {{ {'a': [1, (2, 3)], 'b': none} }} {{ (1,) }} {{ \"it's\" }}", "None True [1, 'a', None, True, 1.5] {'a': [1, (2, 3)], 'b': None} (1,) it's")]
    [InlineData("{{ {'a': 1, 'b': [1, 2.5, true, none, 'x\"y\\n']} | tojson }}", "{\"a\": 1, \"b\": [1, 2.5, true, null, \"x\\\"y\\n\"]}")]
    [InlineData("{{ {'a': 1, 'b': [1, {'c': []}, {}]} | tojson(indent=2) }}", "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    {\n      \"c\": []\n    },\n    {}\n  ]\n}")]
    [InlineData("{{ 'héllo 😀\\u001b\\t' | tojson }}", "\"héllo 😀\\u001b\\t\"")]
    [InlineData("{{ undefined_thing }}|{{ undefined_thing is defined }}|{{ undefined_thing is undefined }}|{% for x in undefined_thing %}x{% endfor %}|{{ undefined_thing | length }}", "|False|True||0")]
    [InlineData("{{ missing ~ 'x' }}", "x")]
    [InlineData("{% set d = {'a': 1} %}{{ d.b }}|{{ d['b'] is defined }}|{{ d.a }}|{{ d['a'] }}", "|False|1|1")]
    [InlineData("{{ '  hi  ' | trim }}|{{ 'a,b,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'xxhixx'.strip('x') }}|{{ 'hello'.startswith(('he', 'x')) }}", "hi|['a', 'b', 'c']|['a', 'b']|['a', 'b,c']|hi|True")]
    [InlineData("{{ 'hello world' | title }} {{ 'hELLO' | capitalize }} {{ 'Hello' | upper }} {{ 'Hello' | lower }} {{ 'aaa' | replace('a', 'b', 2) }}", "Hello World Hello HELLO hello bba")]
    [InlineData("{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'A', 'c'] | sort }} {{ [1, 2, 2, 3, 1] | unique | list }} {{ [1, 2, 3] | reverse | list }}", "[1, 2, 3] [3, 2, 1] ['A', 'b', 'c'] [1, 2, 3] [3, 2, 1]")]
    [InlineData("{{ [{'n': 'a'}, {'n': 'b'}] | map(attribute='n') | join(', ') }} {{ ['a', 'b'] | map('upper') | list }}", "a, b ['A', 'B']")]
    [InlineData("{{ [{'r': 'user'}, {'r': 'bot'}] | selectattr('r', 'equalto', 'user') | list }} {{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('odd') | list }}", "[{'r': 'user'}] [1, 3] [2, 4]")]
    [InlineData("{{ [1, 2] | first }} {{ [1, 2] | last }} {{ 'abc' | length }} {{ {'a': 1} | list }} {{ none | default('d') }} {{ '' | default('d', true) }} {{ missing | d('x') }}", "1 2 3 ['a'] None d x")]
    [InlineData("{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ '2.5' | float }} {{ -3 | abs }} {{ 2.5 | round }} {{ 2.567 | round(2) }} {{ 3 | string }} {{ 1.0 | int }}", "42 4 0 2.5 3 2.0 2.57 3 1")]
    [InlineData("{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}", "a\n  b\n\n  c|  a\n  b")]
    [InlineData("{{ '<a & \"b\">' | e }} {{ 'one two  three' | wordcount }} {{ {'b': 2, 'a': 1} | dictsort }} {{ [1, 2, 3, 4, 5] | batch(2) | list }}", "&lt;a &amp; &#34;b&#34;&gt; 3 [('a', 1), ('b', 2)] [[1, 2], [3, 4], [5]]")]
    [InlineData("{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 1 < 2 < 3 }} {{ 'b' > 'a' }}", "True True True True True True")]
    [InlineData("{{ 'x' if false }}|{{ 'y' if true else 'z' }}|{{ not 1 }}|{{ 1 and 'a' }}|{{ 0 or '' or 'b' }}", "|y|False|a|b")]
    [InlineData("{{ 'ab' * 3 }} {{ [1] * 3 }} {{ 'a' ~ 1 ~ none ~ true }} {{ [1] + [2] }} {{ 'a' + 'b' }}", "ababab [1, 1, 1] a1NoneTrue [1, 2] ab")]
    [InlineData("{{ range(5) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }}", "[0, 1, 2, 3, 4] [1, 4, 7] [5, 3, 1]")]
    [InlineData("{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M:%S %A %B') }}", "15 Jan 2026 2026-01-15 10:00:00 Thursday January")]
    [InlineData("{% set d = dict(a=1, b=2) %}{{ d }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('z', 5) }} {{ d.get('a') }}", "{'a': 1, 'b': 2} ['a', 'b'] [1, 2] 5 1")]
    [InlineData("{{ 'x={} y={}'.format(1, 'b') }} {{ 'hello'.find('l') }} {{ 'hello'.count('l') }} {{ 'a-b'.replace('-', '+') }}", "x=1 y=b 2 2 a+b")]
    [InlineData("{{ 5 is divisibleby 5 }} {{ 3 is odd }} {{ 'a' is string }} {{ [1] is sequence }} {{ {} is mapping }} {{ 1 is number }} {{ 'a' is iterable }} {{ 1 is eq 1 }} {{ 2 is gt 1 }}", "True True True True True True True True True")]
    [InlineData("{%- if true -%}\n  a  \n{%- endif -%}\n  b {{- ' c ' -}} d\n{# comment #}\n  {% if true %}\n    e\n  {% endif %}\nf", "ab c d\n    e\nf")]
    [InlineData("{% raw %}{{ not rendered }}{% endraw %}", "{{ not rendered }}")]
    [InlineData("a\n  {%+ if true %}x{% endif +%}\nb", "a\n  x\nb")]
    [InlineData("{{ [1, 2, 3] | join }} {{ ['a', 'b'] | join('-') }} {{ [[1, 2], [3]] | map('length') | list }} {{ [{'a': {'b': 1}}] | map(attribute='a.b') | list }}", "123 a-b [2, 1] [1]")]
    [InlineData("{{ x.__class__ }}|{{ ''.__class__ }}|{{ [].GetType }}|{{ {}.items.__self__ }}", "|||")]
    [InlineData("{{ 'abc'.upper() }}{{ ('a', 'b')[0] }}{{ [1,2,3].index(2) }}", "ABCa1")]
    [InlineData("{{ 10 is sameas 10 }} {{ none is sameas none }} {{ -1 | abs }} {{ (1, 2) == [1, 2] }} {{ [1, 2] < [1, 3] }}", "True True 1 False True")]
    [InlineData("{{ '%s' }}{{ 1 if 2 }}{{ [] | first }}", "%s1")]
    [InlineData("{{ (1 + 2) * 3 - -1 }} {{ -2 ** 2 }} {{ 2 * 3 ** 2 }} {{ 10 - 2 - 3 }}", "10 4 18 5")]
    [InlineData("{{ 'a\\u00e9\\x41' }} {{ \"q\\\"q\" }} {{ 'tab\\there' | tojson }}", "aéA q\"q \"tab\\there\"")]
    [InlineData("{{ {'a': 1}['a'] }} {{ {'a': 1}.a }} {{ {'items': 5}['items'] }} {{ [1, 2][5] is defined }}", "1 1 5 False")]
    [InlineData("{% if false %}{{ x | nosuchfilter }}{% endif %}ok", "ok")]
    [InlineData("{{ x | nosuchfilter if false else 'ok' }}", "ok")]
    [InlineData("{% for i in [1] %}{% if false %}{{ i | nosuchfilter }}{% endif %}{% endfor %}ok", "ok")]
    [InlineData("{% if 1, 2 %}yes{% endif %}{{ 1, 'a' }}", "yes(1, 'a')")]
    [InlineData("{% set größe = 3 %}{{ größe }}", "3")]
    [InlineData("{{ {'b': 1, 'a': 'é'} | tojson(sort_keys=true, ensure_ascii=true) }} {{ [1, {'a': 2}] | tojson(separators=(',', ':')) }}", "{\"a\": \"\\u00e9\", \"b\": 1} [1,{\"a\":2}]")]
    [InlineData("{{ [3, 1] | sort(reverse=true, attribute=none) }}", "[3, 1]")]
    [InlineData("{{ [1, 2] | join('-', attribute=none) }}", "1-2")]
    [InlineData("{{ none.x }}|", "|")]
    [InlineData("{{ x is callable }} {{ 'ab' % x }}", "True ab")]
    [InlineData("{{ \"['hello', 'wORLD'] it's-x (y)\" | title }} {{ \"it's\".title() }} {{ {} | wordcount }} {{ 'a-b c_d' | wordcount }}", "['hello', 'world'] It's-X (Y) It'S 0 3")]
    [InlineData("{{ 3.5 is odd }} {{ 4.0 is even }} {{ 2.5 is divisibleby 2 }} {{ (1, 2) * 2 }} {{ 15 | round(-1) }} {{ 3 | round }} {{ 2.5 | round }}", "False True False (1, 2, 1, 2) 20 3 2.0")]
    [InlineData("{{ 0 | map('string') | list }} {{ none | select | list }} {{ [{'a': 1}] | map(attribute='b') | list }} {{ x is iterable }} {{ x is sequence }}", "[] [] [Undefined] True True")]
    [InlineData("a\n{% raw %}\n  {{ x }}\n  {% endraw %}\nb{%+ raw %}c{% endraw +%}\n", "a\n\n  {{ x }}\nbc")]
    [InlineData("{% for i in [1] %}\n  {{- i }}  \n  {%- endfor %}\n{# c -#}\n\t{% if true %}\n   y\n{%+ endif %}", "1   y\n")]
    [InlineData("{% for i in [1, 2] %}{{ i }}{% break %}{% else %}E{% endfor %}|{% for i in [1, 2] %}{{ i }}{% continue %}{% else %}E{% endfor %}|{% for i in [1, 2] %}{% if i == 2 %}{% continue %}{% endif %}{{ i }}{% else %}E{% endfor %}", "1E|12E|1")]
    [InlineData("{% set b = 1 %}{% set blk %}{% set b = 2 %}{{ b }}{% endset %}{{ blk }}{{ b }}{% macro m(a, b=b) %}[{{ b }}]{% endmacro %}{{ m(1) }}{% for i in [1] %}{% set x %}{% break %}{% endset %}no{% endfor %}{{ x is defined }}", "21[]False")]
    [InlineData("{{ {(1, 2): 'pair'}[1, 2] }}|{{ [1][] }}|", "pair||")]
    [InlineData("{{ '%s and %r' % ('a', 'b') }} {{ '%05.1f|%-4d|%x' % (3.14159, 7, 255) }} {{ '%(n)s=%(v)d' % {'n': 'x', 'v': 2} }} {{ '%d%%' % 50 }} {{ '%.3g' % 1234.5 }}", "a and 'b' 003.1|7   |ff x=2 50% 1.23e+03")]
    public void RendersAsJinja2(string source, string expected) => Assert.Equal(expected, Render(source));

    /// <summary>Where jinja2 raises, rendering fails with a JinjaException; the message names the problem as jinja2 does.</summary>
    [Theory]
    [InlineData("{{ missing + 1 }}", "'missing' is undefined")]
    [InlineData("{{ missing.attr }}", "'missing' is undefined")]
    [InlineData("{% set d = {'a': 1} %}{{ d.b.c }}", "'dict object' has no attribute 'b'")]
    [InlineData("{{ raise_exception('custom message') }}", "custom message")]
    [InlineData("{% if true %}{% for i in [1] %}{{ i | nosuchfilter }}{% endfor %}{% endif %}", "No filter named 'nosuchfilter'.")]
    [InlineData("{{ x | nosuchfilter }}", "No filter named 'nosuchfilter'.")]
    [InlineData("{% if true %}{{ 1 is nosuchtest }}{% endif %}", "No test named 'nosuchtest' found.")]
    [InlineData("{{ [1, 2] | tojson(int=4) }}", "tojson() got an unexpected keyword argument 'int'")]
    [InlineData("{{ 5 | indent(2) }}", "unsupported operand type(s) for +=: 'int' and 'str'")]
    [InlineData("{{ missing | int }}", "'missing' is undefined")]
    [InlineData("{{ [{'a': 1}, {'a': 1}] | unique | list }}", "unhashable type: 'dict'")]
    [InlineData("{{ 0 ** -1 }}", "0.0 cannot be raised to a negative power")]
    [InlineData("{{ '%s %s' % ('a',) }}", "not enough arguments for format string")]
    [InlineData("{{ '%s' % ('a', 'b') }}", "not all arguments converted during string formatting")]
    public void FailsAsJinja2(string source, string message)
    {
        string actual = Assert.Throws<JinjaException>(() => Render(source)).Message;
        // A syntax error names its line first.
        Assert.True(actual == message || actual.EndsWith(": " + message, StringComparison.Ordinal), actual);
    }

    /// <summary>Where jinja2 raises with Python's own wording, only the failure itself is required.</summary>
    [Theory]
    [InlineData("{{ 'abc' | trim('a', 'b') }}")]
    [InlineData("{{ 1 + 'a' }}")]
    [InlineData("{{ [1, 2] < 'a' }}")]
    [InlineData("{% for a, b in [1, 2] %}{% endfor %}")]
    [InlineData("{{ range(1, 2, 0) }}")]
    [InlineData("{{ [{'a': 1}, {'b': 1}] | sort }}")]
    [InlineData("{{ {1: 1, 'a': 2} | tojson(sort_keys=true) }}")]
    [InlineData("{{ [1] in {'a': 1} }}")]
    [InlineData("{% break %}")]
    [InlineData("{% for i in [1] %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}")]
    public void FailsLikeJinja2(string source) => Assert.Throws<JinjaException>(() => Render(source));

    [Fact]
    public void ListsAccumulateWithAppend()
    {
        // jinja2's immutable sandbox refuses list.append; templates written for other engines use it, so it is kept.
        Assert.Equal("12[1]", Render("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set l = [] %}{% set _ = l.append(1) %}{{ l }}"));
    }

    [Fact]
    public void VariablesArePlainDataKeepingKeyOrder()
    {
        var message = new Dictionary<string, object?> { ["role"] = "user", ["content"] = "hi", ["n"] = 3, ["x"] = 0.5f, ["z"] = null };
        var json = System.Text.Json.JsonDocument.Parse("""{"b": 1, "a": [true, 2.0, "x"], "c": {"d": null}}""").RootElement;
        var variables = new Dictionary<string, object?> { ["m"] = message, ["j"] = json, ["l"] = new List<object?> { 1L, "a" } };
        Assert.Equal("""{"role": "user", "content": "hi", "n": 3, "x": 0.5, "z": null}|{"b": 1, "a": [true, 2.0, "x"], "c": {"d": null}}|[1, 'a']""",
            Render("{{ m | tojson }}|{{ j | tojson }}|{{ l }}", variables));
    }

    [Fact]
    public void OtherDotNetObjectsAreRefused()
    {
        var variables = new Dictionary<string, object?> { ["x"] = new Uri("http://example.com") };
        Assert.Throws<JinjaException>(() => Render("{{ x }}", variables));
    }

    [Fact]
    public void AGeneratorIsNotJsonSerializable()
    {
        Assert.Equal("Object of type generator is not JSON serializable", Assert.Throws<JinjaException>(() => Render("{{ [1] | map('string') | tojson }}")).Message);
        Assert.Equal("[\"1\"]", Render("{{ [1] | map('string') | list | tojson }}"));
    }
}

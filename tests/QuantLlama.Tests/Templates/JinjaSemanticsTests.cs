using QuantLlama.Templates.Jinja;

namespace QuantLlama.Tests.Templates;

/// <summary>Expression and statement semantics against what Python's jinja2 prints for the same template.</summary>
public class JinjaSemanticsTests
{
    private static string Render(string source, object? variables = null)
    {
        var vars = variables == null ? new Dictionary<string, object?>()
            : (Dictionary<string, object?>)variables;
        return JinjaTemplate.Parse(source, new JinjaOptions { Clock = () => new DateTime(2026, 1, 15, 10, 0, 0) }).Render(vars);
    }

    [Theory]
    [InlineData("{% set m = {'a': 1} %}{% set l = [m] %}{{ m == l[-1] }}", "True")]
    [InlineData("{% set m = {'a': 1} %}{{ m }}|{{ [m][-1] }}|{{ m == m }}|{{ {'a': 1} == {'a': 1} }}|{{ [1] == [1] }}", "True")]
    [InlineData("{% set t = [1, 2] %}{{ t is not none and (t == [1, 2]) }}", "True")]
    public void Debug(string source, string expected) => Assert.Equal(expected, Render(source));
}

using System.Text;
using System.Text.Json;
using QuantLlama.Templates;
using QuantLlama.Templates.Jinja;

namespace QuantLlama.Tests.Templates;

/// <summary>
/// The real chat templates in ../shared/chat-templates rendered for every conversation, byte for byte against what
/// Python's jinja2 (as Hugging Face sets it up) rendered.
/// </summary>
public class ChatTemplateCorpusTests
{
    internal static string Root => TestPaths.SharedFile("chat-templates");

    internal static DateTime FixedClock => new(2026, 1, 15, 10, 0, 0);

    internal static JinjaOptions Options => new() { Clock = () => FixedClock };

    internal static IEnumerable<string> TemplateNames =>
        Directory.GetFiles(Path.Combine(Root, "templates"), "*.jinja").Select(Path.GetFileNameWithoutExtension).Order(StringComparer.Ordinal)!;

    private static JsonElement Cases => JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "cases.json"))).RootElement;

    /// <summary>Every template × case with an expected file (the tools case exists only for templates that use tools).</summary>
    public static TheoryData<string, string> TemplateCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var template in TemplateNames)
            foreach (var c in Cases.EnumerateArray())
            {
                string name = c.GetProperty("name").GetString()!;
                string stem = Path.Combine(Root, "expected", template, name);
                if (File.Exists(stem + ".txt") || File.Exists(stem + ".error")) data.Add(template, name);
            }
        return data;
    }

    [Fact]
    public void EveryTemplateHasExpectedOutputForTheCommonCases()
    {
        var names = TemplateNames.ToList();
        Assert.Equal(32, names.Count);
        Assert.True(TemplateCases().Count >= names.Count * 7, $"only {TemplateCases().Count} cases found");
    }

    [Theory]
    [MemberData(nameof(TemplateCases))]
    public void RendersExactlyAsJinja2(string template, string caseName)
    {
        string source = File.ReadAllText(Path.Combine(Root, "templates", template + ".jinja"), Encoding.UTF8);
        var tokens = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "templates", template + ".json"))).RootElement;
        var conversation = Cases.EnumerateArray().Single(c => c.GetProperty("name").GetString() == caseName);
        object? tools = conversation.TryGetProperty("tools", out var t) ? t : null;
        string stem = Path.Combine(Root, "expected", template, caseName);

        string Render() => ChatTemplateRenderer.Render(JinjaTemplate.Parse(source, Options), conversation.GetProperty("messages"),
            conversation.GetProperty("add_generation_prompt").GetBoolean(), tokens.GetProperty("bos_token").GetString() ?? "",
            tokens.GetProperty("eos_token").GetString() ?? "", tools);

        if (File.Exists(stem + ".error"))
        {
            var e = Assert.Throws<JinjaException>(Render);
            string expected = File.ReadAllText(stem + ".error", Encoding.UTF8);
            // A message raise_exception gave is the template's own text, so it must match; jinja2's and Python's own
            // messages may be worded differently.
            if (source.Contains(expected, StringComparison.Ordinal)) Assert.Equal(expected, e.Message);
            return;
        }
        Assert.Equal(File.ReadAllText(stem + ".txt", Encoding.UTF8), Render());
    }
}

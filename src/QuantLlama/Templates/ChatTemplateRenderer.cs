using System.Text.Json;
using QuantLlama.Templates.Jinja;

namespace QuantLlama.Templates;

/// <summary>
/// Renders a model's chat template (<c>tokenizer.chat_template</c>) into prompt text, with the variables and
/// settings of Hugging Face's apply_chat_template: messages, add_generation_prompt, bos_token, eos_token, and tools
/// only when given.
/// </summary>
public static class ChatTemplateRenderer
{
    /// <param name="messages">A list of messages, each a dictionary with role, content and any other fields (plain data or JSON).</param>
    /// <param name="tools">The tool definitions (plain data or JSON), or null to leave <c>tools</c> undefined.</param>
    public static string Render(JinjaTemplate template, object? messages, bool addGenerationPrompt, string bosToken, string eosToken,
        object? tools = null)
    {
        ArgumentNullException.ThrowIfNull(template);
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = messages,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = bosToken,
            ["eos_token"] = eosToken,
        };
        if (tools != null) variables["tools"] = tools;
        return template.Render(variables);
    }

    public static string Render(string template, object? messages, bool addGenerationPrompt, string bosToken, string eosToken,
        object? tools = null, JinjaOptions? options = null)
        => Render(JinjaTemplate.Parse(template, options), messages, addGenerationPrompt, bosToken, eosToken, tools);

    /// <summary>
    /// Renders from a JSON object with <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>,
    /// <c>eos_token</c> and optionally <c>tools</c>; the tokens fall back to the given defaults when absent.
    /// </summary>
    public static string RenderJson(string template, JsonElement context, string? defaultBosToken = null, string? defaultEosToken = null,
        JinjaOptions? options = null)
    {
        if (context.ValueKind != JsonValueKind.Object) throw new JinjaException("the context must be a JSON object");
        JsonElement? Get(string name) => context.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;
        string Token(string name, string? fallback) => Get(name) is { } v
            ? v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new JinjaException($"{name} must be a string")
            : fallback ?? "";
        var messages = Get("messages") ?? throw new JinjaException("the context has no messages");
        bool addGenerationPrompt = Get("add_generation_prompt") is { } g && g.ValueKind == JsonValueKind.True;
        return Render(template, messages, addGenerationPrompt, Token("bos_token", defaultBosToken), Token("eos_token", defaultEosToken),
            Get("tools"), options);
    }
}

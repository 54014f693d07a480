using QuantLlama.Hub;
using QuantLlama.Models;
using QuantLlama.Templates;
using QuantLlama.Templates.Jinja;
using QuantLlama.Tokenizers;

namespace QuantLlama.Generation;

/// <summary>One message of a conversation: a role (system, user, assistant, or any role a template knows) and its text.</summary>
public sealed record ChatTurn(string Role, string Content)
{
    public static ChatTurn System(string content) => new("system", content);
    public static ChatTurn User(string content) => new("user", content);
    public static ChatTurn Assistant(string content) => new("assistant", content);
}

/// <summary>Turns a conversation into the prompt text a chat model was trained on.</summary>
public interface IChatFormatter
{
    /// <summary>
    /// The whole conversation as text; with <paramref name="addGenerationPrompt"/>, followed by the opening of the
    /// assistant's reply. Control tokens appear as their text (parsed as special tokens when tokenized).
    /// </summary>
    string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt);

    /// <summary>Control tokens that end the assistant's turn, beyond the vocabulary's EOS/EOT.</summary>
    IReadOnlyList<string> EndOfTurnTokens { get; }
}

/// <summary>
/// The chat formats of the template families, for files without a chat template of their own: candle's formats for
/// OpenChat, Zephyr, Mistral/Mixtral and DeepSeek, and Llama 2 chat, Llama 3 headers and ChatML. The text starts
/// after the BOS that tokenization adds; <paramref name="bosToken"/> and <paramref name="eosToken"/> are the
/// vocabulary's, for the families that repeat them between turns.
/// </summary>
public sealed class FamilyChatFormatter(ChatTemplateFamily family, string bosToken = "<s>", string eosToken = "</s>") : IChatFormatter
{
    public ChatTemplateFamily Family => family;

    public IReadOnlyList<string> EndOfTurnTokens { get; } = [.. ChatTemplate.EndOfTurnTokens(family)];

    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt)
    {
        var sb = new System.Text.StringBuilder();
        string system = string.Join("\n\n", messages.Where(m => m.Role == "system").Select(m => m.Content));
        var turns = messages.Where(m => m.Role != "system").ToList();
        // Families without a system role put it before the first user message, as llama.cpp does.
        string FirstUser(int i, string content) => i == 0 && system.Length > 0 ? system + "\n\n" + content : content;
        switch (family)
        {
            case ChatTemplateFamily.Llama3:
                foreach (var m in messages) sb.Append($"<|start_header_id|>{m.Role}<|end_header_id|>\n\n{m.Content}<|eot_id|>");
                if (addGenerationPrompt) sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;
            case ChatTemplateFamily.ChatML:
                for (int i = 0; i < messages.Count; i++) sb.Append(i > 0 ? "\n" : "").Append($"<|im_start|>{messages[i].Role}\n{messages[i].Content}<|im_end|>");
                if (addGenerationPrompt) sb.Append(messages.Count > 0 ? "\n" : "").Append("<|im_start|>assistant\n");
                break;
            case ChatTemplateFamily.Zephyr:
                sb.Append($"<|system|>\n{system}</s>\n");
                foreach (var m in turns) sb.Append(m.Role == "assistant" ? $"<|assistant|>\n{m.Content}</s>\n" : $"<|user|>\n{m.Content}</s>\n");
                if (addGenerationPrompt) sb.Append("<|assistant|>");
                break;
            case ChatTemplateFamily.OpenChat:
                for (int i = 0; i < turns.Count; i++)
                    sb.Append(turns[i].Role == "assistant" ? $"GPT4 Correct Assistant: {turns[i].Content}<|end_of_turn|>" : $"GPT4 Correct User: {FirstUser(i, turns[i].Content)}<|end_of_turn|>");
                if (addGenerationPrompt) sb.Append("GPT4 Correct Assistant:");
                break;
            case ChatTemplateFamily.DeepSeek:
                sb.Append(system);
                foreach (var m in turns) sb.Append(m.Role == "assistant" ? $"<｜Assistant｜>{m.Content}<｜end▁of▁sentence｜>" : $"<｜User｜>{m.Content}");
                if (addGenerationPrompt) sb.Append("<｜Assistant｜>");
                break;
            case ChatTemplateFamily.Llama2Chat:
            case ChatTemplateFamily.Mistral:
                for (int i = 0; i < turns.Count; i++)
                {
                    if (turns[i].Role == "assistant")
                    {
                        sb.Append(family == ChatTemplateFamily.Llama2Chat ? $" {turns[i].Content} {eosToken}" : $"{turns[i].Content}{eosToken}");
                        continue;
                    }
                    if (i > 0 && family == ChatTemplateFamily.Llama2Chat) sb.Append(bosToken);
                    string content = family == ChatTemplateFamily.Llama2Chat && i == 0 && system.Length > 0
                        ? $"<<SYS>>\n{system}\n<</SYS>>\n\n{turns[i].Content}" : FirstUser(i, turns[i].Content);
                    sb.Append($"[INST] {content} [/INST]");
                }
                break;
            default:
                // A base model continues the text as it is.
                foreach (var m in messages) sb.Append(m.Content);
                break;
        }
        return sb.ToString();
    }
}

/// <summary>Recognises template families and their end-of-turn tokens.</summary>
public static class ChatTemplate
{
    /// <summary>Control tokens that end the assistant's turn in this template (beyond the vocabulary's EOS).</summary>
    public static IEnumerable<string> EndOfTurnTokens(ChatTemplateFamily kind) => kind switch
    {
        ChatTemplateFamily.OpenChat => ["<|end_of_turn|>"],
        ChatTemplateFamily.Llama3 => ["<|eot_id|>", "<|end_of_text|>"],
        ChatTemplateFamily.ChatML => ["<|im_end|>", "<|endoftext|>"],
        ChatTemplateFamily.DeepSeek => ["<｜end▁of▁sentence｜>"],
        _ => [],
    };

    /// <summary>Recognises the family of a GGUF <c>tokenizer.chat_template</c> (a Jinja template) by its markers.</summary>
    public static ChatTemplateFamily Detect(string? jinja)
    {
        if (string.IsNullOrEmpty(jinja)) return ChatTemplateFamily.None;
        if (jinja.Contains("<|im_start|>")) return ChatTemplateFamily.ChatML;
        if (jinja.Contains("<|start_header_id|>")) return ChatTemplateFamily.Llama3;
        if (jinja.Contains("GPT4 Correct")) return ChatTemplateFamily.OpenChat;
        if (jinja.Contains("<｜User｜>")) return ChatTemplateFamily.DeepSeek;
        if (jinja.Contains("<|user|>") && jinja.Contains("<|assistant|>")) return ChatTemplateFamily.Zephyr;
        if (jinja.Contains("[INST]")) return jinja.Contains("<<SYS>>") ? ChatTemplateFamily.Llama2Chat : ChatTemplateFamily.Mistral;
        return ChatTemplateFamily.None;
    }

    /// <summary>
    /// The family for a chat: the registry's for --which (or the downloaded file's entry) when it has one, otherwise
    /// the one the file's <c>tokenizer.chat_template</c> describes.
    /// </summary>
    public static ChatTemplateFamily Resolve(ChatTemplateFamily fromRegistry, string? ggufChatTemplate)
        => fromRegistry != ChatTemplateFamily.None ? fromRegistry : Detect(ggufChatTemplate);
}

/// <summary>
/// A model's own chat template (Jinja, from <c>tokenizer.chat_template</c> or a tokenizer_config.json), rendered as
/// Hugging Face's apply_chat_template renders it, with the vocabulary's BOS and EOS texts.
/// </summary>
public sealed class JinjaChatFormatter : IChatFormatter
{
    private readonly JinjaTemplate _template;
    private readonly string _bosToken, _eosToken;

    /// <summary>Parses the template; a template that does not parse throws <see cref="JinjaException"/>.</summary>
    public JinjaChatFormatter(string template, string bosToken, string eosToken, IReadOnlyList<string>? endOfTurnTokens = null)
    {
        _template = JinjaTemplate.Parse(template);
        _bosToken = bosToken;
        _eosToken = eosToken;
        EndOfTurnTokens = endOfTurnTokens ?? [];
    }

    public IReadOnlyList<string> EndOfTurnTokens { get; }

    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt)
    {
        var list = messages.Select(m => (object?)new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList();
        return ChatTemplateRenderer.Render(_template, JinjaValues.FromPlain(list), addGenerationPrompt, _bosToken, _eosToken);
    }
}

/// <summary>Chooses how a model's conversations are formatted.</summary>
public static class ChatFormats
{
    /// <summary>
    /// The format for <paramref name="model"/>: its own Jinja chat template when the file has one that parses, else
    /// <paramref name="fallback"/> (a family, for files without a template such as legacy GGML files or base models)
    /// or the family the template's markers name. Generation stops at the template's end-of-turn tokens.
    /// </summary>
    public static IChatFormatter ForModel(LlamaModel model, ITokenizer tokenizer, ChatTemplateFamily fallback = ChatTemplateFamily.None)
        => ForTemplate(model.File.Metadata.GetStringOrNull("tokenizer.chat_template"), tokenizer, fallback);

    /// <inheritdoc cref="ForModel"/>
    public static IChatFormatter ForTemplate(string? template, ITokenizer tokenizer, ChatTemplateFamily fallback = ChatTemplateFamily.None)
    {
        string bos = Piece(tokenizer, tokenizer.BosId, "<s>"), eos = Piece(tokenizer, tokenizer.EosId, "</s>");
        var family = ChatTemplate.Detect(template);
        if (!string.IsNullOrEmpty(template))
        {
            try
            {
                var probe = new JinjaChatFormatter(template, bos, eos);
                var endOfTurn = ChatTemplate.EndOfTurnTokens(family).Concat(DetectEndOfTurn(probe, tokenizer)).Distinct().ToList();
                return new JinjaChatFormatter(template, bos, eos, endOfTurn);
            }
            catch (JinjaException)
            {
                // A template this engine cannot parse: its family's format, as llama.cpp falls back to a built-in one.
            }
        }
        return new FamilyChatFormatter(family != ChatTemplateFamily.None ? family : fallback, bos, eos);
    }

    /// <summary>
    /// The control token a template writes right after an assistant's message (&lt;|im_end|&gt;, &lt;|eot_id|&gt;,
    /// &lt;|end|&gt;, ...): the end of an assistant's turn, where generation stops.
    /// </summary>
    private static IEnumerable<string> DetectEndOfTurn(JinjaChatFormatter formatter, ITokenizer tokenizer)
    {
        const string Reply = "\u2402QuantLlamaReply\u2402";
        string text;
        try
        {
            text = formatter.Render([ChatTurn.User("Hello"), ChatTurn.Assistant(Reply)], addGenerationPrompt: false);
        }
        catch (JinjaException)
        {
            yield break;
        }
        int at = text.IndexOf(Reply, StringComparison.Ordinal);
        if (at < 0) yield break;
        string after = text[(at + Reply.Length)..].TrimStart(' ');
        if (after.Length == 0) yield break;
        var ids = tokenizer.Encode(after, addSpecial: false, parseSpecial: true);
        if (ids.Count == 0) yield break;
        string piece = tokenizer.TokenToPiece(ids[0]);
        // A control token is one id when parsed as special, several as plain text.
        if (piece.Length > 1 && after.StartsWith(piece, StringComparison.Ordinal) && tokenizer.Encode(piece, addSpecial: false, parseSpecial: false).Count > 1)
            yield return piece;
    }

    private static string Piece(ITokenizer tokenizer, int id, string fallback) => id >= 0 ? tokenizer.TokenToPiece(id) : fallback;
}

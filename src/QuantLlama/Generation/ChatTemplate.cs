using QuantLlama.Hub;
using QuantLlama.Models;
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

/// <summary>Chooses how a model's conversations are formatted.</summary>
public static class ChatFormats
{
    /// <summary>
    /// The format for <paramref name="model"/>: the family its <c>tokenizer.chat_template</c> describes, else
    /// <paramref name="fallback"/> (for files without a template, such as legacy GGML files), with the vocabulary's
    /// BOS and EOS texts.
    /// </summary>
    public static IChatFormatter ForModel(LlamaModel model, ITokenizer tokenizer, ChatTemplateFamily fallback = ChatTemplateFamily.None)
    {
        var family = ChatTemplate.Resolve(ChatTemplateFamily.None, model.File.Metadata.GetStringOrNull("tokenizer.chat_template"));
        if (family == ChatTemplateFamily.None) family = fallback;
        return new FamilyChatFormatter(family, Piece(tokenizer, tokenizer.BosId, "<s>"), Piece(tokenizer, tokenizer.EosId, "</s>"));
    }

    private static string Piece(ITokenizer tokenizer, int id, string fallback) => id >= 0 ? tokenizer.TokenToPiece(id) : fallback;
}

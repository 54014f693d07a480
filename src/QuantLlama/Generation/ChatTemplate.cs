using QuantLlama.Hub;

namespace QuantLlama.Generation;

/// <summary>
/// Chat turns per template family (the family comes from the --which registry, or from the GGUF's
/// <c>tokenizer.chat_template</c>): candle's formats for OpenChat, Zephyr, Mistral/Mixtral and DeepSeek, and beyond
/// candle Llama 2 chat (BOS before every turn), Llama 3 headers and ChatML.
/// </summary>
public static class ChatTemplate
{
    /// <summary>
    /// The text of one user turn. firstTurn: the conversation starts here (interactive mode starts afresh every
    /// line). Later chat turns follow the assistant's end-of-turn token, which is already in the KV cache.
    /// </summary>
    public static string FormatTurn(ChatTemplateFamily kind, string prompt, bool firstTurn) => kind switch
    {
        ChatTemplateFamily.OpenChat => $"GPT4 Correct User: {prompt}<|end_of_turn|>GPT4 Correct Assistant:",
        ChatTemplateFamily.Zephyr => firstTurn
            ? $"<|system|>\n</s>\n<|user|>\n{prompt}</s>\n<|assistant|>"
            : $"<|user|>\n{prompt}</s>\n<|assistant|>",
        ChatTemplateFamily.Mistral or ChatTemplateFamily.Llama2Chat => $"[INST] {prompt} [/INST]",
        ChatTemplateFamily.DeepSeek => $"<｜User｜>{prompt}<｜Assistant｜>",
        ChatTemplateFamily.Llama3 => $"<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        ChatTemplateFamily.ChatML => (firstTurn ? "" : "\n") + $"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
        _ => prompt,
    };

    /// <summary>Whether every turn, not only the first, begins with BOS.</summary>
    public static bool BosEveryTurn(ChatTemplateFamily kind) => kind == ChatTemplateFamily.Llama2Chat;

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

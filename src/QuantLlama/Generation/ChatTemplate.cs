namespace QuantLlama.Generation;

/// <summary>How a user's line is wrapped before it is tokenized, per model family.</summary>
public enum ChatTemplateKind
{
    /// <summary>The line as typed (base models).</summary>
    None,
    /// <summary>OpenChat / Starling: <c>GPT4 Correct User: {p}&lt;|end_of_turn|&gt;GPT4 Correct Assistant:</c>.</summary>
    OpenChat,
    /// <summary>Zephyr: <c>&lt;|system|&gt;\n&lt;/s&gt;\n&lt;|user|&gt;\n{p}&lt;/s&gt;\n&lt;|assistant|&gt;</c>, later turns without the system part.</summary>
    Zephyr,
    /// <summary>Mistral / Mixtral: <c>[INST] {p} [/INST]</c>, BOS at the start of the conversation only.</summary>
    Mistral,
    /// <summary>DeepSeek-R1 distills: <c>&lt;｜User｜&gt;{p}&lt;｜Assistant｜&gt;</c>.</summary>
    DeepSeek,
    /// <summary>Llama 2 chat: <c>&lt;s&gt;[INST] {p} [/INST]</c>, BOS before every turn.</summary>
    Llama2,
    /// <summary>Llama 3 instruct: header blocks closed by <c>&lt;|eot_id|&gt;</c>.</summary>
    Llama3,
    /// <summary>ChatML (Qwen, SmolLM2, ...): <c>&lt;|im_start|&gt;user\n{p}&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n</c>.</summary>
    ChatML,
}

public static class ChatTemplate
{
    /// <summary>
    /// The text of one user turn. firstTurn: the conversation starts here (interactive mode starts afresh every
    /// line). Later chat turns follow the assistant's end-of-turn token, which is already in the KV cache.
    /// </summary>
    public static string FormatTurn(ChatTemplateKind kind, string prompt, bool firstTurn) => kind switch
    {
        ChatTemplateKind.OpenChat => $"GPT4 Correct User: {prompt}<|end_of_turn|>GPT4 Correct Assistant:",
        ChatTemplateKind.Zephyr => firstTurn
            ? $"<|system|>\n</s>\n<|user|>\n{prompt}</s>\n<|assistant|>"
            : $"<|user|>\n{prompt}</s>\n<|assistant|>",
        ChatTemplateKind.Mistral or ChatTemplateKind.Llama2 => $"[INST] {prompt} [/INST]",
        ChatTemplateKind.DeepSeek => $"<｜User｜>{prompt}<｜Assistant｜>",
        ChatTemplateKind.Llama3 => $"<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        ChatTemplateKind.ChatML => (firstTurn ? "" : "\n") + $"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
        _ => prompt,
    };

    /// <summary>Whether every turn, not only the first, begins with BOS.</summary>
    public static bool BosEveryTurn(ChatTemplateKind kind) => kind == ChatTemplateKind.Llama2;

    /// <summary>Control tokens that end the assistant's turn in this template (beyond the vocabulary's EOS).</summary>
    public static IEnumerable<string> EndOfTurnTokens(ChatTemplateKind kind) => kind switch
    {
        ChatTemplateKind.OpenChat => ["<|end_of_turn|>"],
        ChatTemplateKind.Llama3 => ["<|eot_id|>", "<|end_of_text|>"],
        ChatTemplateKind.ChatML => ["<|im_end|>", "<|endoftext|>"],
        ChatTemplateKind.DeepSeek => ["<｜end▁of▁sentence｜>"],
        _ => [],
    };

    /// <summary>Recognises the family of a GGUF <c>tokenizer.chat_template</c> (a Jinja template) by its markers.</summary>
    public static ChatTemplateKind Detect(string? jinja)
    {
        if (string.IsNullOrEmpty(jinja)) return ChatTemplateKind.None;
        if (jinja.Contains("<|im_start|>")) return ChatTemplateKind.ChatML;
        if (jinja.Contains("<|start_header_id|>")) return ChatTemplateKind.Llama3;
        if (jinja.Contains("GPT4 Correct")) return ChatTemplateKind.OpenChat;
        if (jinja.Contains("<｜User｜>")) return ChatTemplateKind.DeepSeek;
        if (jinja.Contains("<|user|>") && jinja.Contains("<|assistant|>")) return ChatTemplateKind.Zephyr;
        if (jinja.Contains("[INST]")) return jinja.Contains("<<SYS>>") ? ChatTemplateKind.Llama2 : ChatTemplateKind.Mistral;
        return ChatTemplateKind.None;
    }
}

/// <summary>A value of --which: a model candle's quantized example knows, and the chat template of its family.</summary>
public sealed record ModelFamily(string Which, ChatTemplateKind Template)
{
    /// <summary>candle's quantized example's --which values (and its default, "7b").</summary>
    public static IReadOnlyList<ModelFamily> Known { get; } =
    [
        new("7b", ChatTemplateKind.None), new("13b", ChatTemplateKind.None), new("70b", ChatTemplateKind.None),
        new("7b-chat", ChatTemplateKind.Llama2), new("13b-chat", ChatTemplateKind.Llama2), new("70b-chat", ChatTemplateKind.Llama2),
        new("7b-code", ChatTemplateKind.None), new("13b-code", ChatTemplateKind.None), new("32b-code", ChatTemplateKind.None),
        new("7b-leo", ChatTemplateKind.None), new("13b-leo", ChatTemplateKind.None),
        new("7b-mistral", ChatTemplateKind.Mistral), new("7b-mistral-instruct", ChatTemplateKind.Mistral),
        new("7b-mistral-instruct-v0.2", ChatTemplateKind.Mistral),
        new("7b-zephyr-a", ChatTemplateKind.Zephyr), new("7b-zephyr-b", ChatTemplateKind.Zephyr),
        new("7b-open-chat-3.5", ChatTemplateKind.OpenChat), new("7b-starling-a", ChatTemplateKind.OpenChat),
        new("mixtral", ChatTemplateKind.Mistral), new("mixtral-instruct", ChatTemplateKind.Mistral),
        new("llama3-8b", ChatTemplateKind.None), new("phi3", ChatTemplateKind.None),
        new("SmoLM2-360M-Instruct", ChatTemplateKind.ChatML), new("SmoLM2-1.7B-Instruct", ChatTemplateKind.ChatML),
        new("deepseekr1-llama8b", ChatTemplateKind.DeepSeek),
    ];

    public static ModelFamily? Find(string which) => Known.FirstOrDefault(f => f.Which == which);

    /// <summary>
    /// The template for a chat: the family's when --which names a chat family, otherwise the one the file's
    /// <c>tokenizer.chat_template</c> describes (a --model file's own template beats the default --which).
    /// </summary>
    public ChatTemplateKind ResolveTemplate(string? ggufChatTemplate)
        => Template != ChatTemplateKind.None ? Template : ChatTemplate.Detect(ggufChatTemplate);
}

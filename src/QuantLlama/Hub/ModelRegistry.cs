namespace QuantLlama.Hub;

/// <summary>How a model expects a chat turn to be wrapped. The names are the ones the CLI and docs use.</summary>
public enum ChatTemplateFamily
{
    /// <summary>The prompt is given to the model as is (base models).</summary>
    None,
    /// <summary>Llama 2 chat: <c>[INST] &lt;&lt;SYS&gt;&gt;…&lt;&lt;/SYS&gt;&gt; … [/INST]</c>.</summary>
    Llama2Chat,
    /// <summary>Mistral/Mixtral: <c>[INST] … [/INST]</c>.</summary>
    Mistral,
    /// <summary>Zephyr: <c>&lt;|system|&gt;</c>, <c>&lt;|user|&gt;</c>, <c>&lt;|assistant|&gt;</c> turns ended by <c>&lt;/s&gt;</c>.</summary>
    Zephyr,
    /// <summary>OpenChat (and Starling): <c>GPT4 Correct User: …&lt;|end_of_turn|&gt;GPT4 Correct Assistant:</c>.</summary>
    OpenChat,
    /// <summary>DeepSeek R1: <c>&lt;｜User｜&gt;…&lt;｜Assistant｜&gt;</c>.</summary>
    DeepSeek,
    /// <summary>Llama 3 header tokens: <c>&lt;|start_header_id|&gt;user&lt;|end_header_id|&gt;</c>…<c>&lt;|eot_id|&gt;</c>.</summary>
    Llama3,
    /// <summary>ChatML: <c>&lt;|im_start|&gt;user\n…&lt;|im_end|&gt;</c>.</summary>
    ChatML,
}

public static class ChatTemplateFamilyNames
{
    /// <summary>The family's name as written on the command line: none, llama2-chat, mistral, zephyr, openchat, deepseek, llama3, chatml.</summary>
    public static string ToName(this ChatTemplateFamily family) => family switch
    {
        ChatTemplateFamily.None => "none",
        ChatTemplateFamily.Llama2Chat => "llama2-chat",
        ChatTemplateFamily.Mistral => "mistral",
        ChatTemplateFamily.Zephyr => "zephyr",
        ChatTemplateFamily.OpenChat => "openchat",
        ChatTemplateFamily.DeepSeek => "deepseek",
        ChatTemplateFamily.Llama3 => "llama3",
        ChatTemplateFamily.ChatML => "chatml",
        _ => throw new ArgumentOutOfRangeException(nameof(family)),
    };

    public static bool TryParse(string name, out ChatTemplateFamily family)
    {
        foreach (var f in Enum.GetValues<ChatTemplateFamily>())
        {
            if (string.Equals(f.ToName(), name, StringComparison.OrdinalIgnoreCase))
            {
                family = f;
                return true;
            }
        }
        family = ChatTemplateFamily.None;
        return false;
    }
}

/// <summary>One <c>--which</c> name: where its weights live on the Hub and how to run them.</summary>
/// <param name="Name">The <c>--which</c> value.</param>
/// <param name="Repo">Hub repository id, <c>owner/name</c>.</param>
/// <param name="File">Path of the weights file inside the repository.</param>
/// <param name="Revision">Branch, tag or commit; <c>main</c> unless the model is pinned.</param>
/// <param name="Gqa">Grouped-query factor for legacy GGML files, which do not record it (null for GGUF).</param>
/// <param name="Template">The chat template family used to wrap chat turns.</param>
/// <param name="SizeBytes">The file's size where it is known for certain (null otherwise).</param>
public sealed record ModelEntry(
    string Name,
    string Repo,
    string File,
    string Revision,
    int? Gqa,
    ChatTemplateFamily Template,
    long? SizeBytes = null)
{
    public bool IsLegacyGgml => Gqa != null;

    /// <summary>The chat template family's command-line name (see <see cref="ChatTemplateFamilyNames.ToName"/>).</summary>
    public string TemplateName => Template.ToName();

    /// <summary>The form <c>--model</c> accepts for the same file: <c>owner/name/file</c>.</summary>
    public string HubReference => $"{Repo}/{File}";
}

/// <summary>
/// The <c>--which</c> table: candle's quantized example's names, repositories, files and revisions, plus small
/// models for a first run and small chat models of the Qwen 2.5, Llama 3.2 and Gemma 2/3 families. Template families follow candle's prompt wrapping where candle has one (mistral,
/// zephyr, openchat, deepseek); Llama 2 chat and SmolLM2 instruct models get their own documented formats.
/// </summary>
public static class ModelRegistry
{
    /// <summary>candle's default <c>--which</c>.</summary>
    public const string DefaultName = "7b";

    /// <summary>Phi-3 is pinned by candle to this commit of its repository.</summary>
    public const string Phi3Revision = "5eef2ce24766d31909c0b269fe90c817a8f263fb";

    public static IReadOnlyList<ModelEntry> All { get; } =
    [
        Legacy("7b", "TheBloke/Llama-2-7B-GGML", "llama-2-7b.ggmlv3.q4_0.bin", 1, ChatTemplateFamily.None),
        Legacy("13b", "TheBloke/Llama-2-13B-GGML", "llama-2-13b.ggmlv3.q4_0.bin", 1, ChatTemplateFamily.None),
        Legacy("70b", "TheBloke/Llama-2-70B-GGML", "llama-2-70b.ggmlv3.q4_0.bin", 8, ChatTemplateFamily.None),
        Legacy("7b-chat", "TheBloke/Llama-2-7B-Chat-GGML", "llama-2-7b-chat.ggmlv3.q4_0.bin", 1, ChatTemplateFamily.Llama2Chat),
        Legacy("13b-chat", "TheBloke/Llama-2-13B-Chat-GGML", "llama-2-13b-chat.ggmlv3.q4_0.bin", 1, ChatTemplateFamily.Llama2Chat),
        Legacy("70b-chat", "TheBloke/Llama-2-70B-Chat-GGML", "llama-2-70b-chat.ggmlv3.q4_0.bin", 8, ChatTemplateFamily.Llama2Chat),
        Gguf("7b-code", "TheBloke/CodeLlama-7B-GGUF", "codellama-7b.Q8_0.gguf", ChatTemplateFamily.None),
        Gguf("13b-code", "TheBloke/CodeLlama-13B-GGUF", "codellama-13b.Q8_0.gguf", ChatTemplateFamily.None),
        Gguf("32b-code", "TheBloke/CodeLlama-34B-GGUF", "codellama-34b.Q8_0.gguf", ChatTemplateFamily.None),
        Gguf("7b-leo", "TheBloke/leo-hessianai-7B-GGUF", "leo-hessianai-7b.Q4_K_M.gguf", ChatTemplateFamily.None),
        Gguf("13b-leo", "TheBloke/leo-hessianai-13B-GGUF", "leo-hessianai-13b.Q4_K_M.gguf", ChatTemplateFamily.None),
        // candle wraps every Mistral-family prompt (base models included) in [INST] … [/INST].
        Gguf("7b-mistral", "TheBloke/Mistral-7B-v0.1-GGUF", "mistral-7b-v0.1.Q4_K_S.gguf", ChatTemplateFamily.Mistral),
        Gguf("7b-mistral-instruct", "TheBloke/Mistral-7B-Instruct-v0.1-GGUF", "mistral-7b-instruct-v0.1.Q4_K_S.gguf", ChatTemplateFamily.Mistral),
        Gguf("7b-mistral-instruct-v0.2", "TheBloke/Mistral-7B-Instruct-v0.2-GGUF", "mistral-7b-instruct-v0.2.Q4_K_S.gguf", ChatTemplateFamily.Mistral),
        Gguf("7b-zephyr-a", "TheBloke/zephyr-7B-alpha-GGUF", "zephyr-7b-alpha.Q4_K_M.gguf", ChatTemplateFamily.Zephyr),
        Gguf("7b-zephyr-b", "TheBloke/zephyr-7B-beta-GGUF", "zephyr-7b-beta.Q4_K_M.gguf", ChatTemplateFamily.Zephyr),
        Gguf("7b-open-chat-3.5", "TheBloke/openchat_3.5-GGUF", "openchat_3.5.Q4_K_M.gguf", ChatTemplateFamily.OpenChat),
        // Starling is a fine-tune of OpenChat and keeps its format.
        Gguf("7b-starling-a", "TheBloke/Starling-LM-7B-alpha-GGUF", "starling-lm-7b-alpha.Q4_K_M.gguf", ChatTemplateFamily.OpenChat),
        Gguf("mixtral", "TheBloke/Mixtral-8x7B-v0.1-GGUF", "mixtral-8x7b-v0.1.Q4_K_M.gguf", ChatTemplateFamily.Mistral),
        Gguf("mixtral-instruct", "TheBloke/Mixtral-8x7B-Instruct-v0.1-GGUF", "mixtral-8x7b-instruct-v0.1.Q4_K_M.gguf", ChatTemplateFamily.Mistral),
        Gguf("llama3-8b", "QuantFactory/Meta-Llama-3-8B-GGUF", "Meta-Llama-3-8B.Q4_K_S.gguf", ChatTemplateFamily.None),
        new("phi3", "microsoft/Phi-3-mini-4k-instruct-gguf", "Phi-3-mini-4k-instruct-q4.gguf", Phi3Revision, null, ChatTemplateFamily.None),
        Gguf("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF", "smollm2-360m-instruct-q8_0.gguf", ChatTemplateFamily.ChatML),
        Gguf("smollm2-1.7b-instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF", "smollm2-1.7b-instruct-q4_k_m.gguf", ChatTemplateFamily.ChatML),
        Gguf("deepseekr1-llama8b", "unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF", "DeepSeek-R1-Distill-Llama-8B-Q4_K_M.gguf", ChatTemplateFamily.DeepSeek),
        // Small models for a first run. stories260K (llama2.c TinyStories, ~1 MB) as llama.cpp converts it.
        Gguf("stories260k", "ggml-org/models", "tinyllamas/stories260K.gguf", ChatTemplateFamily.None, sizeBytes: 1_185_376),
        Gguf("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "smollm2-135m-instruct-q8_0.gguf", ChatTemplateFamily.ChatML),
        // TinyLlama 1.1B Chat v1.0 was trained on Zephyr's chat format.
        Gguf("tinyllama-1.1b-chat", "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf", ChatTemplateFamily.Zephyr),
        // Small chat models of today's families, from their publishers or bartowski's conversions. Each file carries its
        // chat template, which chat uses; the family is only the fallback for a template the engine cannot parse.
        Gguf("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf", ChatTemplateFamily.ChatML),
        Gguf("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "qwen2.5-1.5b-instruct-q4_k_m.gguf", ChatTemplateFamily.ChatML),
        Gguf("llama3.2-1b-instruct", "bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf", ChatTemplateFamily.Llama3),
        Gguf("llama3.2-3b-instruct", "bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q4_K_M.gguf", ChatTemplateFamily.Llama3),
        Gguf("gemma2-2b-it", "bartowski/gemma-2-2b-it-GGUF", "gemma-2-2b-it-Q4_K_M.gguf", ChatTemplateFamily.None),
        Gguf("gemma3-1b-it", "bartowski/google_gemma-3-1b-it-GGUF", "google_gemma-3-1b-it-Q4_K_M.gguf", ChatTemplateFamily.None),
        // Phi-3.5 mini: LongRoPE (a 128k context), its turns from the file's template only.
        Gguf("phi3.5-mini-instruct", "bartowski/Phi-3.5-mini-instruct-GGUF", "Phi-3.5-mini-instruct-Q4_K_M.gguf", ChatTemplateFamily.None),
    ];

    /// <summary>Other spellings accepted for <c>--which</c> (candle's own value names where ours differ).</summary>
    private static readonly Dictionary<string, string> Aliases = new(StringComparer.OrdinalIgnoreCase)
    {
        ["SmoLM2-360M-Instruct"] = "smollm2-360m-instruct",
        ["SmoLM2-1.7B-Instruct"] = "smollm2-1.7b-instruct",
        ["34b-code"] = "32b-code",
    };

    private static readonly Dictionary<string, ModelEntry> ByName =
        All.ToDictionary(e => e.Name, StringComparer.OrdinalIgnoreCase);

    public static IEnumerable<string> Names => All.Select(e => e.Name);

    public static bool TryGet(string name, out ModelEntry entry)
    {
        if (Aliases.TryGetValue(name, out var canonical)) name = canonical;
        return ByName.TryGetValue(name, out entry!);
    }

    /// <summary>The entry for a <c>--which</c> name (case-insensitive); an <see cref="ArgumentException"/> listing the names otherwise.</summary>
    public static ModelEntry Get(string name)
    {
        if (TryGet(name, out var entry)) return entry;
        throw new ArgumentException($"unknown model name '{name}'; known names: {string.Join(", ", Names)}");
    }

    /// <summary>The entry whose repository and file are these (a <c>--model owner/name/file</c> that names a known model).</summary>
    public static ModelEntry? FindByFile(string repo, string file) =>
        All.FirstOrDefault(e => string.Equals(e.Repo, repo, StringComparison.OrdinalIgnoreCase)
                                && string.Equals(e.File, file, StringComparison.Ordinal));

    private static ModelEntry Legacy(string name, string repo, string file, int gqa, ChatTemplateFamily template) =>
        new(name, repo, file, "main", gqa, template);

    private static ModelEntry Gguf(string name, string repo, string file, ChatTemplateFamily template, long? sizeBytes = null) =>
        new(name, repo, file, "main", null, template, sizeBytes);
}

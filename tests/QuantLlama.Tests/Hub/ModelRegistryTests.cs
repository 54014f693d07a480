using QuantLlama.Generation;
using QuantLlama.Gguf;
using QuantLlama.Hub;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Hub;

public class ModelRegistryTests
{
    [Theory]
    [InlineData("7b", "TheBloke/Llama-2-7B-GGML", "llama-2-7b.ggmlv3.q4_0.bin", 1)]
    [InlineData("13b", "TheBloke/Llama-2-13B-GGML", "llama-2-13b.ggmlv3.q4_0.bin", 1)]
    [InlineData("70b", "TheBloke/Llama-2-70B-GGML", "llama-2-70b.ggmlv3.q4_0.bin", 8)]
    [InlineData("7b-chat", "TheBloke/Llama-2-7B-Chat-GGML", "llama-2-7b-chat.ggmlv3.q4_0.bin", 1)]
    [InlineData("13b-chat", "TheBloke/Llama-2-13B-Chat-GGML", "llama-2-13b-chat.ggmlv3.q4_0.bin", 1)]
    [InlineData("70b-chat", "TheBloke/Llama-2-70B-Chat-GGML", "llama-2-70b-chat.ggmlv3.q4_0.bin", 8)]
    [InlineData("7b-code", "TheBloke/CodeLlama-7B-GGUF", "codellama-7b.Q8_0.gguf", null)]
    [InlineData("13b-code", "TheBloke/CodeLlama-13B-GGUF", "codellama-13b.Q8_0.gguf", null)]
    [InlineData("32b-code", "TheBloke/CodeLlama-34B-GGUF", "codellama-34b.Q8_0.gguf", null)]
    [InlineData("7b-leo", "TheBloke/leo-hessianai-7B-GGUF", "leo-hessianai-7b.Q4_K_M.gguf", null)]
    [InlineData("13b-leo", "TheBloke/leo-hessianai-13B-GGUF", "leo-hessianai-13b.Q4_K_M.gguf", null)]
    [InlineData("7b-mistral", "TheBloke/Mistral-7B-v0.1-GGUF", "mistral-7b-v0.1.Q4_K_S.gguf", null)]
    [InlineData("7b-mistral-instruct", "TheBloke/Mistral-7B-Instruct-v0.1-GGUF", "mistral-7b-instruct-v0.1.Q4_K_S.gguf", null)]
    [InlineData("7b-mistral-instruct-v0.2", "TheBloke/Mistral-7B-Instruct-v0.2-GGUF", "mistral-7b-instruct-v0.2.Q4_K_S.gguf", null)]
    [InlineData("7b-zephyr-a", "TheBloke/zephyr-7B-alpha-GGUF", "zephyr-7b-alpha.Q4_K_M.gguf", null)]
    [InlineData("7b-zephyr-b", "TheBloke/zephyr-7B-beta-GGUF", "zephyr-7b-beta.Q4_K_M.gguf", null)]
    [InlineData("7b-open-chat-3.5", "TheBloke/openchat_3.5-GGUF", "openchat_3.5.Q4_K_M.gguf", null)]
    [InlineData("7b-starling-a", "TheBloke/Starling-LM-7B-alpha-GGUF", "starling-lm-7b-alpha.Q4_K_M.gguf", null)]
    [InlineData("mixtral", "TheBloke/Mixtral-8x7B-v0.1-GGUF", "mixtral-8x7b-v0.1.Q4_K_M.gguf", null)]
    [InlineData("mixtral-instruct", "TheBloke/Mixtral-8x7B-Instruct-v0.1-GGUF", "mixtral-8x7b-instruct-v0.1.Q4_K_M.gguf", null)]
    [InlineData("llama3-8b", "QuantFactory/Meta-Llama-3-8B-GGUF", "Meta-Llama-3-8B.Q4_K_S.gguf", null)]
    [InlineData("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF", "smollm2-360m-instruct-q8_0.gguf", null)]
    [InlineData("smollm2-1.7b-instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF", "smollm2-1.7b-instruct-q4_k_m.gguf", null)]
    [InlineData("deepseekr1-llama8b", "unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF", "DeepSeek-R1-Distill-Llama-8B-Q4_K_M.gguf", null)]
    [InlineData("stories260k", "ggml-org/models", "tinyllamas/stories260K.gguf", null)]
    public void CandleNamesMapToTheirRepositoryAndFile(string name, string repo, string file, int? gqa)
    {
        var e = ModelRegistry.Get(name);
        Assert.Equal(name, e.Name);
        Assert.Equal(repo, e.Repo);
        Assert.Equal(file, e.File);
        Assert.Equal("main", e.Revision);
        Assert.Equal(gqa, e.Gqa);
        Assert.Equal(file.EndsWith(".bin"), e.IsLegacyGgml);
    }

    [Fact]
    public void Phi3IsPinnedToCandlesCommit()
    {
        var e = ModelRegistry.Get("phi3");
        Assert.Equal("microsoft/Phi-3-mini-4k-instruct-gguf", e.Repo);
        Assert.Equal("Phi-3-mini-4k-instruct-q4.gguf", e.File);
        Assert.Equal("5eef2ce24766d31909c0b269fe90c817a8f263fb", e.Revision);
    }

    [Theory]
    [InlineData("7b", "none")]
    [InlineData("7b-chat", "llama2-chat")]
    [InlineData("7b-mistral-instruct", "mistral")]
    [InlineData("mixtral-instruct", "mistral")]
    [InlineData("7b-zephyr-b", "zephyr")]
    [InlineData("7b-open-chat-3.5", "openchat")]
    [InlineData("7b-starling-a", "openchat")]
    [InlineData("deepseekr1-llama8b", "deepseek")]
    [InlineData("smollm2-360m-instruct", "chatml")]
    [InlineData("stories260k", "none")]
    public void EachNameCarriesItsChatTemplateFamily(string name, string family)
    {
        var e = ModelRegistry.Get(name);
        Assert.Equal(family, e.TemplateName);
        Assert.True(ChatTemplateFamilyNames.TryParse(family, out var parsed));
        Assert.Equal(e.Template, parsed);
    }

    /// <summary>
    /// The small chat models of today's families resolve to their repository and file, and chat renders their files'
    /// own templates (here the publisher's template from ../shared/chat-templates, as the file carries it) rather than
    /// the fallback family: Gemma and Phi-3.5, whose fallback is none, get their turn markers only from the template (Gemma 3 1B's
    /// turns are Gemma 2's; ../shared has Gemma 2's template).
    /// </summary>
    [Theory]
    [InlineData("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf", "chatml", "Qwen-Qwen2.5-7B-Instruct", "<|im_start|>user\nHi<|im_end|>")]
    [InlineData("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "qwen2.5-1.5b-instruct-q4_k_m.gguf", "chatml", "Qwen-Qwen2.5-7B-Instruct", "<|im_start|>user\nHi<|im_end|>")]
    [InlineData("llama3.2-1b-instruct", "bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf", "llama3", "meta-llama-Llama-3.2-3B-Instruct", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>")]
    [InlineData("llama3.2-3b-instruct", "bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q4_K_M.gguf", "llama3", "meta-llama-Llama-3.2-3B-Instruct", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>")]
    [InlineData("gemma2-2b-it", "bartowski/gemma-2-2b-it-GGUF", "gemma-2-2b-it-Q4_K_M.gguf", "none", "google-gemma-2-2b-it", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")]
    [InlineData("gemma3-1b-it", "bartowski/google_gemma-3-1b-it-GGUF", "google_gemma-3-1b-it-Q4_K_M.gguf", "none", "google-gemma-2-2b-it", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")]
    [InlineData("phi3.5-mini-instruct", "bartowski/Phi-3.5-mini-instruct-GGUF", "Phi-3.5-mini-instruct-Q4_K_M.gguf", "none", "microsoft-Phi-3.5-mini-instruct", "<|user|>\nHi<|end|>\n<|assistant|>\n")]
    public void ChatModelsOfTodaysFamiliesResolveAndUseTheFilesTemplate(string name, string repo, string file, string family, string template, string rendered)
    {
        var e = ModelRegistry.Get(name);
        Assert.Equal((repo, file, "main", family), (e.Repo, e.File, e.Revision, e.TemplateName));
        Assert.Null(e.Gqa);
        Assert.Same(e, ModelRegistry.FindByFile(repo, file));

        using var vocab = GgufFile.Open(TestPaths.SharedFile("llamacpp", "stories260K.gguf"));
        var tokenizer = TokenizerFactory.FromMetadata(vocab.Metadata);
        var formatter = ChatFormats.ForTemplate(File.ReadAllText(TestPaths.SharedFile("chat-templates", "templates", template + ".jinja")), tokenizer, e.Template);
        Assert.Contains(rendered, formatter.Render([new ChatTurn("user", "Hi")], addGenerationPrompt: true));
    }

    [Fact]
    public void NamesAreUniqueAndEveryEntryIsAValidHubPath()
    {
        Assert.Equal(ModelRegistry.All.Count, ModelRegistry.Names.Distinct(StringComparer.OrdinalIgnoreCase).Count());
        Assert.Equal("7b", ModelRegistry.DefaultName);
        foreach (var e in ModelRegistry.All)
        {
            HubCache.ValidateRepo(e.Repo);
            HubCache.ValidateFile(e.File);
            Assert.True(ModelLocator.TryParseHubReference(e.HubReference, out var repo, out var file, out _));
            Assert.Equal((e.Repo, e.File), (repo, file));
        }
    }

    [Fact]
    public void CandleSpellingsAndCaseAreAccepted()
    {
        Assert.Equal("smollm2-360m-instruct", ModelRegistry.Get("SmoLM2-360M-Instruct").Name);
        Assert.Equal("7b-chat", ModelRegistry.Get("7B-Chat").Name);
    }

    [Fact]
    public void UnknownNameListsTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => ModelRegistry.Get("8b-nonsense"));
        Assert.Contains("8b-nonsense", e.Message);
        Assert.Contains("stories260k", e.Message);
    }

    [Theory]
    [InlineData("ggml-org/models/tinyllamas/stories260K.gguf", "ggml-org/models", "tinyllamas/stories260K.gguf", "main")]
    [InlineData("TheBloke/Llama-2-7B-GGML/llama-2-7b.ggmlv3.q4_0.bin", "TheBloke/Llama-2-7B-GGML", "llama-2-7b.ggmlv3.q4_0.bin", "main")]
    [InlineData("owner/name@v1.0/model.gguf", "owner/name", "model.gguf", "v1.0")]
    public void HubReferencesParse(string reference, string repo, string file, string revision)
    {
        Assert.True(ModelLocator.TryParseHubReference(reference, out var r, out var f, out var v));
        Assert.Equal((repo, file, revision), (r, f, v));
    }

    [Theory]
    [InlineData("model.gguf")]
    [InlineData("models/model.gguf")]
    [InlineData("/abs/path/to/model.gguf")]
    [InlineData("./owner/name/model.gguf")]
    [InlineData("owner/../name/model.gguf")]
    [InlineData("owner//model.gguf")]
    [InlineData("https://huggingface.co/owner/name/model.gguf")]
    [InlineData("~/owner/name/model.gguf")]
    public void LocalLookingPathsAreNotHubReferences(string reference)
    {
        Assert.False(ModelLocator.TryParseHubReference(reference, out _, out _, out _));
    }

    [Fact]
    public void ExistingLocalFileIsReturnedAsIsWithWhichsSettingsAsInCandle()
    {
        string path = TestPaths.SharedFile("llamacpp", "stories260K.gguf");
        Assert.Equal(path, ModelLocator.Resolve(path, "7b"));
        Assert.Equal(1, ModelLocator.Locate(path, "7b").Gqa);
        var resolved = ModelLocator.Locate(path, "70b-chat");
        Assert.Equal(path, resolved.Path);
        Assert.Equal(8, resolved.Gqa);
        Assert.Equal(ChatTemplateFamily.Llama2Chat, resolved.Template);
        var bare = ModelLocator.Locate(path, null);
        Assert.Null(bare.Entry);
        Assert.Equal(1, bare.Gqa);
        Assert.Equal(ChatTemplateFamily.None, bare.Template);
    }

    [Fact]
    public void MissingLocalFileIsAFileNotFoundError()
    {
        var e = Assert.Throws<FileNotFoundException>(() => ModelLocator.Resolve("no-such-model.gguf", "7b"));
        Assert.Contains("no-such-model.gguf", e.Message);
    }
}

public class ModelLocatorOfflineTests
{
    [Fact]
    public void MissingRelativePathThatLooksLikeAHubFileSaysBothReadingsFailed()
    {
        string cache = TestPaths.NewTempDirectory();
        try
        {
            var options = new HubOptions { CacheDirectory = cache, Offline = true, Endpoint = "http://127.0.0.1:9" };
            var e = Assert.Throws<HubException>(() => ModelLocator.Locate("models/llama/model.gguf", "7b", options));
            Assert.Equal(HubErrorKind.NotInCache, e.Kind);
            Assert.StartsWith("models/llama/model.gguf: no such local file, and as a Hub file: ", e.Message);
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public void WhichOfflineWithAnEmptyCacheNamesTheRepositoryAndFile()
    {
        string cache = TestPaths.NewTempDirectory();
        try
        {
            var options = new HubOptions { CacheDirectory = cache, Offline = true, Endpoint = "http://127.0.0.1:9" };
            var e = Assert.Throws<HubException>(() => ModelLocator.Locate(null, "70b", options));
            Assert.Contains("TheBloke/Llama-2-70B-GGML/llama-2-70b.ggmlv3.q4_0.bin", e.Message);
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }
}

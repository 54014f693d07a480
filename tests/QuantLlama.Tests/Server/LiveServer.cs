using System.ClientModel;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using OpenAI;
using OpenAI.Chat;
using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Server;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Server;

/// <summary>A <see cref="LlamaServer"/> on 127.0.0.1 and a free port, serving stories260K, with clients for it.</summary>
public sealed class LiveServer : IAsyncDisposable
{
    public static readonly string ModelPath = TestPaths.SharedFile("llamacpp", "stories260K.gguf");

    /// <summary>stories260K's own context length is 128; a larger cache leaves room for longer tests.</summary>
    public const int ContextSize = 256;

    private LiveServer(LlamaServer server)
    {
        Server = server;
        Http = new HttpClient { BaseAddress = server.BaseAddress };
    }

    public LlamaServer Server { get; }

    public HttpClient Http { get; }

    public static async Task<LiveServer> StartAsync(int parallel = 4, int queue = 16, string? apiKey = null, int? promptBatch = null)
    {
        var server = await LlamaServer.StartAsync(new ServerOptions
        {
            ModelPath = ModelPath,
            Port = 0,
            Parallel = parallel,
            MaxQueue = queue,
            ContextSize = ContextSize,
            ApiKey = apiKey,
            PromptBatch = promptBatch ?? ServerOptions.DefaultPromptBatch,
        }, logging => logging.ClearProviders());
        await server.ModelLoaded;
        return new LiveServer(server);
    }

    /// <summary>The official OpenAI SDK's chat client, pointed at this server.</summary>
    public ChatClient OpenAiChat(string apiKey = "unused")
        => new("stories260K", new ApiKeyCredential(apiKey), new OpenAIClientOptions { Endpoint = new Uri(Server.BaseAddress, "v1") });

    public Task<HttpResponseMessage> PostJsonAsync(string path, object body) => Http.PostAsJsonAsync(path, body);

    public Task<HttpResponseMessage> PostRawAsync(string path, string json)
        => Http.PostAsync(path, new StringContent(json, System.Text.Encoding.UTF8, "application/json"));

    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response)
        => JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }

    /// <summary>
    /// What the library gives for a one-message conversation alone, greedily: what the server must give for it at
    /// temperature 0.
    /// </summary>
    public static async Task<GenerationResult> ReferenceReplyAsync(string userMessage, int maxTokens, params string[] stop)
    {
        using var model = LlamaModel.Load(ModelPath);
        var tokenizer = TokenizerFactory.FromMetadata(model.File.Metadata);
        using var context = model.CreateContext(new ContextOptions { ContextSize = ContextSize, MaxBatch = ServerOptions.DefaultPromptBatch });
        var session = new ChatSession(context, tokenizer, ChatFormats.ForModel(model, tokenizer));
        var options = new GenerationOptions { MaxTokens = maxTokens, Sampling = SamplingOptions.Greedy, StopStrings = stop };
        GenerationResult? result = null;
        await foreach (var update in session.ReplyAsync([ChatTurn.User(userMessage)], options)) result = update.Result ?? result;
        return result!;
    }
}

/// <summary>One server for a test class (4 slots, a queue of 16).</summary>
public sealed class SharedServer : IAsyncLifetime
{
    public LiveServer Live { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Live = await LiveServer.StartAsync();

    public ValueTask DisposeAsync() => Live.DisposeAsync();
}

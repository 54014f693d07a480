using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using QuantLlama.Generation;
using QuantLlama.Hub;
using QuantLlama.Models;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Generation;

/// <summary>The library's IChatClient on stories260K, composed with Microsoft.Extensions.AI middleware.</summary>
public class LlamaChatClientTests
{
    private static string Stories => TestPaths.SharedFile("llamacpp", "stories260K.gguf");

    private static readonly ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = 24 };

    private static (LlamaModel Model, LlamaChatClient Client) Create()
    {
        var model = LlamaModel.Load(Stories);
        var tok = TokenizerFactory.FromMetadata(model.File.Metadata);
        var client = new LlamaChatClient(model, tok, new FamilyChatFormatter(ChatTemplateFamily.None),
            new LlamaChatClientOptions { Context = new ContextOptions { ContextSize = 128 }, ModelId = "stories260k" });
        return (model, client);
    }

    [Fact]
    public async Task StreamsThroughABuilderWithLoggingAndReportsUsage()
    {
        var (model, inner) = Create();
        using var _ = model;
        var logs = new ListLoggerFactory();
        using var client = new ChatClientBuilder(inner).UseLogging(logs).Build();

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Once upon a time")], Greedy))
            updates.Add(update);
        var response = updates.ToChatResponse();
        Assert.StartsWith(", there was a little girl named Lily.", response.Text);
        Assert.True(updates.Count > 5, "the reply comes in pieces");
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(5, response.Usage?.InputTokenCount);
        Assert.Equal(24, response.Usage?.OutputTokenCount);
        Assert.Equal("stories260k", response.ModelId);
        Assert.Contains(logs.Messages, m => m.Contains("GetStreamingResponseAsync", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AResentConversationReusesTheCacheAndHonoursStopSequences()
    {
        var (model, client) = Create();
        using var _ = model;
        using var __ = client;
        List<ChatMessage> history = [new(ChatRole.User, "Once upon a time")];
        var first = await client.GetResponseAsync(history, Greedy);
        history.AddRange(first.Messages);
        history.Add(new ChatMessage(ChatRole.User, " One day"));
        var second = await client.GetResponseAsync(history, new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = ["."] });
        Assert.Equal(ChatFinishReason.Stop, second.FinishReason);
        Assert.DoesNotContain(".", second.Text);
        Assert.True(second.Usage!.CachedInputTokenCount >= 5 + 24 - 2, $"{second.Usage.CachedInputTokenCount} of {second.Usage.InputTokenCount} cached");
    }

    [Fact]
    public async Task CancellationAndUnsupportedOptionsAreReported()
    {
        var (model, client) = Create();
        using var _ = model;
        using var __ = client;
        using var cts = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Once upon a time")], Greedy, cts.Token))
                cts.Cancel();
        });
        await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")],
            new ChatOptions { Tools = [AIFunctionFactory.Create(() => 1, "one")] }));
        Assert.Equal("stories260k", client.GetService<ChatClientMetadata>()?.DefaultModelId);
        // The client still serves after both.
        Assert.StartsWith(", there was", (await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Once upon a time")], Greedy)).Text);
    }

    private sealed class ListLoggerFactory : ILoggerFactory
    {
        public List<string> Messages { get; } = [];

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void AddProvider(ILoggerProvider provider) { }

        public void Dispose() { }

        private sealed class Logger(ListLoggerFactory owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner.Messages) owner.Messages.Add(formatter(state, exception));
            }
        }
    }
}

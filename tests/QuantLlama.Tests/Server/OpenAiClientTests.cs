using System.Text;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using MeaiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using MeaiFinishReason = Microsoft.Extensions.AI.ChatFinishReason;
using OpenAiChatMessage = OpenAI.Chat.ChatMessage;
using OpenAiFinishReason = OpenAI.Chat.ChatFinishReason;

namespace QuantLlama.Tests.Server;

/// <summary>
/// The server through real clients: the official OpenAI SDK and Microsoft.Extensions.AI's IChatClient over it. At
/// temperature 0 each reply must be exactly what the library gives for the same conversation alone.
/// </summary>
public sealed class OpenAiClientTests(SharedServer shared) : IClassFixture<SharedServer>
{
    private const string Prompt = "Once upon a time";
    private LiveServer Live => shared.Live;

    [Fact]
    public async Task OpenAiSdk_CompletesAChat_AsTheLibraryDoes()
    {
        var expected = await LiveServer.ReferenceReplyAsync(Prompt, 20);
        ChatCompletion completion = await Live.OpenAiChat().CompleteChatAsync(
            [new UserChatMessage(Prompt)], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 20 });

        Assert.Equal(expected.Text, completion.Content[0].Text);
        Assert.Equal(OpenAiFinishReason.Length, completion.FinishReason);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal(20, completion.Usage.OutputTokenCount);
        Assert.Equal(expected.PromptTokens, completion.Usage.InputTokenCount);
        Assert.Equal(expected.PromptTokens + 20, completion.Usage.TotalTokenCount);
        Assert.StartsWith("chatcmpl-", completion.Id);
    }

    [Fact]
    public async Task OpenAiSdk_StreamsTheSameTextWithUsage()
    {
        var expected = await LiveServer.ReferenceReplyAsync(Prompt, 30);
        var text = new StringBuilder();
        OpenAiFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in Live.OpenAiChat().CompleteChatStreamingAsync(
                           [new UserChatMessage(Prompt)], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 30 }))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            finish = update.FinishReason ?? finish;
            usage = update.Usage ?? usage;
        }

        Assert.Equal(expected.Text, text.ToString());
        Assert.True(updates > 2, $"{updates} updates: the reply was not streamed");
        Assert.Equal(OpenAiFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(30, usage.OutputTokenCount);
        Assert.Equal(expected.PromptTokens, usage.InputTokenCount);
    }

    [Fact]
    public async Task OpenAiSdk_StopSequenceEndsTheReplyBeforeIt()
    {
        var full = await LiveServer.ReferenceReplyAsync(Prompt, 40);
        string stop = full.Text.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3];
        var expected = await LiveServer.ReferenceReplyAsync(Prompt, 40, stop);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 };
        options.StopSequences.Add(stop);

        ChatCompletion completion = await Live.OpenAiChat().CompleteChatAsync([new UserChatMessage(Prompt)], options);

        Assert.Equal(expected.Text, completion.Content[0].Text);
        Assert.DoesNotContain(stop, completion.Content[0].Text);
        Assert.Equal(OpenAiFinishReason.Stop, completion.FinishReason);
    }

    [Fact]
    public async Task OpenAiSdk_ResentConversationReportsCachedTokens()
    {
        var chat = Live.OpenAiChat();
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 10 };
        List<OpenAiChatMessage> messages = [new SystemChatMessage("A story about a cat."), new UserChatMessage("Once there was a cat named Tom.")];
        ChatCompletion first = await chat.CompleteChatAsync(messages, options);
        messages.Add(new AssistantChatMessage(first.Content[0].Text));
        messages.Add(new UserChatMessage(" Tom liked to play."));
        ChatCompletion second = await chat.CompleteChatAsync(messages, options);

        // The re-sent history lands in the slot that holds it; only the new turn is computed (at most the first
        // prompt's last token is computed again, as the cache keeps a prefix short of a prompt's last token).
        Assert.True(second.Usage.InputTokenDetails.CachedTokenCount >= first.Usage.InputTokenCount - 1,
            $"{second.Usage.InputTokenDetails.CachedTokenCount} cached of {second.Usage.InputTokenCount}; the first prompt had {first.Usage.InputTokenCount}");
    }

    [Fact]
    public async Task ExtensionsAi_ChatClient_RespondsAndStreams()
    {
        var expected = await LiveServer.ReferenceReplyAsync(Prompt, 25);
        using IChatClient client = Live.OpenAiChat().AsIChatClient();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 25 };

        var response = await client.GetResponseAsync([new MeaiChatMessage(ChatRole.User, Prompt)], options);
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(MeaiFinishReason.Length, response.FinishReason);
        Assert.Equal(25, response.Usage?.OutputTokenCount);
        Assert.Equal(expected.PromptTokens, response.Usage?.InputTokenCount);

        var streamed = await client.GetStreamingResponseAsync([new MeaiChatMessage(ChatRole.User, Prompt)], options).ToChatResponseAsync();
        Assert.Equal(expected.Text, streamed.Text);
        Assert.Equal(MeaiFinishReason.Length, streamed.FinishReason);
        Assert.Equal(25, streamed.Usage?.OutputTokenCount);
    }

    [Fact]
    public async Task ExtensionsAi_StopSequencesAndContentPartsAreHonoured()
    {
        var full = await LiveServer.ReferenceReplyAsync(Prompt, 40);
        string stop = full.Text.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2];
        var expected = await LiveServer.ReferenceReplyAsync(Prompt, 40, stop);
        using IChatClient client = Live.OpenAiChat().AsIChatClient();
        // Two text parts in one message: the server joins them.
        var message = new MeaiChatMessage(ChatRole.User, [new TextContent("Once upon"), new TextContent(" a time")]);

        var response = await client.GetResponseAsync([message], new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = [stop] });

        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(MeaiFinishReason.Stop, response.FinishReason);

        // Streamed, no piece of the stop sequence is ever sent.
        var pieces = new List<string>();
        await foreach (var update in client.GetStreamingResponseAsync([message], new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = [stop] }))
            pieces.Add(update.Text);
        Assert.Equal(expected.Text, string.Concat(pieces));
    }
}

using System.Net.Http.Json;
using System.Text;
using OpenAI.Chat;

namespace QuantLlama.Tests.Server;

/// <summary>Slots under load: concurrent streams, a client that goes away, a full queue.</summary>
public sealed class ConcurrencyTests
{
    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily and Ben", "The dog ran", "One day, a little girl", "Tom had a red ball",
        "The sun was", "Mom said", "There was a big tree",
    ];

    [Fact]
    public async Task EightStreamsOnFourSlots_EachGetsItsOwnGreedyText()
    {
        await using var live = await LiveServer.StartAsync(parallel: 4, queue: 8);
        var chat = live.OpenAiChat();
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 };

        var alone = new List<string>();
        foreach (string prompt in Prompts) alone.Add(await StreamAsync(chat, prompt, options));
        var together = await Task.WhenAll(Prompts.Select(prompt => Task.Run(() => StreamAsync(chat, prompt, options))));

        Assert.Equal(alone, together);
        Assert.Equal(Prompts.Length, alone.Distinct().Count());
        // A slot is released as its generation thread ends, which can be after the client has read the whole stream.
        Assert.True(SpinWait.SpinUntil(() => live.Server.Slots!.BusyCount == 0, TimeSpan.FromMinutes(1)), "a slot stayed busy");
        Assert.Equal(0, live.Server.Slots!.QueueLength);
    }

    /// <summary>
    /// Streams that start while the earlier ones are mid-generation, their prompts read in batches of 8 tokens
    /// beside the others' tokens, each give exactly the text they give alone.
    /// </summary>
    [Fact]
    public async Task StreamsStartingWhileOthersGenerate_EachGetsItsOwnGreedyText()
    {
        await using var live = await LiveServer.StartAsync(parallel: 4, promptBatch: 8);
        var chat = live.OpenAiChat();
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 48 };
        string[] prompts =
        [
            "Once upon a time",
            "Lily and Ben went to the park with their mom. They saw a big tree and a little dog. The dog was sad because it lost its ball.",
            "The dog ran",
            "Tom had a red ball. He liked to throw it high in the sky. One day the ball went over the fence and into the garden of an old man.",
        ];
        var alone = new List<string>();
        foreach (string prompt in prompts) alone.Add(await StreamAsync(chat, prompt, options));

        // Each stream starts once the one before it has received three pieces of text.
        var streams = new List<Task<string>>();
        for (int i = 0; i < prompts.Length; i++)
        {
            var started = new TaskCompletionSource();
            string prompt = prompts[i];
            streams.Add(Task.Run(async () =>
            {
                var text = new StringBuilder();
                int pieces = 0;
                await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage(prompt)], options))
                    foreach (var part in update.ContentUpdate)
                    {
                        text.Append(part.Text);
                        if (++pieces == 3) started.TrySetResult();
                    }
                started.TrySetResult();
                return text.ToString();
            }));
            await started.Task;
        }

        Assert.Equal(alone, await Task.WhenAll(streams));
        Assert.True(SpinWait.SpinUntil(() => live.Server.Slots!.BusyCount == 0, TimeSpan.FromMinutes(1)), "a slot stayed busy");
    }

    [Fact]
    public async Task TwoConversationsTakingTurns_EachKeepsItsOwnCachedSlot()
    {
        await using var live = await LiveServer.StartAsync(parallel: 2);
        var chat = live.OpenAiChat();
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 };
        List<OpenAI.Chat.ChatMessage> cat = [new UserChatMessage("Once there was a cat named Tom.")];
        List<OpenAI.Chat.ChatMessage> dog = [new UserChatMessage("Lily had a big brown dog.")];
        foreach (var conversation in new[] { cat, dog })
            conversation.Add(new AssistantChatMessage((await chat.CompleteChatAsync(conversation, options)).Value.Content[0].Text));

        foreach (var conversation in new[] { cat, dog })
        {
            conversation.Add(new UserChatMessage(" They played."));
            ChatCompletion next = await chat.CompleteChatAsync(conversation, options);
            // The history is cached in the conversation's own slot: only the new turn is computed (give or take
            // the tokens where the texts join).
            Assert.True(next.Usage.InputTokenCount - next.Usage.InputTokenDetails.CachedTokenCount <= 8,
                $"{next.Usage.InputTokenDetails.CachedTokenCount} of {next.Usage.InputTokenCount} prompt tokens cached");
        }
    }

    [Fact]
    public async Task ClientThatLeavesMidStream_FreesItsSlot()
    {
        await using var live = await LiveServer.StartAsync(parallel: 1, queue: 4);
        var chat = live.OpenAiChat();
        using (var leave = new CancellationTokenSource())
        {
            int updates = 0;
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Once upon a time")],
                                   new ChatCompletionOptions { Temperature = 0.8f, MaxOutputTokenCount = 1000 }, leave.Token))
                {
                    if (++updates == 2) leave.Cancel(); // the role and the first text are in: walk away
                }
            });
        }

        // The only slot must come free for this one to be served.
        ChatCompletion next = await chat.CompleteChatAsync([new UserChatMessage("The dog ran")],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 });
        Assert.Equal(5, next.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task FullQueue_Gets503WithRetryAfter_ThenTheNextRequestIsServed()
    {
        await using var live = await LiveServer.StartAsync(parallel: 1, queue: 0);
        var body = new { messages = new[] { new { role = "user", content = "Once upon a time" } }, max_tokens = 5, temperature = 0 };
        using (await live.Server.Slots!.AcquireAsync([])) // the one slot is busy, and no request may wait
        {
            using var refused = await live.PostJsonAsync("v1/chat/completions", body);
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.True(refused.Headers.RetryAfter is not null, "no Retry-After");
            var error = (await LiveServer.JsonAsync(refused)).GetProperty("error");
            Assert.Equal("queue_full", error.GetProperty("code").GetString());
        }
        using var served = await live.PostJsonAsync("v1/chat/completions", body);
        Assert.Equal(System.Net.HttpStatusCode.OK, served.StatusCode);
        Assert.Equal(1, live.Server.Metrics.Rejected);
    }

    [Fact]
    public async Task WaitingRequest_IsServedWhenTheSlotComesFree()
    {
        await using var live = await LiveServer.StartAsync(parallel: 1, queue: 1);
        var slot = await live.Server.Slots!.AcquireAsync([]);
        var waiting = live.Server.Slots.AcquireAsync([1, 2, 3]);
        Assert.False(waiting.IsCompleted);
        Assert.Equal(1, live.Server.Slots.QueueLength);
        await Assert.ThrowsAsync<QuantLlama.Server.QueueFullException>(() => live.Server.Slots.AcquireAsync([]));
        slot.Dispose();
        using (await waiting) Assert.Equal(0, live.Server.Slots.QueueLength);
        Assert.Equal(0, live.Server.Slots.BusyCount);
    }

    [Fact]
    public async Task RequestThatGivesUpWhileWaiting_LeavesTheQueue()
    {
        await using var live = await LiveServer.StartAsync(parallel: 1, queue: 1);
        var slots = live.Server.Slots!;
        using var giveUp = new CancellationTokenSource();
        using (await slots.AcquireAsync([]))
        {
            var waiting = slots.AcquireAsync([1], giveUp.Token);
            Assert.Equal(1, slots.QueueLength);
            giveUp.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
            Assert.Equal(0, slots.QueueLength);
        }
        Assert.Equal(0, slots.BusyCount); // the slot was not handed to the request that left
    }

    [Fact]
    public async Task StoppingTheServer_LetsTheStreamInFlightFinish()
    {
        var live = await LiveServer.StartAsync(parallel: 1);
        await using (live)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions")
            {
                Content = JsonContent.Create(new { prompt = "Once upon a time", max_tokens = 100, temperature = 0, stream = true }),
            };
            using var response = await live.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync());
            var stopping = live.Server.StopAsync();
            string rest = await reader.ReadToEndAsync();
            await stopping;
            Assert.EndsWith("data: [DONE]\n\n", rest);
        }
    }

    private static async Task<string> StreamAsync(ChatClient chat, string prompt, ChatCompletionOptions options)
    {
        var text = new StringBuilder();
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage(prompt)], options))
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
        return text.ToString();
    }
}

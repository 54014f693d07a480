using System.Net.Http.Json;

namespace QuantLlama.Tests.Server;

[CollectionDefinition("ManagedHeap", DisableParallelization = true)]
public sealed class ManagedHeapCollection;

/// <summary>
/// Requests leave nothing behind: the managed heap after a full collection is the same after many requests as
/// after a few. Runs alone, so nothing else allocates in the process meanwhile.
/// </summary>
[Collection("ManagedHeap")]
public sealed class MemoryTests
{
    [Fact]
    public async Task TheManagedHeapDoesNotGrowWithRequests()
    {
        await using var live = await LiveServer.StartAsync(parallel: 2);
        // Streaming and plain chat completions, text completions, and clients that leave mid-stream.
        async Task ServeAsync(int count)
        {
            for (int i = 0; i < count; i++)
            {
                string content = $"Request {i}: tell me about a cat.";
                switch (i % 4)
                {
                    case 0:
                        (await live.PostJsonAsync("v1/chat/completions", new { messages = new[] { new { role = "user", content } }, max_tokens = 4, temperature = 0 })).EnsureSuccessStatusCode();
                        break;
                    case 1:
                        var streamed = await live.PostJsonAsync("v1/chat/completions", new { messages = new[] { new { role = "user", content } }, max_tokens = 4, stream = true });
                        await streamed.Content.ReadAsStringAsync();
                        break;
                    case 2:
                        (await live.PostJsonAsync("v1/completions", new { prompt = content, max_tokens = 4 })).EnsureSuccessStatusCode();
                        break;
                    default:
                        using (var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
                        {
                            Content = JsonContent.Create(new { messages = new[] { new { role = "user", content } }, max_tokens = 200, stream = true }),
                        })
                        using (var response = await live.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
                        {
                            var stream = await response.Content.ReadAsStreamAsync();
                            Assert.True(await stream.ReadAsync(new byte[16]) > 0); // then leave
                        }
                        break;
                }
            }
            // A client that left frees its slot once the server notices; wait until every slot is free again.
            Assert.True(SpinWait.SpinUntil(() => live.Server.Slots!.BusyCount == 0, TimeSpan.FromMinutes(1)), "slots stayed busy");
        }

        // The first hundred requests fill the runtime's and Kestrel's pools and caches (the heap grows by about
        // 100 KB, then stays); the next ones must add nothing. A leak grows the heap in every round, where something
        // filled once (a pool, a lazily built table, what the suite's earlier tests left to settle) shows in one or
        // two rounds only, so the smallest growth of three rounds is the one judged.
        await ServeAsync(100);
        var heap = new List<long> { GC.GetTotalMemory(forceFullCollection: true) };
        for (int round = 0; round < 3; round++)
        {
            await ServeAsync(100);
            heap.Add(GC.GetTotalMemory(forceFullCollection: true));
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"managed heap after 100, 200, 300, 400 requests: {string.Join(", ", heap)} bytes");
        // A leak of even 300 bytes a request would show as 30 KB in each round.
        long growth = Enumerable.Range(1, 3).Min(i => heap[i] - heap[i - 1]);
        Assert.True(growth < 30_000, $"the managed heap grew in each round of 100 requests: {string.Join(", ", heap)} bytes");
    }
}

using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using QuantLlama.Server;

namespace QuantLlama.Tests.Server;

/// <summary>The wire format of each endpoint, read raw: text completions, SSE chunks, models, health, tokenizer, metrics.</summary>
public sealed class EndpointTests(SharedServer shared) : IClassFixture<SharedServer>
{
    private const string Prompt = "Once upon a time";
    private LiveServer Live => shared.Live;

    [Fact]
    public async Task TextCompletion_GivesTheGreedyContinuation()
    {
        var expected = await LiveServer.ReferenceReplyAsync(Prompt, 15);
        using var response = await Live.PostJsonAsync("v1/completions", new { prompt = Prompt, max_tokens = 15, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = await LiveServer.JsonAsync(response);

        Assert.Equal("text_completion", json.GetProperty("object").GetString());
        Assert.StartsWith("cmpl-", json.GetProperty("id").GetString());
        Assert.Equal("stories260K", json.GetProperty("model").GetString());
        var choice = json.GetProperty("choices")[0];
        Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(expected.PromptTokens, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(15, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task TextCompletion_Streams()
    {
        var expected = await LiveServer.ReferenceReplyAsync(Prompt, 15);
        var events = await StreamAsync("v1/completions",
            new { prompt = Prompt, max_tokens = 15, temperature = 0, stream = true, stream_options = new { include_usage = true } });

        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("text_completion", c.GetProperty("object").GetString()));
        var choices = chunks.Where(c => c.GetProperty("choices").GetArrayLength() == 1).Select(c => c.GetProperty("choices")[0]).ToList();
        Assert.Equal(expected.Text, string.Concat(choices.Select(c => c.GetProperty("text").GetString())));
        Assert.Equal("length", choices[^1].GetProperty("finish_reason").GetString());
        Assert.Equal(15, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ChatStream_FirstDeltaHasTheRole_AndUsageOnlyWhenAsked()
    {
        var events = await StreamAsync("v1/chat/completions",
            new { messages = new[] { new { role = "user", content = Prompt } }, max_tokens = 5, temperature = 0, stream = true });

        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        Assert.Equal("length", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.All(chunks, c => Assert.False(c.TryGetProperty("usage", out _)));
    }

    [Fact]
    public async Task ModelsHealthAndMetrics()
    {
        var models = await Live.Http.GetFromJsonAsync<JsonElement>("v1/models");
        Assert.Equal("list", models.GetProperty("object").GetString());
        Assert.Equal("stories260K", models.GetProperty("data")[0].GetProperty("id").GetString());

        using var health = await Live.Http.GetAsync("health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal("ok", (await LiveServer.JsonAsync(health)).GetProperty("status").GetString());

        using (await Live.PostJsonAsync("v1/completions", new { prompt = Prompt, max_tokens = 4 })) { }
        string metrics = await Live.Http.GetStringAsync("metrics");
        foreach (string name in (string[])["requests_total", "prompt_tokens_total", "generated_tokens_total", "generated_tokens_per_second",
                     "queue_length", "slots_busy"])
            Assert.Contains($"\n# TYPE quantllama_{name} ", "\n" + metrics);
        Assert.Matches(@"(?m)^quantllama_requests_total [1-9]", metrics);
        Assert.Matches(@"(?m)^quantllama_slots_total 4$", metrics);
    }

    [Fact]
    public async Task TokenizeAndDetokenize_RoundTrip()
    {
        using var tokenized = await Live.PostJsonAsync("tokenize", new { content = Prompt });
        int[] tokens = [.. (await LiveServer.JsonAsync(tokenized)).GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32())];
        Assert.NotEmpty(tokens);

        using var withBos = await Live.PostJsonAsync("tokenize", new { content = Prompt, add_special = true });
        Assert.Equal(tokens.Length + 1, (await LiveServer.JsonAsync(withBos)).GetProperty("tokens").GetArrayLength());

        using var detokenized = await Live.PostJsonAsync("detokenize", new { tokens });
        Assert.Equal(Prompt, (await LiveServer.JsonAsync(detokenized)).GetProperty("content").GetString()!.TrimStart());
    }

    [Fact]
    public async Task Health_Is503UntilTheModelIsLoaded()
    {
        // A FIFO as the model file: loading blocks until something writes to it, so the server is caught loading.
        Assert.SkipWhen(OperatingSystem.IsWindows(), "needs a POSIX FIFO");
        string fifo = Path.Combine(TestPaths.NewTempDirectory(), "model.gguf");
        Assert.Equal(0, MakeFifo(fifo));
        var server = await LlamaServer.StartAsync(new ServerOptions { ModelPath = fifo, Port = 0 }, logging => logging.ClearProviders());
        await using (server)
        {
            using var http = new HttpClient { BaseAddress = server.BaseAddress };
            using (var health = await http.GetAsync("health"))
                Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
            using (var chat = await http.PostAsJsonAsync("v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } } }))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, chat.StatusCode);
                Assert.Equal("model_loading", (await LiveServer.JsonAsync(chat)).GetProperty("error").GetProperty("code").GetString());
            }
            await File.WriteAllBytesAsync(fifo, "not a model"u8.ToArray()); // the load fails; the server stays up, not ready
            await Assert.ThrowsAnyAsync<Exception>(() => server.ModelLoaded);
            using (var health = await http.GetAsync("health"))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
                Assert.Equal("model_load_failed", (await LiveServer.JsonAsync(health)).GetProperty("error").GetProperty("code").GetString());
            }
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int MakeFifo(string path, uint mode = 0x180);

    /// <summary>The data of each Server-Sent Event of a streamed response.</summary>
    private async Task<List<string>> StreamAsync(string path, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        using var response = await Live.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        string text = await response.Content.ReadAsStringAsync();
        Assert.EndsWith("\n\n", text);
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).ToList();
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        return [.. events.Select(e => e["data: ".Length..])];
    }
}

using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace QuantLlama.Tests.Server;

/// <summary>
/// Every kind of bad request gets a 4xx with OpenAI's error body, and the server goes on serving: each case is
/// followed by a good request.
/// </summary>
public sealed class BadInputTests(SharedServer shared) : IClassFixture<SharedServer>
{
    private LiveServer Live => shared.Live;

    public static TheoryData<string, string, string?> BadChatBodies => new()
    {
        // body, reason, the param the error names (null: none)
        { "{\"messages\": [", "malformed JSON", null },
        { "[1, 2]", "not an object", null },
        { "{}", "no messages", "messages" },
        { "{\"messages\": []}", "empty messages", "messages" },
        { "{\"messages\": \"hello\"}", "messages not an array", "messages" },
        { "{\"messages\": [\"hello\"]}", "a message not an object", "messages[0]" },
        { "{\"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", "unknown role", "messages[0].role" },
        { "{\"messages\": [{\"role\": \"user\"}]}", "no content", "messages[0].content" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": 42}]}", "content a number", "messages[0].content" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"x\"}}]}]}", "an image part", "messages[0].content" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": \"hot\"}", "temperature a string", "temperature" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": 5}", "temperature out of range", "temperature" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_p\": 0}", "top_p zero", "top_p" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 2.5}", "max_tokens fractional", "max_tokens" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 0}", "max_tokens zero", "max_tokens" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": 7}", "stop a number", "stop" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": [\"\"]}", "an empty stop", "stop" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream\": \"yes\"}", "stream a string", "stream" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 2}", "n > 1", "n" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"logprobs\": true}", "logprobs", "logprobs" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_logprobs\": 2}", "top_logprobs", "top_logprobs" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]}", "tools", "tools" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tool_choice\": \"auto\"}", "tool_choice", "tool_choice" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"functions\": []}", "functions", "functions" },
        { "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"response_format\": {\"type\": \"json_object\"}}", "JSON mode", "response_format" },
        { "{\"messages\": [{\"role\": \"tool\", \"content\": \"42\", \"tool_call_id\": \"1\"}]}", "a tool message", "messages[0].role" },
    };

    [Theory]
    [MemberData(nameof(BadChatBodies))]
    public async Task BadChatRequest_Gets400_AndTheNextIsServed(string body, string reason, string? param)
    {
        using var response = await Live.PostRawAsync("v1/chat/completions", body);
        var error = await AssertErrorAsync(response, HttpStatusCode.BadRequest, reason);
        Assert.Equal(param, error.GetProperty("param").GetString());
        await AssertServedAsync();
    }

    [Fact]
    public async Task InvalidUtf8_Gets400()
    {
        byte[] body = [.. "{\"messages\": [{\"role\": \"user\", \"content\": \""u8, 0xC3, 0x28, 0xFF, .. "\"}]}"u8];
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await Live.Http.PostAsync("v1/chat/completions", content);
        await AssertErrorAsync(response, HttpStatusCode.BadRequest, "invalid UTF-8");
        await AssertServedAsync();
    }

    [Fact]
    public async Task PromptLongerThanTheContext_Gets400()
    {
        string story = string.Concat(Enumerable.Repeat("Once upon a time there was a little dog. ", 60));
        using var response = await Live.PostJsonAsync("v1/chat/completions", new { messages = new[] { new { role = "user", content = story } } });
        var error = await AssertErrorAsync(response, HttpStatusCode.BadRequest, "prompt too long");
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
        await AssertServedAsync();
    }

    [Fact]
    public async Task MaxTokensBeyondTheContext_IsClampedToWhatFits()
    {
        using var response = await Live.PostJsonAsync("v1/completions", new { prompt = "Once upon a time", max_tokens = 100_000, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = await LiveServer.JsonAsync(response);
        var usage = json.GetProperty("usage");
        Assert.True(usage.GetProperty("total_tokens").GetInt32() <= LiveServer.ContextSize + 1, usage.ToString());
        string finish = json.GetProperty("choices")[0].GetProperty("finish_reason").GetString()!;
        Assert.True(finish is "length" or "stop", finish);
    }

    [Fact]
    public async Task BodyOverTheLimit_Gets413()
    {
        string huge = new('a', 2 << 20);
        using var response = await Live.PostJsonAsync("v1/chat/completions", new { messages = new[] { new { role = "user", content = huge } } });
        await AssertErrorAsync(response, HttpStatusCode.RequestEntityTooLarge, "body over 1 MiB");
        await AssertServedAsync();
    }

    [Fact]
    public async Task BadTextCompletionAndTokenizerRequests_Get400()
    {
        foreach (var (path, body) in new[]
                 {
                     ("v1/completions", "{}"),
                     ("v1/completions", "{\"prompt\": 12}"),
                     ("v1/completions", "{\"prompt\": \"a\", \"echo\": true}"),
                     ("v1/completions", "{\"prompt\": \"a\", \"logprobs\": 3}"),
                     ("tokenize", "{\"content\": 5}"),
                     ("detokenize", "{\"tokens\": [1, 99999]}"),
                     ("detokenize", "{\"tokens\": \"1 2\"}"),
                 })
        {
            using var response = await Live.PostRawAsync(path, body);
            await AssertErrorAsync(response, HttpStatusCode.BadRequest, $"{path} {body}");
        }
        await AssertServedAsync();
    }

    [Fact]
    public async Task UnknownPath_Gets404WithAnErrorBody()
    {
        using var response = await Live.PostRawAsync("v1/embeddings", "{\"input\": \"hi\"}");
        await AssertErrorAsync(response, HttpStatusCode.NotFound, "no such endpoint");
        await AssertServedAsync();
    }

    [Fact]
    public async Task ApiKey_IsRequiredEverywhereButHealth()
    {
        await using var live = await LiveServer.StartAsync(parallel: 1, apiKey: "sesame");
        var body = new { messages = new[] { new { role = "user", content = "Once upon a time" } }, max_tokens = 3 };

        using (var missing = await live.PostJsonAsync("v1/chat/completions", body))
            Assert.Equal("invalid_api_key", (await AssertErrorAsync(missing, HttpStatusCode.Unauthorized, "no key")).GetProperty("code").GetString());
        var wrong = new HttpRequestMessage(HttpMethod.Get, "v1/models") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", "open") } };
        using (var refused = await live.Http.SendAsync(wrong))
            await AssertErrorAsync(refused, HttpStatusCode.Unauthorized, "wrong key");
        using (var health = await live.Http.GetAsync("health"))
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);

        var completion = await live.OpenAiChat("sesame").CompleteChatAsync([new OpenAI.Chat.UserChatMessage("Once upon a time")],
            new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 3 });
        Assert.Equal(3, completion.Value.Usage.OutputTokenCount);
    }

    private static async Task<JsonElement> AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, string reason)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"{reason}: {(int)response.StatusCode} {text}");
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()), reason);
        Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
        Assert.True(error.TryGetProperty("param", out _) && error.TryGetProperty("code", out _), $"{reason}: {text}");
        return error;
    }

    private async Task AssertServedAsync()
    {
        using var response = await Live.PostJsonAsync("v1/chat/completions",
            new { messages = new[] { new { role = "user", content = "Once upon a time" } }, max_tokens = 3, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(3, (await LiveServer.JsonAsync(response)).GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }
}

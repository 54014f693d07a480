using System.CommandLine;
using QuantLlama.Compute;
using QuantLlama.Hub;
using QuantLlama.Models;
using QuantLlama.Server;

namespace QuantLlama.Cli.Commands;

/// <summary><c>quantllama serve</c>: an OpenAI-compatible HTTP server (see docs/server.md).</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var command = new Command("serve", "Serve a model over an OpenAI-compatible HTTP API (chat and text completions, streaming)");
        var model = new Option<string?>("--model") { Description = "GGUF (or legacy GGML) model file; downloaded from the Hub for --which when absent" };
        var which = new Option<string>("--which") { Description = "Model to use when --model is not given (see `quantllama models`)", DefaultValueFactory = _ => ModelRegistry.DefaultName };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Hugging Face tokenizer.json to use instead of the model file's vocabulary" };
        var gqa = new Option<int?>("--gqa") { Description = "Group-query attention factor for legacy GGML files (8 for Llama-2-70B)" };
        var host = new Option<string>("--host") { Description = "Address to listen on (an IP address or localhost)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port to listen on (0: any free port)", DefaultValueFactory = _ => 8080 };
        var parallel = new Option<int>("--parallel", "-np") { Description = "Conversation slots: requests generated at once, each with its own KV cache", DefaultValueFactory = _ => 4 };
        var ctx = new Option<int?>("--ctx") { Description = "Positions in each slot's KV cache (default: the model's context length, at most 4096)" };
        var apiKey = new Option<string?>("--api-key") { Description = "Require this key (Authorization: Bearer KEY) on every endpoint but /health" };
        var threads = new Option<int?>("--threads", "-t") { Description = "Worker threads for the matrix products (default: all cores)" };
        var queue = new Option<int>("--queue") { Description = "Requests that may wait for a slot; more get 503 with Retry-After", DefaultValueFactory = _ => 16 };
        var noBatching = new Option<bool>("--no-batching") { Description = "Generate each slot on its own instead of all busy slots' tokens in one pass through the weights (the same tokens, slower in aggregate)" };
        var ubatch = new Option<int>("--ubatch-size", "-ub") { Description = "Prompt tokens per pass through the weights; a prompt read beside generating slots delays their next token by one such pass at most", DefaultValueFactory = _ => ServerOptions.DefaultPromptBatch };
        var noRepack = RepackOption.Create();
        var noWarmup = new Option<bool>("--no-warmup") { Description = "Skip the throwaway forward pass run at load (the first request then compiles and faults in the model itself)" };
        foreach (var o in new Option[] { model, which, tokenizer, gqa, host, port, parallel, ctx, apiKey, threads, queue, noBatching, ubatch, noRepack, noWarmup })
            command.Options.Add(o);

        command.SetAction(parse =>
        {
            string whichName = parse.GetValue(which)!;
            var registryEntry = ModelRegistry.Get(whichName); // an unknown name is an error even beside --model
            int? threadCount = parse.GetValue(threads);
            if (threadCount is <= 0) throw new CliUsageException($"--threads must be positive, got {threadCount}");
            if (parse.GetValue(gqa) is <= 0) throw new CliUsageException($"--gqa must be positive, got {parse.GetValue(gqa)}");
            var resolved = ModelLocator.Locate(parse.GetValue(model), whichName, ConsoleProgress.HubOptions());
            var options = new ServerOptions
            {
                ModelPath = resolved.Path,
                Gqa = parse.GetValue(gqa) ?? resolved.Gqa,
                Model = new ModelOptions { RepackForPrompts = !parse.GetValue(noRepack), WarmUp = !parse.GetValue(noWarmup) },
                TokenizerPath = parse.GetValue(tokenizer),
                ChatTemplate = resolved.Entry?.Template ?? registryEntry.Template,
                ModelId = parse.GetValue(model) == null ? whichName : null,
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                Parallel = parse.GetValue(parallel),
                BatchedDecoding = !parse.GetValue(noBatching),
                ContextSize = parse.GetValue(ctx),
                PromptBatch = parse.GetValue(ubatch),
                ApiKey = parse.GetValue(apiKey),
                MaxQueue = parse.GetValue(queue),
            };
            if (threadCount is int t) WorkerPool.SetThreadCount(t);
            return Serve(options).GetAwaiter().GetResult();
        });
        return command;
    }

    private static async Task<int> Serve(ServerOptions options)
    {
        LlamaServer server;
        try
        {
            server = await LlamaServer.StartAsync(options);
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }
        await using (server)
        {
            // Ctrl-C or SIGTERM stops the host, which lets requests in flight finish first.
            var shutdown = server.WaitForShutdownAsync();
            var first = await Task.WhenAny(server.ModelLoaded, shutdown);
            if (first == server.ModelLoaded && server.ModelLoaded.IsFaulted)
            {
                await server.StopAsync();
                throw server.ModelLoaded.Exception!.InnerException!;
            }
            await shutdown;
        }
        return 0;
    }
}

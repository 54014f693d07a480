using Microsoft.Extensions.AI;
using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Tokenizers;

namespace QuantLlama.Samples;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: QuantLlama.Samples MODEL.gguf");
            return 2;
        }
        await RunAsync(args[0], Console.Out);
        return 0;
    }

    /// <summary>Load once, chat in a session, then the same model through IChatClient.</summary>
    public static async Task RunAsync(string modelPath, TextWriter output)
    {
        // One loaded model (memory-mapped weights) serves any number of conversations.
        using var model = LlamaModel.Load(modelPath);
        var tokenizer = TokenizerFactory.FromMetadata(model.File.Metadata);
        var format = ChatFormats.ForModel(model, tokenizer);

        // A conversation: its own context (KV cache); replies stream as text pieces.
        using var context = model.CreateContext(new ContextOptions { ContextSize = 512 });
        var chat = new ChatSession(context, tokenizer, format, systemPrompt: "You tell short stories.");
        var options = new GenerationOptions { MaxTokens = 32, Sampling = SamplingOptions.Greedy, StopStrings = ["\n"] };
        await foreach (var piece in chat.SendAsync("Once upon a time", options))
        {
            output.Write(piece.Text);
            if (piece.Result is { } result) output.WriteLine($"\n[{result.StopReason}, {result.Tokens.Count} tokens]");
        }

        // The same model behind Microsoft.Extensions.AI's IChatClient.
        using IChatClient client = new LlamaChatClient(model, tokenizer, format);
        var response = await client.GetResponseAsync("Lily and the dog", new ChatOptions { Temperature = 0, MaxOutputTokens = 24 });
        output.WriteLine(response.Text);
    }
}

using QuantLlama.Generation;
using QuantLlama.Models;
using QuantLlama.Tokenizers;

namespace QuantLlama.Server;

/// <summary>The model a server serves once loaded: the shared weights, the tokenizer, the chat format and the slots.</summary>
public sealed class LoadedModel : IDisposable
{
    private LoadedModel(LlamaModel model, ITokenizer tokenizer, IChatFormatter formatter, SlotPool slots, int contextSize, DecodeBatcher? batcher)
    {
        Batcher = batcher;
        Model = model;
        Tokenizer = tokenizer;
        Formatter = formatter;
        Slots = slots;
        ContextSize = contextSize;
    }

    public LlamaModel Model { get; }

    public ITokenizer Tokenizer { get; }

    public IChatFormatter Formatter { get; }

    public SlotPool Slots { get; }

    /// <summary>The step all busy slots' tokens share, when decoding is batched.</summary>
    public DecodeBatcher? Batcher { get; }

    /// <summary>Positions in each slot's KV cache.</summary>
    public int ContextSize { get; }

    public static LoadedModel Load(ServerOptions options)
    {
        var model = LlamaModel.Load(options.ModelPath, options.Gqa, options.Model);
        try
        {
            var tokenizer = options.TokenizerPath != null
                ? TokenizerFactory.FromHuggingFaceJson(options.TokenizerPath)
                : TokenizerFactory.FromMetadata(model.File.Metadata);
            var formatter = ChatFormats.ForModel(model, tokenizer, options.ChatTemplate);
            var contextOptions = new ContextOptions { ContextSize = options.ContextSize, MaxBatch = options.PromptBatch };
            var batcher = options.BatchedDecoding && options.Parallel > 1 ? new DecodeBatcher(model, options.Parallel, options.PromptBatch) : null;
            var sessions = new List<ChatSession>();
            for (int i = 0; i < options.Parallel; i++)
            {
                var session = new ChatSession(model.CreateContext(contextOptions), tokenizer, formatter);
                session.Generator.Batcher = batcher;
                sessions.Add(session);
            }
            var slots = new SlotPool(sessions.Select((s, i) => new Slot(i, s)), options.MaxQueue);
            return new LoadedModel(model, tokenizer, formatter, slots, sessions[0].Context.ContextSize, batcher);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Slots.Dispose();
        Batcher?.Dispose();
        Model.Dispose();
    }
}

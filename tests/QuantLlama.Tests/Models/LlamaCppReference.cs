using LLama;
using LLama.Common;
using LLama.Native;

namespace QuantLlama.Tests;

/// <summary>
/// llama.cpp (through LLamaSharp) as the reference for the model tests: the logits it computes for a batch of tokens
/// and then for one more token, and its greedy continuation. KV cache in f32 so that only the weights' types differ.
/// (A stand-in until the shared oracle lands on main.)
/// </summary>
internal sealed class LlamaCppReference : IDisposable
{
    private static readonly object NativeInit = new();
    private static bool _initialised;
    private static readonly Queue<string> Log = new();
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private int _position;

    public LlamaCppReference(string path, int contextSize = 256)
    {
        lock (NativeInit)
        {
            if (!_initialised)
            {
                NativeLibraryConfig.All.WithLogCallback((level, message) =>
                {
                    lock (Log)
                    {
                        Log.Enqueue(message);
                        while (Log.Count > 20) Log.Dequeue();
                    }
                });
                _initialised = true;
            }
        }
        var p = new ModelParams(path)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)contextSize,
            UBatchSize = (uint)contextSize,
            GpuLayerCount = 0,
            Threads = 1,
            BatchThreads = 1,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
        };
        try
        {
            _weights = LLamaWeights.LoadFromFile(p);
        }
        catch (Exception e)
        {
            lock (Log) throw new InvalidOperationException(e.Message + "\n" + string.Concat(Log), e);
        }
        _context = _weights.CreateContext(p);
    }

    /// <summary>Feeds tokens after those already fed; the logits of the last one.</summary>
    public float[] Feed(IReadOnlyList<int> tokens)
    {
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Count; i++)
            batch.Add((LLamaToken)tokens[i], (LLamaPos)(_position + i), LLamaSeqId.Zero, i == tokens.Count - 1);
        var result = _context.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode: {result}");
        _position += tokens.Count;
        return _context.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
    }

    /// <summary>Greedy continuation: the prompt, then count argmax tokens (each fed back).</summary>
    public List<int> Greedy(IReadOnlyList<int> prompt, int count)
    {
        var output = new List<int>();
        var logits = Feed(prompt);
        for (int i = 0; i < count; i++)
        {
            int next = QuantLlama.Sampling.LogitsProcessor.ArgMax(logits);
            output.Add(next);
            if (i < count - 1) logits = Feed([next]);
        }
        return output;
    }

    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}

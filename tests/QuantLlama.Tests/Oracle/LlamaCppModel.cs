using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;

namespace QuantLlama.Tests.Oracle;

/// <summary>
/// llama.cpp itself (through LLamaSharp), as the reference oracle for differential tests: loads a GGUF,
/// tokenizes with llama.cpp's vocabulary, returns the last position's logits and greedy continuations.
/// Each evaluation runs in a fresh context, so calls are independent of each other. Not thread-safe.
/// </summary>
public sealed class LlamaCppModel : IDisposable
{
    private static readonly object NativeLock = new();
    private static bool _nativeConfigured;

    private readonly LLamaWeights _weights;
    private readonly ModelParams _parameters;

    public string Path { get; }

    /// <summary>Vocabulary size (the length of a logits vector).</summary>
    public int VocabSize => _weights.Vocab.Count;

    /// <summary>Context length llama.cpp evaluates with (prompt + generated tokens must fit).</summary>
    public int ContextSize { get; }

    private LlamaCppModel(string path, LLamaWeights weights, ModelParams parameters)
    {
        Path = path;
        _weights = weights;
        _parameters = parameters;
        ContextSize = (int)(parameters.ContextSize ?? 0);
    }

    /// <summary>Loads a GGUF file with llama.cpp (CPU only). Throws if llama.cpp refuses the file.</summary>
    /// <param name="contextSize">Context length for evaluations; 0 takes the model's own.</param>
    /// <param name="f32KvCache">Keep keys and values in f32 (llama.cpp's default is f16), so that a comparison of
    /// logits measures the weights' arithmetic rather than the attention's rounding (flash attention off too).</param>
    /// <param name="flashAttention">With the f16 cache: llama.cpp's flash attention on or off; null leaves
    /// LLamaSharp's default (on).</param>
    public static LlamaCppModel Load(string ggufPath, int contextSize = 256, bool f32KvCache = false, bool? flashAttention = null)
    {
        EnsureNativeLibrary();
        var parameters = new ModelParams(ggufPath)
        {
            ContextSize = (uint)contextSize,
            GpuLayerCount = 0,
            Threads = 2,
            BatchThreads = 2,
            BatchSize = 512,
        };
        if (f32KvCache)
        {
            parameters.TypeK = GGMLType.GGML_TYPE_F32;
            parameters.TypeV = GGMLType.GGML_TYPE_F32;
            parameters.FlashAttention = false; // its CPU kernel rounds queries to f16
        }
        else if (flashAttention is bool on)
        {
            parameters.FlashAttention = on;
        }
        var weights = LLamaWeights.LoadFromFile(parameters);
        return new LlamaCppModel(ggufPath, weights, parameters);
    }

    /// <summary>Loads only a GGUF's vocabulary (llama.cpp's vocab_only, as its tokenizer tests do): for Tokenize and
    /// TokenToBytes; nothing can be evaluated.</summary>
    public static LlamaCppModel LoadVocabOnly(string ggufPath)
    {
        EnsureNativeLibrary();
        var parameters = new ModelParams(ggufPath) { VocabOnly = true, GpuLayerCount = 0 };
        var weights = LLamaWeights.LoadFromFile(parameters);
        return new LlamaCppModel(ggufPath, weights, parameters);
    }

    /// <summary>Tokenizes as llama.cpp does (llama_tokenize).</summary>
    /// <param name="addSpecial">Add BOS (and EOS where the vocabulary says so).</param>
    /// <param name="parseSpecial">Recognize control-token text such as "&lt;s&gt;" in <paramref name="text"/>.</param>
    public int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = false)
        => _weights.NativeHandle.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8).Select(t => (int)t).ToArray();

    /// <summary>The bytes of one token's piece as llama.cpp renders it (special tokens rendered too).</summary>
    public byte[] TokenToBytes(int token)
    {
        Span<byte> buffer = stackalloc byte[256];
        uint n = _weights.NativeHandle.TokenToSpan((LLamaToken)token, buffer, 0, true);
        if (n > buffer.Length)
        {
            var big = new byte[n];
            _weights.NativeHandle.TokenToSpan((LLamaToken)token, big, 0, true);
            return big;
        }
        return buffer[..(int)n].ToArray();
    }

    /// <summary>Concatenates the tokens' pieces and decodes them as UTF-8.</summary>
    public string Detokenize(IEnumerable<int> tokens)
    {
        var bytes = new List<byte>();
        foreach (int t in tokens) bytes.AddRange(TokenToBytes(t));
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <summary>Evaluates <paramref name="tokens"/> from an empty context and returns the logits after the last one.</summary>
    public float[] LastLogits(IReadOnlyList<int> tokens)
    {
        using var context = _weights.CreateContext(_parameters);
        return Evaluate(context, tokens, 0);
    }

    /// <summary>The logits after the last of <paramref name="tokens"/>, fed one at a time from an empty context.</summary>
    public float[] LastLogitsOneByOne(IReadOnlyList<int> tokens)
    {
        using var context = _weights.CreateContext(_parameters);
        float[] logits = [];
        for (int i = 0; i < tokens.Count; i++) logits = Evaluate(context, [tokens[i]], i);
        return logits;
    }

    /// <summary>Evaluates <paramref name="tokens"/> from an empty context as one batch and returns every position's
    /// logits (row i: the distribution after tokens[0..i]), as llama-perplexity asks llama.cpp for them.</summary>
    public float[][] AllLogits(IReadOnlyList<int> tokens)
    {
        using var context = _weights.CreateContext(_parameters);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Count; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, true);
        var result = context.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
        return Enumerable.Range(0, tokens.Count).Select(i => context.NativeHandle.GetLogitsIth(i).ToArray()).ToArray();
    }

    /// <summary>Greedy (argmax) continuation: <paramref name="count"/> new token ids after the prompt.</summary>
    /// <param name="stopAtEndOfGeneration">Stop early at EOS/EOT as llama.cpp's examples do.</param>
    public int[] GenerateGreedy(IReadOnlyList<int> prompt, int count, bool stopAtEndOfGeneration = true)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt needs at least one token", nameof(prompt));
        if (prompt.Count + count > ContextSize)
            throw new ArgumentException($"{prompt.Count} prompt + {count} new tokens exceed the context size {ContextSize}");
        using var context = _weights.CreateContext(_parameters);
        var output = new List<int>(count);
        float[] logits = Evaluate(context, prompt, 0);
        int position = prompt.Count;
        for (int i = 0; i < count; i++)
        {
            int next = ArgMax(logits);
            if (stopAtEndOfGeneration && ((LLamaToken)next).IsEndOfGeneration(_weights.Vocab)) break;
            output.Add(next);
            if (i + 1 < count) logits = Evaluate(context, [next], position++);
        }
        return output.ToArray();
    }

    /// <summary>Tokenizes <paramref name="prompt"/> (with BOS), generates greedily and returns prompt + continuation as text.</summary>
    public string GenerateGreedyText(string prompt, int count)
    {
        var promptTokens = Tokenize(prompt, addSpecial: true);
        var generated = GenerateGreedy(promptTokens, count);
        return prompt + Detokenize(generated);
    }

    /// <summary>The index of the largest value; the lowest index wins ties, as in llama.cpp's greedy sampler.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    private float[] Evaluate(LLamaContext context, IReadOnlyList<int> tokens, int startPosition)
    {
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Count; i++)
            batch.Add((LLamaToken)tokens[i], startPosition + i, LLamaSeqId.Zero, i == tokens.Count - 1);
        var result = context.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
        return context.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
    }

    /// <summary>
    /// Picks llama.cpp's AVX2 build (falling back to AVX or the plain build where AVX2 is missing) and silences
    /// its log. Must run before LLamaSharp touches native code, once per process.
    /// </summary>
    public static void EnsureNativeLibrary()
    {
        lock (NativeLock)
        {
            if (_nativeConfigured) return;
            if (!NativeLibraryConfig.LLama.LibraryHasLoaded)
            {
                // AVX2 even where AVX-512 exists: the same build (and so the same rounding) on every machine, and the
                // same libggml-base as GgmlNative loads directly from the avx2 folder.
                var avx = System.Runtime.Intrinsics.X86.Avx2.IsSupported ? AvxLevel.Avx2
                    : System.Runtime.Intrinsics.X86.Avx.IsSupported ? AvxLevel.Avx
                    : AvxLevel.None;
                NativeLibraryConfig.All
                    .WithCuda(false)
                    .WithVulkan(false)
                    .WithAvx(avx)
                    .WithAutoFallback(true)
                    .WithSearchDirectory(AppContext.BaseDirectory)
                    .WithLogCallback(static (_, _) => { });
            }
            NativeApi.llama_empty_call();
            // The native side may reset its logger when it loads; silence it again now that it is loaded.
            NativeLogConfig.llama_log_set(static (_, _) => { });
            _nativeConfigured = true;
        }
    }

    public void Dispose() => _weights.Dispose();
}

using System.Text;
using QuantLlama.Gguf;
using QuantLlama.Tokenizers;

namespace QuantLlama.Tests.Tokenizers;

/// <summary>llama.cpp's tokenizer test vectors (NAME.gguf.inp / .out), read as its test-tokenizer-0 reads them.</summary>
public static class VocabTestCases
{
    private const string Separator = "\n__ggml_vocab_test__\n";

    public static string VocabPath(string name) => TestPaths.SharedFile("vocab", $"ggml-vocab-{name}.gguf");

    /// <summary>(text, expected ids) for every case of the vocabulary's .inp/.out pair.</summary>
    public static List<(string Text, int[] Ids)> Load(string name)
    {
        string inp = File.ReadAllText(VocabPath(name) + ".inp", new UTF8Encoding(false));
        var texts = new List<string>();
        int pos;
        while ((pos = inp.IndexOf(Separator, StringComparison.Ordinal)) >= 0)
        {
            texts.Add(inp[..pos]);
            inp = inp[(pos + Separator.Length)..];
        }
        var outLines = File.ReadAllLines(VocabPath(name) + ".out");
        Assert.Equal(texts.Count, outLines.Length);
        return texts.Select((t, i) => (t, outLines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())).ToList();
    }

    private static readonly Dictionary<string, LlamaTokenizer> Cache = [];

    public static string TokenizerJsonPath(string model) => TestPaths.SharedFile("tokenizers", model, "tokenizer.json");

    private static readonly Lazy<GgufMetadata> Llama3MetadataLazy = new(() => HuggingFaceTokenizerJson.ToMetadata(TokenizerJsonPath("llama3")));
    private static readonly Lazy<LlamaTokenizer> Llama3Lazy = new(() => new LlamaTokenizer(Llama3MetadataLazy.Value));
    private static readonly Lazy<LlamaTokenizer> Llama2Lazy = new(() => (LlamaTokenizer)TokenizerFactory.FromHuggingFaceJson(TokenizerJsonPath("llama2")));

    /// <summary>Llama 3's tokenizer.json as converter-style metadata (loaded once: the file is 9 MB).</summary>
    public static GgufMetadata Llama3Metadata => Llama3MetadataLazy.Value;

    /// <summary>The tokenizer from Llama 3's tokenizer.json (what TokenizerFactory.FromHuggingFaceJson builds).</summary>
    public static LlamaTokenizer Llama3FromJson => Llama3Lazy.Value;

    /// <summary>The tokenizer from the shared "llama2" tokenizer.json (SentencePiece-style BPE).</summary>
    public static LlamaTokenizer Llama2FromJson => Llama2Lazy.Value;

    public static LlamaTokenizer Tokenizer(string name)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(name, out var tok))
            {
                using var file = GgufFile.Open(VocabPath(name));
                Cache[name] = tok = new LlamaTokenizer(file.Metadata);
            }
            return tok;
        }
    }
}

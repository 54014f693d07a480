using System.Text;
using BenchmarkDotNet.Attributes;
using QuantLlama.Gguf;
using QuantLlama.Tokenizers;

namespace QuantLlama.Bench;

/// <summary>
/// dotnet run -c Release --project bench/QuantLlama.Bench -- --filter '*Tokenizer*'
/// Encoding 1 MB of mixed text (llama.cpp's tokenizer test strings repeated) with a SentencePiece and a
/// byte-level BPE vocabulary from ../shared/vocab; the aim is well under a second.
/// </summary>
[MemoryDiagnoser]
public class TokenizerBenchmarks
{
    [Params("llama-spm", "gpt-2")]
    public string Vocabulary { get; set; } = "llama-spm";

    private LlamaTokenizer _tokenizer = null!;
    private string _text = "";

    [GlobalSetup]
    public void Setup()
    {
        string vocab = Path.Combine(SharedDirectory(), "vocab", $"ggml-vocab-{Vocabulary}.gguf");
        using (var file = GgufFile.Open(vocab))
            _tokenizer = new LlamaTokenizer(file.Metadata);
        string sample = File.ReadAllText(vocab + ".inp").Replace("__ggml_vocab_test__", " ");
        var sb = new StringBuilder(1_000_000 + sample.Length);
        while (sb.Length < 1_000_000) sb.Append(sample);
        _text = sb.ToString(0, 1_000_000);
    }

    [Benchmark]
    public int EncodeOneMegabyte() => _tokenizer.Encode(_text, addSpecial: false, parseSpecial: false).Count;

    private static string SharedDirectory()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "QuantLlama.sln"))) dir = dir.Parent;
        return dir == null
            ? throw new InvalidOperationException("cannot find QuantLlama.sln above " + AppContext.BaseDirectory)
            : Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared"));
    }
}

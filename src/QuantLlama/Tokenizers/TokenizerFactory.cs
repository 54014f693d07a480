using QuantLlama.Gguf;

namespace QuantLlama.Tokenizers;

/// <summary>Builds the tokenizer a model file describes, or one from a Hugging Face tokenizer.json.</summary>
public static class TokenizerFactory
{
    /// <summary>From the tokenizer.ggml.* metadata of a GGUF (or legacy) model file.</summary>
    public static ITokenizer FromMetadata(GgufMetadata metadata) => new LlamaTokenizer(metadata);

    /// <summary>From a Hugging Face tokenizer.json (BPE: SentencePiece-style with byte fallback, or byte-level).</summary>
    public static ITokenizer FromHuggingFaceJson(string path) => new LlamaTokenizer(HuggingFaceTokenizerJson.ToMetadata(path));
}

namespace QuantLlama.Tokenizers;

/// <summary>
/// Text to token ids and back, as llama.cpp's vocabulary does it. Implementations are built from a GGUF
/// vocabulary (SentencePiece-style "llama" or byte-level "gpt2") or a Hugging Face tokenizer.json.
/// </summary>
public interface ITokenizer
{
    int VocabSize { get; }

    /// <summary>Beginning-of-sequence id, or -1 when the vocabulary has none.</summary>
    int BosId { get; }

    /// <summary>End-of-sequence id, or -1 when the vocabulary has none.</summary>
    int EosId { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial adds BOS (tokenizer.ggml.add_bos_token).</summary>
    bool AddBos { get; }

    /// <summary>Whether <see cref="Encode"/> with addSpecial adds EOS (tokenizer.ggml.add_eos_token).</summary>
    bool AddEos { get; }

    /// <summary>Ids that end generation: EOS, EOT, EOM and the family's end-of-turn tokens.</summary>
    IReadOnlySet<int> EndOfGenerationIds { get; }

    /// <summary>
    /// Tokenizes text. addSpecial adds BOS/EOS as the vocabulary asks; parseSpecial recognises control and
    /// user-defined tokens written in the text (as llama.cpp's parse_special), otherwise they are plain text.
    /// </summary>
    List<int> Encode(string text, bool addSpecial, bool parseSpecial);

    /// <summary>The token's piece as stored in the vocabulary (for --verbose-prompt and inspection).</summary>
    string TokenToPiece(int id);

    /// <summary>The bytes this token contributes to decoded text (byte tokens give their byte; control tokens nothing).</summary>
    byte[] TokenToBytes(int id);
}

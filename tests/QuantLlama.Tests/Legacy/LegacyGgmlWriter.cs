using System.Text;
using QuantLlama.Gguf;
using QuantLlama.Gguf.Legacy;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Legacy;

/// <summary>How a test file spells its vocabulary (the two conventions found in published GGML files).</summary>
public enum VocabSpelling
{
    /// <summary>SentencePiece pieces as in GGUF: ▁ and &lt;0xNN&gt;.</summary>
    SentencePiece,
    /// <summary>llama.cpp's 2023 convert.py: spaces, raw bytes, empty control tokens, " ⁇ " for unknown.</summary>
    ConvertPy,
}

/// <summary>
/// Writes legacy llama.cpp files (ggml, ggmf v1, ggjt v1-v3) byte for byte as llama.cpp's writers laid them out:
/// magic, version (not in ggml), seven uint32 hyperparameters, the vocabulary (length, bytes, score; no score in
/// ggml), then per tensor n_dims, name length, type, the dimensions (ggml order), the name, padding to 32 bytes
/// from the start of the file (ggjt only) and the data.
/// </summary>
public sealed class LegacyGgmlWriter
{
    public GgmlLegacyFormat Format { get; init; } = GgmlLegacyFormat.Ggjt;
    public uint Version { get; init; } = 3;
    public uint EmbeddingLength { get; set; }
    public uint Mult { get; set; } = 256;
    public uint HeadCount { get; set; }
    public uint LayerCount { get; set; }
    public uint RotaryDimensions { get; set; }
    public uint FileType { get; set; }
    /// <summary>Overrides n_vocab (to write lying files); by default the number of tokens.</summary>
    public uint? VocabSizeOverride { get; set; }
    public List<(byte[] Piece, float Score)> Vocab { get; } = [];
    public List<(string Name, GgmlType Type, long[] Dimensions, byte[] Data)> Tensors { get; } = [];

    public byte[] ToBytes()
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        w.Write(Format switch
        {
            GgmlLegacyFormat.Ggml => GgmlLegacyFile.MagicGgml,
            GgmlLegacyFormat.Ggmf => GgmlLegacyFile.MagicGgmf,
            _ => GgmlLegacyFile.MagicGgjt,
        });
        if (Format != GgmlLegacyFormat.Ggml) w.Write(Version);
        w.Write(VocabSizeOverride ?? (uint)Vocab.Count);
        w.Write(EmbeddingLength);
        w.Write(Mult);
        w.Write(HeadCount);
        w.Write(LayerCount);
        w.Write(RotaryDimensions);
        w.Write(FileType);
        foreach (var (piece, score) in Vocab)
        {
            w.Write((uint)piece.Length);
            w.Write(piece);
            if (Format != GgmlLegacyFormat.Ggml) w.Write(score);
        }
        foreach (var (name, type, dims, data) in Tensors)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name);
            w.Write((uint)dims.Length);
            w.Write((uint)nameBytes.Length);
            w.Write((uint)type);
            foreach (var d in dims) w.Write((uint)d);
            w.Write(nameBytes);
            if (Format == GgmlLegacyFormat.Ggjt)
            {
                w.Flush();
                while (ms.Position % 32 != 0) w.Write((byte)0);
            }
            w.Write(data);
        }
        w.Flush();
        return ms.ToArray();
    }

    public void Write(string path) => File.WriteAllBytes(path, ToBytes());

    /// <summary>A legacy file with the weights and vocabulary of a GGUF llama model (the stories260K files).</summary>
    public static LegacyGgmlWriter FromGguf(GgufFile gguf, GgmlLegacyFormat format, uint version, VocabSpelling spelling)
    {
        var md = gguf.Metadata;
        var writer = new LegacyGgmlWriter
        {
            Format = format,
            Version = version,
            EmbeddingLength = (uint)md.GetInteger("llama.embedding_length"),
            HeadCount = (uint)md.GetInteger("llama.attention.head_count"),
            LayerCount = (uint)md.GetInteger("llama.block_count"),
            RotaryDimensions = (uint)md.GetInteger("llama.rope.dimension_count"),
            FileType = (uint)md.GetInteger("general.file_type", 0),
            Mult = 4, // stories260K: 2*(4*64)/3 = 170, rounded up to a multiple of 4 = 172, its n_ff
        };
        var tokens = md.GetStringArray("tokenizer.ggml.tokens");
        var scores = md.GetFloatArray("tokenizer.ggml.scores");
        var types = md.GetIntArray("tokenizer.ggml.token_type");
        for (int i = 0; i < tokens.Length; i++)
            writer.Vocab.Add((Spell(tokens[i], types[i], spelling), scores[i]));
        foreach (var t in gguf.Tensors)
            writer.Tensors.Add((LegacyTensorNames.ToLegacy(t.Name), t.Type, t.Dimensions, gguf.GetTensorData(t).ToArray()));
        return writer;
    }

    public static byte[] Spell(string token, int type, VocabSpelling spelling)
    {
        if (spelling == VocabSpelling.SentencePiece) return Encoding.UTF8.GetBytes(token);
        return type switch
        {
            LegacyTokenType.Unknown => Encoding.UTF8.GetBytes(" \u2047 "),
            LegacyTokenType.Control => [],
            LegacyTokenType.Byte => [Convert.ToByte(token[3..5], 16)],
            _ => Encoding.UTF8.GetBytes(token.Replace('\u2581', ' ')),
        };
    }
}

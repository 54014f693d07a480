using QuantLlama.Gguf.Legacy;

namespace QuantLlama.Gguf;

/// <summary>Opens a model file of any supported format, chosen by its magic bytes.</summary>
public static class ModelFileLoader
{
    // Other pre-GGUF llama.cpp files that are not models: LoRA adapters and saved sessions.
    private const uint MagicGgla = 0x67676c61;
    private const uint MagicGgsn = 0x6767736e;

    /// <param name="path">A GGUF file or a legacy ggml/ggmf/ggjt file.</param>
    /// <param name="gqa">For legacy files, which do not record it: query heads per key/value head (8 for Llama-2-70B).</param>
    public static IModelFile Open(string path, int gqa = 1) => Open(path, new GgmlLegacyOptions { Gqa = gqa });

    /// <summary>Opens a legacy file with explicit assumptions (context length, RMS epsilon); GGUF files ignore them.</summary>
    public static IModelFile Open(string path, GgmlLegacyOptions legacyOptions)
    {
        switch (ReadMagic(path))
        {
            case uint magic when GgmlLegacyFile.IsLegacyMagic(magic):
                return GgmlLegacyFile.Open(path, legacyOptions);
            case MagicGgla:
                throw new GgufFormatException(path, 0, "this is a LoRA adapter in llama.cpp's pre-GGUF ggla format, not a model");
            case MagicGgsn:
                throw new GgufFormatException(path, 0, "this is a llama.cpp session file (ggsn), not a model");
            default:
                return GgufFile.Open(path);
        }
    }

    /// <summary>The first four bytes as a little-endian uint32, or null for a shorter file (the GGUF reader reports it).</summary>
    private static uint? ReadMagic(string path)
    {
        if (!File.Exists(path)) return null;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        Span<byte> magic = stackalloc byte[4];
        if (stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false) < 4) return null;
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(magic);
    }
}

using QuantLlama.Gguf.Legacy;

namespace QuantLlama.Gguf;

/// <summary>Opens a model file of any supported format, chosen by its magic bytes.</summary>
public static class ModelFileLoader
{
    /// <param name="path">A GGUF file or a legacy ggml/ggmf/ggjt file.</param>
    /// <param name="gqa">For legacy files, which do not record it: query heads per key/value head (8 for Llama-2-70B).</param>
    public static IModelFile Open(string path, int gqa = 1)
        => ReadMagic(path) is uint magic && GgmlLegacyFile.IsLegacyMagic(magic)
            ? GgmlLegacyFile.Open(path, gqa)
            : GgufFile.Open(path);

    /// <summary>Opens a legacy file with explicit assumptions (context length, RMS epsilon); GGUF files ignore them.</summary>
    public static IModelFile Open(string path, GgmlLegacyOptions legacyOptions)
        => ReadMagic(path) is uint magic && GgmlLegacyFile.IsLegacyMagic(magic)
            ? GgmlLegacyFile.Open(path, legacyOptions)
            : GgufFile.Open(path);

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

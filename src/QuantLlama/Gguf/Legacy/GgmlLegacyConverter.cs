namespace QuantLlama.Gguf.Legacy;

/// <summary>Writes a legacy ggml/ggmf/ggjt file as GGUF: its metadata view, then every tensor's bytes copied unchanged
/// (the reader only admits blocks whose layout is GGUF's, so no tensor needs re-encoding).</summary>
public static class GgmlLegacyConverter
{
    private const int CopyChunk = 1 << 20;

    /// <returns>The number of tensors written.</returns>
    public static unsafe int ToGguf(GgmlLegacyFile source, string outputPath, string? modelName = null)
    {
        var writer = new GgufWriter();
        writer.CopyMetadataFrom(source);
        if (modelName != null) writer.Set("general.name", modelName);
        foreach (var tensor in source.Tensors)
        {
            byte* data = source.GetTensorPointer(tensor);
            long size = tensor.ByteSize;
            writer.AddTensor(tensor.Name, tensor.Type, tensor.Dimensions, stream =>
            {
                for (long done = 0; done < size; done += CopyChunk)
                    stream.Write(new ReadOnlySpan<byte>(data + done, (int)Math.Min(CopyChunk, size - done)));
            });
        }
        writer.Write(outputPath);
        return source.Tensors.Count;
    }
}

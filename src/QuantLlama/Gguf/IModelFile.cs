namespace QuantLlama.Gguf;

/// <summary>
/// A memory-mapped model file as the engine sees it: metadata under GGUF key names and tensors under GGUF tensor
/// names, whatever the format on disk (GGUF, or the legacy ggml/ggmf/ggjt files presented in GGUF terms).
/// </summary>
public unsafe interface IModelFile : IDisposable
{
    string FileName { get; }

    /// <summary>"GGUF v3", "ggjt v3", ... for display.</summary>
    string FormatDescription { get; }

    GgufMetadata Metadata { get; }

    IReadOnlyList<GgufTensorInfo> Tensors { get; }

    GgufTensorInfo? FindTensor(string name);

    /// <summary>A pointer to the tensor's bytes inside the mapping, valid until the file is disposed.</summary>
    byte* GetTensorPointer(GgufTensorInfo tensor);

    /// <summary>
    /// Tells the file that the process has its own copy of [<paramref name="start"/>, + <paramref name="bytes"/>) and
    /// reads it no more: a mapped file releases those pages from resident memory (<see cref="MappedFile.ReleasePages"/>);
    /// a file in memory keeps them. Reading them again stays correct.
    /// </summary>
    internal void ReleasePages(byte* start, long bytes)
    {
    }

    /// <summary>FindTensor, or a KeyNotFoundException that names the file: the implementations' GetTensor.</summary>
    internal static GgufTensorInfo RequireTensor(IModelFile file, string name) => file.FindTensor(name)
        ?? throw new KeyNotFoundException($"{file.FileName}: no tensor named '{name}'");

    /// <summary>A tensor's bytes as a span into the mapping: the implementations' GetTensorData (over 2 GB: use the pointer).</summary>
    internal static ReadOnlySpan<byte> TensorSpan(IModelFile file, GgufTensorInfo tensor)
    {
        if (tensor.ByteSize > int.MaxValue)
            throw new NotSupportedException($"tensor '{tensor.Name}' is {tensor.ByteSize} bytes; use GetTensorPointer for tensors over 2 GB");
        return new ReadOnlySpan<byte>(file.GetTensorPointer(tensor), (int)tensor.ByteSize);
    }
}

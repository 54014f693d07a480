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
}

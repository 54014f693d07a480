namespace QuantLlama.Gguf;

/// <summary>Opens a model file of any supported format, chosen by its magic bytes.</summary>
public static class ModelFileLoader
{
    /// <param name="path">A GGUF file or a legacy ggml/ggmf/ggjt file.</param>
    /// <param name="gqa">For legacy files, which do not record it: query heads per key/value head (8 for Llama-2-70B).</param>
    public static IModelFile Open(string path, int gqa = 1) => GgufFile.Open(path);
}

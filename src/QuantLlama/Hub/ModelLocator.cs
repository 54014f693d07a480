namespace QuantLlama.Hub;

/// <summary>Turns the command line's --model / --which into a local file path, downloading it when needed.</summary>
public static class ModelLocator
{
    /// <summary>A local path as given; hub downloads come with the hub client.</summary>
    public static string Resolve(string? model, string which)
    {
        if (model != null)
        {
            if (!File.Exists(model)) throw new FileNotFoundException($"{model}: no such file", model);
            return model;
        }
        throw new NotSupportedException($"--which {which}: downloading from the Hugging Face Hub is not implemented yet; pass --model FILE");
    }
}

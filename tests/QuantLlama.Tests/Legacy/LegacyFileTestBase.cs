using QuantLlama.Gguf;
using QuantLlama.Gguf.Legacy;

namespace QuantLlama.Tests.Legacy;

/// <summary>A temp directory per test and legacy files written there from the shared stories260K GGUFs.</summary>
public abstract class LegacyFileTestBase : IDisposable
{
    protected string Dir { get; } = TestPaths.NewTempDirectory();

    public void Dispose()
    {
        Directory.Delete(Dir, recursive: true);
        GC.SuppressFinalize(this);
    }

    protected static string Stories(string suffix = "") => TestPaths.SharedFile("llamacpp", $"stories260K{suffix}.gguf");

    /// <summary>Writes a GGUF's model as a legacy file in <see cref="Dir"/> and returns its path.</summary>
    protected string WriteLegacy(string gguf, GgmlLegacyFormat format, uint version, VocabSpelling spelling)
    {
        using var source = GgufFile.Open(gguf);
        string path = Path.Combine(Dir, $"{Path.GetFileNameWithoutExtension(gguf)}-{format}{version}-{spelling}.bin");
        LegacyGgmlWriter.FromGguf(source, format, version, spelling).Write(path);
        return path;
    }
}

using QuantLlama.Models.Llama2c;

namespace QuantLlama.Tests.Models;

/// <summary>
/// Models converted once per test run, for any test that needs a GGUF written by our own converter.
/// The files live in a temp folder removed when the test process exits.
/// </summary>
public static class ConvertedModels
{
    private static readonly Lazy<string> Stories260KPath = new(() =>
    {
        string dir = TestPaths.NewTempDirectory();
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        string path = Path.Combine(dir, "stories260K.gguf");
        Llama2cConverter.Convert(TestPaths.SharedFile("models", "stories260K.bin"), TestPaths.SharedFile("models", "tok512.bin"), path);
        return path;
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>stories260K (shared classifier, context 512) converted by <see cref="Llama2cConverter"/>, all F32. Read-only: do not modify.</summary>
    public static string Stories260KGguf => Stories260KPath.Value;
}

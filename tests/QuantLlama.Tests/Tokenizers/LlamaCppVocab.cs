using System.Text;
using LLama.Native;

namespace QuantLlama.Tests.Tokenizers;

/// <summary>llama.cpp itself (through LLamaSharp) with a vocabulary-only model load: the reference tokenizer.</summary>
public sealed class LlamaCppVocab : IDisposable
{
    private readonly SafeLlamaModelHandle _model;

    static LlamaCppVocab()
    {
        try
        {
            // pick the build this CPU runs and name it outright: the automatic search does not find it under the test host
            string level = System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "avx512"
                : System.Runtime.Intrinsics.X86.Avx2.IsSupported ? "avx2"
                : System.Runtime.Intrinsics.X86.Avx.IsSupported ? "avx" : "noavx";
            string dir = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", level);
            NativeLibraryConfig.All
                .WithLibrary(Path.Combine(dir, "libllama.so"), Path.Combine(dir, "libmtmd.so"))
                .WithLogCallback((_, _) => { });
        }
        catch (InvalidOperationException)
        {
            // the native library is already loaded (another test configured it): use it as it is
        }
        NativeApi.llama_empty_call(); // loads the library through LLamaSharp's resolver before any other native call
    }

    public LlamaCppVocab(string ggufPath)
    {
        var p = LLamaModelParams.Default();
        p.vocab_only = true;
        _model = SafeLlamaModelHandle.LoadFromFile(ggufPath, p);
    }

    public int[] Tokenize(string text, bool addSpecial, bool parseSpecial) =>
        _model.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8).Select(t => (int)t).ToArray();

    public void Dispose() => _model.Dispose();
}

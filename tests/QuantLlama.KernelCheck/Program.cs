// Checks every SIMD kernel path this CPU supports against the scalar reference, then runs the shared
// stories260K model greedily on the best path. For machines without the .NET SDK:
//   dotnet publish tests/QuantLlama.KernelCheck -c Release -r linux-x64 --self-contained \
//       -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -o OUT
//   OUT/QuantLlama.KernelCheck [stories260K.bin tok512.bin]
// Exit code 0 when every path agrees with the scalar one (and the model gives the expected text).
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Compute;
using QuantLlama.Models;
using QuantLlama.Models.Llama2c;
using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tokenizers;

unsafe
{
    Console.WriteLine($"cpu: {RuntimeInformation.ProcessArchitecture}, cores: {Environment.ProcessorCount}, " + (
        RuntimeInformation.ProcessArchitecture == Architecture.Arm64
            ? $"advsimd: {System.Runtime.Intrinsics.Arm.AdvSimd.Arm64.IsSupported}, dotprod: {System.Runtime.Intrinsics.Arm.Dp.IsSupported}"
            : $"avx2: {Avx2.IsSupported}, avx512f: {Avx512F.IsSupported}, avx512bw: {Avx512BW.IsSupported}, " +
              $"avx-vnni: {AvxVnni.IsSupported}"));
    Console.WriteLine("paths: " + string.Join(", ", Kernels.Supported));
    GgmlType[] types = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0,
        GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
        GgmlType.IQ4_NL, GgmlType.IQ4_XS, GgmlType.IQ3_XXS, GgmlType.IQ3_S];
    const int rows = 37, cols = 1024, n = 9;
    var rng = new Random(20261128);
    int failures = 0;
    foreach (var type in types)
    {
        var w = new float[rows * cols];
        var x = new float[n * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        var q = new byte[rows * rowBytes];
        for (int r = 0; r < rows; r++)
            Quantizer.QuantizeRow(type, w.AsSpan(r * cols, cols), q.AsSpan((int)(r * rowBytes), (int)rowBytes));
        fixed (byte* pw = q)
        {
            // The products MatMul runs (which on AVX-512 keep the AVX2 row dot for types with AVX2 tiles), then each
            // path's own row dot, AVX-512's included.
            nint weights = (nint)pw;
            Compare("MatMat+MatVec", Run);
            Compare("row dot", RowDots);

            void Compare(string what, Func<KernelPath, GgmlType, nint, float[], float[]> product)
            {
                var reference = product(KernelPath.Scalar, type, weights, x);
                foreach (var path in Kernels.Supported.Where(p => p != KernelPath.Scalar))
                {
                    var got = product(path, type, weights, x);
                    double scale = reference.Max(MathF.Abs) + 1e-6;
                    double worst = 0;
                    for (int i = 0; i < got.Length; i++) worst = Math.Max(worst, Math.Abs(got[i] - reference[i]) / scale);
                    bool ok = worst < 1e-4;
                    if (!ok) failures++;
                    Console.WriteLine($"{type,-5} {path,-7} {what,-13} max relative difference {worst:E2} {(ok ? "ok" : "MISMATCH")}");
                }
            }
        }
    }
    Kernels.Path = Kernels.Best;

    if (args.Length == 2)
    {
        string dir = Path.Combine(Path.GetTempPath(), "kernelcheck-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        string gguf = Path.Combine(dir, "stories260K.gguf");
        Llama2cConverter.Convert(args[0], args[1], gguf);
        using var model = InferenceContext.Load(gguf);
        using var file = QuantLlama.Gguf.GgufFile.Open(gguf);
        var tokenizer = TokenizerFactory.FromMetadata(file.Metadata);
        var tokens = tokenizer.Encode("Once upon a time", addSpecial: true, parseSpecial: false);
        var decoder = new StreamingDecoder(tokenizer);
        var text = new System.Text.StringBuilder("Once upon a time");
        var logits = model.Forward(tokens.ToArray(), 0);
        int position = tokens.Count;
        var sw = Stopwatch.StartNew();
        for (int step = 0; step < 60; step++)
        {
            int next = 0;
            for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[next]) next = i;
            text.Append(decoder.Push(next));
            logits = model.Forward([next], position++);
        }
        string expected = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
        bool ok = text.ToString().StartsWith(expected, StringComparison.Ordinal);
        if (!ok) failures++;
        Console.WriteLine($"greedy ({Kernels.Path}, {60 / sw.Elapsed.TotalSeconds:F0} tok/s): {text} {(ok ? "ok" : "MISMATCH")}");
        Directory.Delete(dir, recursive: true);
    }
    Console.WriteLine(failures == 0 ? "all paths agree" : $"{failures} mismatches");
    return failures == 0 ? 0 : 1;

    float[] Run(KernelPath path, GgmlType type, nint weights, float[] x)
    {
        Kernels.Path = path;
        var y = new float[n * rows + rows];
        MatMul.MatMat(type, (byte*)weights, rows, cols, x, n, y.AsSpan(0, n * rows));
        MatMul.MatVec(type, (byte*)weights, rows, cols, x.AsSpan(0, cols), y.AsSpan(n * rows, rows));
        return y;
    }

    float[] RowDots(KernelPath path, GgmlType type, nint weights, float[] x)
    {
        var kernel = QuantKernels.Get(type);
        long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
        var activation = new byte[kernel.ActivationRowBytes(cols)];
        var y = new float[rows];
        fixed (float* px = x)
        fixed (byte* pa = activation)
        {
            Kernels.Path = KernelPath.Scalar; // the same activation bytes for every path
            kernel.QuantizeActivation(px, pa, cols);
            Kernels.Path = path;
            for (int r = 0; r < rows; r++) y[r] = kernel.Dot((byte*)weights + r * rowBytes, pa, cols);
        }
        return y;
    }
}

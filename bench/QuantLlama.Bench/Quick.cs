using System.Diagnostics;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Bench;

/// <summary>
/// `quick [TYPE...]`: a fast sanity timing of the row dots (ours vs llama.cpp, best single call over interleaved rounds),
/// for iterating on kernels; BenchmarkDotNet gives the numbers we publish.
/// </summary>
internal static class Quick
{
    public static void Run(string[] types)
    {
        if (types.Length > 0 && types[0] == "matvec")
        {
            // `quick matvec [ROWS]`: ROWS weight rows of 4096 (default 4096; 128 keeps them in L2).
            int rows = types.Length > 1 ? int.Parse(types[1]) : 4096;
            foreach (var type in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K })
            {
                var b = new MatVecBenchmarks { Type = type, Rows = rows };
                b.Setup();
                double ggml = double.MaxValue, ours = double.MaxValue, all = double.MaxValue;
                for (int round = 0; round < 8; round++)
                {
                    ggml = Math.Min(ggml, Time(() => b.LlamaCppOneThread()));
                    ours = Math.Min(ours, Time(() => b.QuantLlamaOneThread()));
                    all = Math.Min(all, Time(() => b.QuantLlamaAllCores()));
                }
                Console.WriteLine($"MatVec {rows}x4096 {type,-5} llama.cpp 1 thread {ggml,9:F1} us  ours 1 thread {ours,9:F1} us (ratio {ggml / ours:F2})  ours {Environment.ProcessorCount} threads {all,9:F1} us");
            }
            foreach (var type in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K })
            {
                var b = new MatMatBenchmarks { Type = type };
                b.Setup();
                double vecs = double.MaxValue, mat = double.MaxValue;
                for (int round = 0; round < 8; round++)
                {
                    vecs = Math.Min(vecs, Time(() => b.MatVecs()));
                    mat = Math.Min(mat, Time(() => b.MatMat()));
                }
                Console.WriteLine($"32 x (1024x4096) {type,-5} 32 MatVecs {vecs,9:F1} us  one MatMat {mat,9:F1} us (MatMat {vecs / mat:F2}x faster)");
            }
            return;
        }
        var list = types.Length > 0 ? types.Select(t => Enum.Parse<GgmlType>(t, true)).ToArray()
            : [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.F16, GgmlType.F32];
        foreach (var type in list)
        {
            var b = new DotBenchmarks { Type = type };
            b.Setup();
            double ggml = double.MaxValue, ours = double.MaxValue;
            // Interleaved rounds, best of each: on a shared machine the minimum is the least disturbed run.
            for (int round = 0; round < 15; round++)
            {
                ggml = Math.Min(ggml, Time(() => b.LlamaCpp()));
                ours = Math.Min(ours, Time(() => b.QuantLlama()));
            }
            Console.WriteLine($"{type,-5} llama.cpp {ggml,8:F2} us  ours {ours,8:F2} us  speed ratio (llama.cpp time / ours) {ggml / ours:F2}");
        }
    }

    private static double Time(Func<float> f)
    {
        double best = double.MaxValue;
        var total = Stopwatch.StartNew();
        while (total.ElapsedMilliseconds < 200)
        {
            long t0 = Stopwatch.GetTimestamp();
            f();
            best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
        }
        return best;
    }
}

using System.Diagnostics;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Bench;

/// <summary>
/// `quick [TYPE...]`: a fast timing of the row dots (ours vs llama.cpp in alternating short runs: best call, paired median),
/// for iterating on kernels and, on a shared machine, for ratios less at the mercy of its load than BenchmarkDotNet's
/// separate blocks per engine.
/// </summary>
internal static class Quick
{
    public static void Run(string[] types)
    {
        if (types.Length > 0 && types[0] == "layer")
        {
            // One TinyLlama layer's matrix products for a 512-token prompt on all cores (Q/K/V and gate/up grouped as
            // the model does), widest tiles against 4-row tiles; x 22 layers gives the products' share of pp512.
            var layerTypes = types.Length > 1 ? types.Skip(1).Select(t => Enum.Parse<GgmlType>(t, true)).ToArray()
                : [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K];
            if (int.TryParse(Environment.GetEnvironmentVariable("BENCH_THREADS"), out int threads)) Compute.WorkerPool.SetThreadCount(threads);
            foreach (var type in layerTypes)
            {
                using var layer = new LayerProducts(type);
                double narrow = double.MaxValue, wide = double.MaxValue;
                for (int round = 0; round < 3; round++)
                {
                    Compute.MatMul.WideTiles = false;
                    narrow = Math.Min(narrow, layer.TimeMs());
                    Compute.MatMul.WideTiles = true;
                    wide = Math.Min(wide, layer.TimeMs());
                }
                Console.WriteLine($"TinyLlama layer, 512 rows, {Compute.WorkerPool.ThreadCount} threads, {type,-5}: 4-row tiles {narrow,7:F1} ms  widest {wide,7:F1} ms ({narrow / wide:F2}x); x22 layers: {22 * wide / 1000:F2} s = {512 / (22 * wide / 1000):F1} tokens/s products only");
                if (!layer.CanRepack) continue;
                // The same layer over copies repacked at load (as LlamaModel makes them), alternating with the mapped weights.
                double mapped = double.MaxValue, repacked = double.MaxValue;
                for (int round = 0; round < 3; round++)
                {
                    layer.Repacked = false;
                    mapped = Math.Min(mapped, layer.TimeMs());
                    layer.Repacked = true;
                    repacked = Math.Min(repacked, layer.TimeMs());
                }
                layer.Repacked = false;
                Console.WriteLine($"TinyLlama layer, 512 rows, {Compute.WorkerPool.ThreadCount} threads, {type,-5}: mapped {mapped,7:F1} ms  repacked {repacked,7:F1} ms ({mapped / repacked:F2}x)");
            }
            return;
        }
        if (types.Length > 0 && types[0] == "repacked")
        {
            // `repacked ROWS COLS [TYPE]` (Q4_0 by default, Q8_0) or `repacked q4_k ROWS COLS`; weights past the last-level cache time the
            // kernels reading from memory.
            if (types[1].Equals("q4_k", StringComparison.OrdinalIgnoreCase)) RepackedQ4_K(int.Parse(types[2]), int.Parse(types[3]));
            else Repacked(int.Parse(types[1]), int.Parse(types[2]), types.Length > 3 ? Enum.Parse<GgmlType>(types[3], true) : GgmlType.Q4_0);
            return;
        }
        if (types.Length > 0 && types[0] == "decode")
        {
            var rest = types.Skip(1).ToArray();
            bool typed = rest.Length > 0 && Enum.TryParse<GgmlType>(rest[0], true, out _);
            Decode(typed ? Enum.Parse<GgmlType>(rest[0], true) : GgmlType.Q4_0, rest.Skip(typed ? 1 : 0).Select(int.Parse).DefaultIfEmpty(0).ToArray());
            return;
        }
        if (types.Length > 0 && types[0] == "q6k")
        {
            Q6KTiles(int.Parse(types[1]), int.Parse(types[2]));
            return;
        }
        if (types.Length > 0 && types[0] == "small")
        {
            int rows = int.Parse(types[2]), cols = int.Parse(types[3]), n = int.Parse(types[4]);
            var type = Enum.Parse<GgmlType>(types[1], true);
            Compute.WorkerPool.SetThreadCount(1);
            long rowBytes = GgmlTypeInfo.RowBytes(type, cols);
            var w = new byte[rowBytes * rows];
            Quantizer.QuantizeRow(type, Data.Random(rows * cols, 5), w);
            var x = Data.Random(n * cols, 6);
            var y = new float[n * rows];
            double narrow = double.MaxValue, wide = double.MaxValue;
            unsafe
            {
                fixed (byte* wp = w)
                {
                    byte* p = wp;
                    for (int round = 0; round < 8; round++)
                    {
                        Compute.MatMul.WideTiles = false;
                        narrow = Math.Min(narrow, Time(() => { Compute.MatMul.MatMat(type, p, rows, cols, x, n, y); return y[0]; }));
                        Compute.MatMul.WideTiles = true;
                        wide = Math.Min(wide, Time(() => { Compute.MatMul.MatMat(type, p, rows, cols, x, n, y); return y[0]; }));
                    }
                }
            }
            double pairs = (double)rows * n * cols / 32;
            Console.WriteLine($"{type} {rows}x{cols} n={n}: 4-row {narrow:F1} us ({narrow * 1000 / pairs:F3} ns per 32-value pair), widest {wide:F1} us ({wide * 1000 / pairs:F3} ns)");
            return;
        }
        if (types.Length > 0 && types[0] == "matmat")
        {
            // Batched products only, the widest tiles against 4-row tiles, interleaved (best of rounds).
            var matTypes = types.Length > 1 ? types.Skip(1).Select(t => Enum.Parse<GgmlType>(t, true)).ToArray()
                : [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K];
            foreach (var type in matTypes)
            {
                var b = new MatMatBenchmarks { Type = type };
                b.Setup();
                double narrow = double.MaxValue, wide = double.MaxValue;
                for (int round = 0; round < 8; round++)
                {
                    Compute.MatMul.WideTiles = false;
                    narrow = Math.Min(narrow, Time(() => b.MatMat()));
                    Compute.MatMul.WideTiles = true;
                    wide = Math.Min(wide, Time(() => b.MatMat()));
                }
                Console.WriteLine($"32 x (1024x4096) {type,-5} MatMat 4-row tiles {narrow,9:F1} us  widest tiles {wide,9:F1} us ({narrow / wide:F2}x)");
            }
            return;
        }
        if (types.Length > 0 && types[0] == "matvec")
        {
            // `quick matvec [ROWS] [TYPE...]`: ROWS weight rows of 4096 (default 4096; 128 keeps them in L2).
            int rows = types.Length > 1 ? int.Parse(types[1]) : 4096;
            GgmlType[] vecTypes = types.Length > 2 ? types.Skip(2).Select(t => Enum.Parse<GgmlType>(t, true)).ToArray()
                : [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K];
            foreach (var type in vecTypes)
            {
                var b = new MatVecBenchmarks { Type = type, Rows = rows };
                b.Setup();
                var (ggml, ours, paired) = Interleaved(() => b.LlamaCppOneThread(), () => b.QuantLlamaOneThread(), 3000);
                double all = double.MaxValue;
                for (int round = 0; round < 8; round++) all = Math.Min(all, Time(() => b.QuantLlamaAllCores()));
                Console.WriteLine($"MatVec {rows}x4096 {type,-5} llama.cpp 1 thread {ggml,9:F1} us  ours 1 thread {ours,9:F1} us (ratio {ggml / ours:F2}, paired median {paired:F2})  ours {Environment.ProcessorCount} threads {all,9:F1} us");
            }
            foreach (var type in vecTypes)
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
            // The best call of each is the least disturbed; the paired median compares them in the same conditions.
            var (ggml, ours, paired) = Interleaved(() => b.LlamaCpp(), () => b.QuantLlama(), 3000);
            Console.WriteLine($"{type,-5} llama.cpp {ggml,8:F2} us  ours {ours,8:F2} us  speed ratio (llama.cpp time / ours) {ggml / ours:F2}  paired median {paired:F2}");
        }
    }

    /// <summary>
    /// Alternates short runs of repeated calls (a warm-up call, then 8 timed) of <paramref name="first"/> and
    /// <paramref name="second"/> for about <paramref name="milliseconds"/>. This machine is a shared VM whose speed
    /// jumps between two levels about 1.5x apart for stretches of its own; runs this short put both engines in the
    /// same stretch, each still warm. Returns each one's best call, and the median over the pairs of runs of the
    /// ratio of their median calls (first / second).
    /// </summary>
    private static (double FirstBest, double SecondBest, double PairedRatio) Interleaved(Func<float> first, Func<float> second, int milliseconds)
    {
        const int Calls = 8;
        double bestA = double.MaxValue, bestB = double.MaxValue;
        var ratios = new List<double>();
        var a = new double[Calls];
        var b = new double[Calls];
        var total = Stopwatch.StartNew();
        while (total.ElapsedMilliseconds < milliseconds)
        {
            bestA = Math.Min(bestA, Run(first, a));
            bestB = Math.Min(bestB, Run(second, b));
            ratios.Add(a[Calls / 2] / b[Calls / 2]);
        }
        ratios.Sort();
        return (bestA, bestB, ratios[ratios.Count / 2]);

        static double Run(Func<float> f, double[] times)
        {
            f();
            for (int i = 0; i < times.Length; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                f();
                times[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            }
            Array.Sort(times);
            return times[0];
        }
    }

    /// <summary>
    /// `quick decode [TYPE] [M...]`: 1 to 8 activation rows (conversations decoding together) through MatMul over 24
    /// matrices of 2048 x 2048 of TYPE (Q4_0 by default, Q4_K, Q8_0; Q4_0: 54 MiB, more than the caches, so weights come from memory as in generation), over the
    /// mapped weights (row dots, quad tiles, padded 8-row tiles) and over the repacked copy; best of alternating runs,
    /// µs per matrix. BENCH_THREADS sets the thread count.
    /// </summary>
    private static unsafe void Decode(GgmlType type, int[] counts)
    {
        const int matrices = 24, rows = 2048, cols = 2048;
        if (int.TryParse(Environment.GetEnvironmentVariable("BENCH_THREADS"), out int threads)) Compute.WorkerPool.SetThreadCount(threads);
        if (counts.Length == 0 || counts[0] == 0) counts = [1, 2, 3, 4, 5, 6, 7, 8];
        long wBytes = GgmlTypeInfo.RowBytes(type, cols) * rows;
        var w = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(wBytes * matrices), 64);
        var groups = new nint[matrices];
        var block = new byte[wBytes];
        Quantizer.QuantizeRow(type, Data.Random(rows * cols, 5), block);
        for (int m = 0; m < matrices; m++)
        {
            block.AsSpan().CopyTo(new Span<byte>(w + m * wBytes, (int)wBytes));
            groups[m] = (nint)Compute.RepackedWeights.Create(type, w + m * wBytes, rows, cols);
        }
        var x = Data.Random(8 * cols, 6);
        var y = new float[8 * rows];
        fixed (float* xp = x, yp = y)
        {
            float* X = xp, Y = yp;
            float Run(int n, bool repacked)
            {
                for (int m = 0; m < matrices; m++)
                {
                    var product = new Compute.MatMul.Product(type, w + m * wBytes, rows, Y, repacked ? (byte*)groups[m] : null);
                    Compute.MatMul.Group(&product, 1, cols, X, n);
                }
                return Y[0];
            }
            foreach (int n in counts)
            {
                double mapped = double.MaxValue, packed = double.MaxValue;
                int saved = Compute.MatMul.MinRepackedRows;
                Compute.MatMul.MinRepackedRows = 1;
                for (int round = 0; round < 5; round++)
                {
                    mapped = Math.Min(mapped, Time(() => Run(n, false)) / matrices);
                    packed = Math.Min(packed, Time(() => Run(n, true)) / matrices);
                }
                Compute.MatMul.MinRepackedRows = saved;
                Console.WriteLine($"{type} {rows}x{cols}, {n} rows, {Compute.WorkerPool.ThreadCount} threads: mapped {mapped,7:F1} us, repacked {packed,7:F1} us ({mapped / packed:F2}x)");
            }
        }
        foreach (var g in groups) Compute.RepackedWeights.Free((byte*)g);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(w);
    }

    /// <summary>
    /// `quick q6k ROWS COLS`: Q6_K's 8-row tiles, AVX2 against AVX-512, one thread, over ROWS weight rows (few: in
    /// cache; 32768 x 4096: 110 MB, from memory), and whether their outputs differ anywhere.
    /// </summary>
    private static unsafe void Q6KTiles(int rows, int cols)
    {
        var w = new byte[GgmlTypeInfo.RowBytes(GgmlType.Q6_K, cols) * rows];
        Quantizer.QuantizeRow(GgmlType.Q6_K, Data.Random(rows * cols, 5), w);
        var x = Data.Random(8 * cols, 6);
        long aBytes = GgmlTypeInfo.RowBytes(GgmlType.Q8_K, cols), wBytes = GgmlTypeInfo.RowBytes(GgmlType.Q6_K, cols);
        var act = new byte[aBytes * 8];
        var ya = new float[8 * rows]; var yb = new float[8 * rows];
        fixed (byte* wp = w) fixed (byte* ap = act) fixed (float* xp = x) fixed (float* yap = ya) fixed (float* ybp = yb)
        {
            byte* W = wp, A = ap; float* YA = yap, YB = ybp;
            for (int i = 0; i < 8; i++) Quantizer.QuantizeRow(GgmlType.Q8_K, x.AsSpan(i * cols, cols), act.AsSpan((int)(i * aBytes), (int)aBytes));
            double a = double.MaxValue, b = double.MaxValue;
            for (int round = 0; round < 8; round++)
            {
                a = Math.Min(a, Time(() => { for (int r = 0; r < rows; r++) Quants.KQuants.Q6_K.Dot8Avx2(W + r * wBytes, A, (nint)aBytes, cols, YA + r, rows); return YA[0]; }));
                b = Math.Min(b, Time(() => { for (int r = 0; r < rows; r++) Quants.Tiles.Q6KPairTiles.Dot8(W + r * wBytes, A, (nint)aBytes, cols, YB + r, rows); return YB[0]; }));
            }
            int diff = 0;
            for (int i = 0; i < ya.Length; i++) if (BitConverter.SingleToInt32Bits(ya[i]) != BitConverter.SingleToInt32Bits(yb[i])) diff++;
            double pairs = 8.0 * rows * cols / 32;
            Console.WriteLine($"Q6_K 8 rows x {rows}x{cols}: AVX2 tile {a:F1} us ({a * 1000 / pairs:F3} ns per 32-value pair), AVX-512 tile {b:F1} us ({b * 1000 / pairs:F3} ns, {a / b:F2}x); {diff} of {ya.Length} outputs differ");
        }
    }

    /// <summary>
    /// `quick repacked ROWS COLS [TYPE]` (Q4_0 by default): 8 activation rows against ROWS x COLS weights, the type's
    /// packed 8-row tile over the file's rows against its repacked 8 x 8 kernel, one thread; results compared bit for
    /// bit. ROWS x COLS past L3 times both from memory.
    /// </summary>
    private static unsafe void Repacked(int rows, int cols, GgmlType type)
    {
        var kernel = QuantKernels.Get(type).OnCurrentPath();
        if (!Compute.RepackedWeights.Supported(type, 8, cols)) throw new ArgumentException($"{type} has no repacked layout for {cols} columns on this CPU");
        var layout = Compute.RepackedWeights.For(type);
        long wBytes = GgmlTypeInfo.RowBytes(type, cols), gBytes = layout.GroupBytes(cols);
        var w = new byte[wBytes * rows];
        Quantizer.QuantizeRow(type, Data.Random(rows * cols, 5), w);
        var x = Data.Random(8 * cols, 6);
        long aBytes = Q8Products.ActivationRowBytes(cols);
        var act = new byte[aBytes * 8]; var tileA = new byte[kernel.PackedTileBytes(cols)]; var tileB = new byte[layout.TileBytes(cols)];
        var packedMemory = Compute.RepackedWeights.Allocate(gBytes * (rows / 8));
        var ya = new float[8 * rows]; var yb = new float[8 * rows];
        fixed (byte* wp = w) fixed (byte* ap = act) fixed (byte* ta = tileA) fixed (byte* tb = tileB)
        fixed (float* xp = x) fixed (float* yap = ya) fixed (float* ybp = yb)
        {
            byte* W = wp, TA = ta, TB = tb, PP = packedMemory, pp = packedMemory; float* YA = yap, YB = ybp;
            for (int i = 0; i < 8; i++) Q8Products.QuantizeActivation(xp + i * cols, ap + i * aBytes, cols);
            kernel.PackActivationTile(ap, (nint)aBytes, cols, ta);
            layout.PackActivationRows(ap, (nint)aBytes, cols, tb, 8);
            var sw = Stopwatch.StartNew();
            for (int g = 0; g < rows / 8; g++) layout.Repack(wp + g * 8 * wBytes, wBytes, cols, pp + g * gBytes);
            double first = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            for (int g = 0; g < rows / 8; g++) layout.Repack(wp + g * 8 * wBytes, wBytes, cols, pp + g * gBytes);
            Console.WriteLine($"repack {type} {rows}x{cols}: {first:F2} ms into fresh memory, {sw.Elapsed.TotalMilliseconds:F2} ms again");
            var tile = kernel.Dot8PackedAvx2;
            var dot8x8 = layout.Dot;
            double a = double.MaxValue, b = double.MaxValue;
            for (int round = 0; round < 8; round++)
            {
                a = Math.Min(a, Time(() => { for (int r = 0; r < rows; r++) tile(W + r * wBytes, TA, cols, YA + r, rows); return YA[0]; }));
                b = Math.Min(b, Time(() => { for (int g = 0; g < rows / 8; g++) dot8x8(PP + g * gBytes, TB, cols, YB + g * 8, rows, 8); return YB[0]; }));
            }
            int diff = 0;
            for (int i = 0; i < ya.Length; i++) if (BitConverter.SingleToInt32Bits(ya[i]) != BitConverter.SingleToInt32Bits(yb[i])) diff++;
            Console.WriteLine($"{type} 8 rows x {rows}x{cols}: packed tile {a:F1} us, row groups {b:F1} us ({a / b:F2}x); {diff} of {ya.Length} outputs differ");
        }
        Compute.RepackedWeights.Free(packedMemory);
    }

    private static unsafe void RepackedQ4_K(int rows, int cols)
    {
        long wBytes = GgmlTypeInfo.RowBytes(GgmlType.Q4_K, cols), gBytes = Quants.Tiles.Q4KRowGroups.GroupBytes(cols);
        var wp = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(wBytes * rows), 64);
        var pp = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(gBytes * (rows / 8)), 64);
        // Quantized in runs of 64 equal rows: quantizing every row of a matrix past the cache would take minutes.
        var row = new byte[wBytes];
        for (int r = 0; r < rows; r += 64)
        {
            Quantizer.QuantizeRow(GgmlType.Q4_K, Data.Random(cols, 5 + r), row);
            for (int k = r; k < Math.Min(rows, r + 64); k++) row.CopyTo(new Span<byte>(wp + k * wBytes, (int)wBytes));
        }
        var x = Data.Random(8 * cols, 6);
        long aBytes = GgmlTypeInfo.RowBytes(GgmlType.Q8_K, cols);
        var act = new byte[aBytes * 8];
        var tileA = new byte[Quants.KQuants.Q4_K.PackedTileBytes(cols)]; var tileB = new byte[Quants.Tiles.Q4KRowGroups.PackedTileBytes(cols)];
        var ya = new float[8 * rows]; var yb = new float[8 * rows];
        fixed (byte* ap = act) fixed (byte* ta = tileA) fixed (byte* tb = tileB)
        fixed (float* yap = ya) fixed (float* ybp = yb)
        {
            byte* W = wp, TA = ta, TB = tb, PP = pp; float* YA = yap, YB = ybp;
            for (int i = 0; i < 8; i++) Quants.KQuants.Q8_K.Quantize(x.AsSpan(i * cols, cols), act.AsSpan((int)(i * aBytes), (int)aBytes));
            Quants.Tiles.Q4KPairTiles.PackActivationTile(ap, (nint)aBytes, cols, ta);
            Quants.Tiles.Q4KRowGroups.PackActivationRows(ap, (nint)aBytes, cols, tb, 8);
            var sw = Stopwatch.StartNew();
            for (int g = 0; g < rows / 8; g++) Quants.Tiles.Q4KRowGroups.Repack(wp + g * 8 * wBytes, wBytes, cols, pp + g * gBytes);
            double first = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            for (int g = 0; g < rows / 8; g++) Quants.Tiles.Q4KRowGroups.Repack(wp + g * 8 * wBytes, wBytes, cols, pp + g * gBytes);
            Console.WriteLine($"repack {rows}x{cols} Q4_K, one thread: {first:F2} ms (first, with page faults), {sw.Elapsed.TotalMilliseconds:F2} ms again; {wBytes * rows / 1048576.0:F1} MiB mapped, {gBytes * (rows / 8) / 1048576.0:F1} MiB repacked");
            double a = double.MaxValue, b = double.MaxValue;
            for (int round = 0; round < 8; round++)
            {
                a = Math.Min(a, Time(() => { for (int r = 0; r < rows; r++) Quants.Tiles.Q4KPairTiles.Dot8Packed(W + r * wBytes, TA, cols, YA + r, rows); return YA[0]; }));
                b = Math.Min(b, Time(() => { for (int g = 0; g < rows / 8; g++) Quants.Tiles.Q4KRowGroups.DotRows(PP + g * gBytes, TB, cols, YB + g * 8, rows, 8); return YB[0]; }));
            }
            int diff = 0;
            for (int i = 0; i < ya.Length; i++) if (BitConverter.SingleToInt32Bits(ya[i]) != BitConverter.SingleToInt32Bits(yb[i])) diff++;
            Console.WriteLine($"8 rows x {rows}x{cols} Q4_K: pair tile {a:F1} us, row groups {b:F1} us ({a / b:F2}x); {diff} of {ya.Length} outputs differ");
            // Generation and small batches: m row dots per weight row against the kernel for m rows over the copy.
            foreach (int m in new[] { 1, 2, 4 })
            {
                Quants.Tiles.Q4KRowGroups.PackActivationRows(ap, (nint)aBytes, cols, tb, m);
                byte* A = ap;
                double rowDots = double.MaxValue, kernel = double.MaxValue;
                for (int round = 0; round < 8; round++)
                {
                    rowDots = Math.Min(rowDots, Time(() =>
                    {
                        for (int r = 0; r < rows; r++)
                            for (int j = 0; j < m; j++) YA[j * rows + r] = Quants.KQuants.Q4_K.DotAvx2(W + r * wBytes, A + j * aBytes, cols);
                        return YA[0];
                    }));
                    kernel = Math.Min(kernel, Time(() =>
                    {
                        for (int g = 0; g < rows / 8; g++) Quants.Tiles.Q4KRowGroups.DotRows(PP + g * gBytes, TB, cols, YB + g * 8, rows, m);
                        return YB[0];
                    }));
                }
                diff = 0;
                for (int i = 0; i < m * rows; i++) if (BitConverter.SingleToInt32Bits(ya[i]) != BitConverter.SingleToInt32Bits(yb[i])) diff++;
                Console.WriteLine($"{m} rows x {rows}x{cols} Q4_K: row dots {rowDots:F1} us, row groups {kernel:F1} us ({rowDots / kernel:F2}x, {gBytes * (rows / 8) / kernel / 1000:F1} GB/s); {diff} of {m * rows} outputs differ");
            }
        }
        System.Runtime.InteropServices.NativeMemory.AlignedFree(wp);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(pp);
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

/// <summary>The matrix products of one TinyLlama-shape layer (dim 2048, 4 KV heads of 64, ffn 5632) over 512 rows.</summary>
internal sealed unsafe class LayerProducts : IDisposable
{
    private const int Dim = 2048, KvDim = 256, Ffn = 5632, N = 512;
    private readonly GgmlType _type;
    private readonly byte* _wq, _wk, _wv, _wo, _gate, _up, _down;
    private readonly float* _x, _y1, _y2, _y3, _h;
    // Repacked copies (RepackedWeights) of wq, wk, wv, wo, gate, up, down, or none.
    private readonly byte*[] _groups = new byte*[7];

    /// <summary>True when the type has a repacked form on this CPU.</summary>
    public bool CanRepack { get; }

    /// <summary>True: the products read the repacked copies.</summary>
    public bool Repacked { get; set; }

    public LayerProducts(GgmlType type)
    {
        _type = type;
        _wq = Weights(Dim, Dim, 1); _wk = Weights(KvDim, Dim, 2); _wv = Weights(KvDim, Dim, 3); _wo = Weights(Dim, Dim, 4);
        _gate = Weights(Ffn, Dim, 5); _up = Weights(Ffn, Dim, 6); _down = Weights(Dim, Ffn, 7);
        _x = Floats((long)N * Ffn, 8);
        _y1 = Floats((long)N * Ffn, 0); _y2 = Floats((long)N * Ffn, 0); _y3 = Floats((long)N * Ffn, 0); _h = Floats((long)N * Ffn, 9);
        CanRepack = Compute.RepackedWeights.Supported(type, Dim, Dim);
        if (!CanRepack) return;
        byte*[] weights = [_wq, _wk, _wv, _wo, _gate, _up, _down];
        int[] rows = [Dim, KvDim, KvDim, Dim, Ffn, Ffn, Dim], cols = [Dim, Dim, Dim, Dim, Dim, Dim, Ffn];
        for (int i = 0; i < 7; i++) _groups[i] = Compute.RepackedWeights.Create(type, weights[i], rows[i], cols[i]);
    }

    private byte* Groups(int i) => Repacked ? _groups[i] : null;

    private byte* Weights(int rows, int cols, int seed)
    {
        long rowBytes = GgmlTypeInfo.RowBytes(_type, cols);
        var p = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(rowBytes * rows), 64);
        var w = new byte[rowBytes];
        var rng = new Random(seed);
        var f = new float[cols];
        for (int r = 0; r < rows; r += 64)
        {
            for (int i = 0; i < cols; i++) f[i] = (float)(rng.NextDouble() - 0.5) * 0.1f;
            Quantizer.QuantizeRow(_type, f, w);
            for (int k = r; k < Math.Min(rows, r + 64); k++) w.CopyTo(new Span<byte>(p + k * rowBytes, (int)rowBytes));
        }
        return p;
    }

    private static float* Floats(long count, int seed)
    {
        var p = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(count * 4), 64);
        var rng = new Random(seed);
        for (long i = 0; i < count; i++) p[i] = seed == 0 ? 0 : (float)(rng.NextDouble() * 2 - 1);
        return p;
    }

    public double TimeMs()
    {
        var t0 = Stopwatch.GetTimestamp();
        var qkv = stackalloc Compute.MatMul.Product[3];
        qkv[0] = new Compute.MatMul.Product(_type, _wq, Dim, _y1, Groups(0));
        qkv[1] = new Compute.MatMul.Product(_type, _wk, KvDim, _y2, Groups(1));
        qkv[2] = new Compute.MatMul.Product(_type, _wv, KvDim, _y3, Groups(2));
        Compute.MatMul.Group(qkv, 3, Dim, _x, N);
        var wo = new Compute.MatMul.Product(_type, _wo, Dim, _y1, Groups(3));
        Compute.MatMul.Group(&wo, 1, Dim, _x, N);
        var gateUp = stackalloc Compute.MatMul.Product[2];
        gateUp[0] = new Compute.MatMul.Product(_type, _gate, Ffn, _y1, Groups(4));
        gateUp[1] = new Compute.MatMul.Product(_type, _up, Ffn, _y2, Groups(5));
        Compute.MatMul.Group(gateUp, 2, Dim, _x, N);
        var down = new Compute.MatMul.Product(_type, _down, Dim, _y3, Groups(6));
        Compute.MatMul.Group(&down, 1, Ffn, _h, N);
        return Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
    }

    public void Dispose()
    {
        foreach (var p in new[] { (nint)_wq, (nint)_wk, (nint)_wv, (nint)_wo, (nint)_gate, (nint)_up, (nint)_down, (nint)_x, (nint)_y1, (nint)_y2, (nint)_y3, (nint)_h })
            System.Runtime.InteropServices.NativeMemory.AlignedFree((void*)p);
        foreach (var g in _groups)
            if (g != null) Compute.RepackedWeights.Free(g);
    }
}

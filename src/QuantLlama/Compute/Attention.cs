using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using QuantLlama.Quants;

namespace QuantLlama.Compute;

/// <summary>How attention rounds; each mode is one of llama.cpp's CPU computations.</summary>
internal enum AttentionRounding
{
    /// <summary>
    /// f32 cache: queries, scores and weights kept in f32 (llama.cpp with an f32 cache, flash attention off); every
    /// score is ggml's f32 vector dot, a batch's too; a batch's value sums are its GEMM's, as in <see cref="Unfused"/>.
    /// </summary>
    Full,

    /// <summary>
    /// f16 cache, flash attention off: the query is rounded to f16 for the key dot, the softmax weights are rounded to
    /// f16 for the value sum; a batch sums as llama.cpp's GEMM does, one token as its vector dot does.
    /// </summary>
    Unfused,

    /// <summary>
    /// f16 cache, flash attention on: the query is rounded to f16, the output accumulates in f16 with an online
    /// softmax; a batch of at least <see cref="Attention.FlashTile"/> tokens takes llama.cpp's tiled kernel instead
    /// (f32 query, f32 accumulator, softmax per tile of 64 positions).
    /// </summary>
    Flash,
}

/// <summary>A row of the key/value cache as the kernels read it: f16 in the cache, or f32 in a batch's scratch copy.</summary>
internal unsafe interface ICacheRow
{
    static abstract Vector256<float> Load8(byte* row, int i);
    static abstract float Load(byte* row, int i);
    static abstract int ElementSize { get; }
}

internal readonly unsafe struct HalfRow : ICacheRow
{
    public static Vector256<float> Load8(byte* row, int i) => HalfConversion.Load8((Half*)row + i);
    public static float Load(byte* row, int i) => (float)((Half*)row)[i];
    public static int ElementSize => 2;
}

internal readonly unsafe struct SingleRow : ICacheRow
{
    public static Vector256<float> Load8(byte* row, int i) => Vector256.Load((float*)row + i);
    public static float Load(byte* row, int i) => ((float*)row)[i];
    public static int ElementSize => 4;
}

/// <summary>One layer's attention: what the heads read and where they write.</summary>
internal unsafe struct AttentionJob
{
    /// <summary>[N x Dim] queries, RoPE applied; [N x Dim] outputs.</summary>
    public float* Q, Output;
    /// <summary>[heads x <see cref="Attention.ScratchFloats"/>] per-head working space.</summary>
    public float* Scratch;
    /// <summary>[positions x KvDim] keys and values of this layer, f16 or f32 (<see cref="KeysF16"/>).</summary>
    public byte* Keys, Values;
    public int Dim, KvDim, HeadDim, Group, ContextSize, MaxBatch, N, Start;
    public bool KeysF16;
    public AttentionRounding Rounding;
    /// <summary>The scores' factor; 0: 1/√HeadDim.</summary>
    public float Scale;
    /// <summary>Scores soft-capped to cap·tanh(s/cap) before the softmax (Gemma 2); 0: not.</summary>
    public float SoftCap;
    /// <summary>Positions a query sees, its own included (sliding-window layers); 0: all before it.</summary>
    public int Window;
}

/// <summary>
/// Causal multi-head attention over the KV cache, as small kernels that each round where llama.cpp's CPU code
/// rounds (see <see cref="AttentionRounding"/>): its vector dot's and its GEMM's summation orders, its softmax
/// (vectorised exp, sum in double) and its flash-attention loops.
/// </summary>
internal static unsafe class Attention
{
    /// <summary>llama.cpp's flash-attention tile (query rows and key positions); batches this long take the tiled kernel.</summary>
    public const int FlashTile = 64;

    /// <summary>Per-head working space, in floats, for a context of <paramref name="contextSize"/> positions.</summary>
    public static long ScratchFloats(int contextSize, int headDim, int maxBatch)
        => Layout.Of(contextSize, headDim, maxBatch).Total;

    /// <summary>Where each buffer sits in one head's scratch.</summary>
    private readonly struct Layout
    {
        /// <summary>[contextSize rounded up to 64] scores, then softmax weights.</summary>
        public readonly long Scores;
        /// <summary>[headDim rounded up to 8] the query rounded to f16.</summary>
        public readonly long Query;
        /// <summary>[64 x headDim] the value sums' partial accumulators, or a key tile transposed.</summary>
        public readonly long Block;
        /// <summary>[64 x headDim] a value tile as f32 (tiled flash attention).</summary>
        public readonly long ValueTile;
        /// <summary>[maxBatch] running maximum and [maxBatch] running sum per row (tiled flash attention).</summary>
        public readonly long RowMax, RowSum;
        public readonly long Total;

        private Layout(long scores, long query, long block, long rows)
        {
            Scores = 0;
            Query = scores;
            Block = Query + query;
            ValueTile = Block + block;
            RowMax = ValueTile + block;
            RowSum = RowMax + rows;
            Total = RowSum + rows;
        }

        public static Layout Of(int contextSize, int headDim, int maxBatch)
            => new(RoundUp(contextSize, FlashTile), RoundUp(headDim, 8), (long)FlashTile * headDim, maxBatch);
    }

    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    /// <summary>
    /// Runs every head of <paramref name="count"/> jobs (conversations decoding together; their scratch apart), in
    /// one parallel dispatch when there is enough work.
    /// </summary>
    public static void Run(AttentionJob* jobs, int count, int heads)
    {
        long work = 0;
        for (int j = 0; j < count; j++) work += (long)jobs[j].N * (jobs[j].Start + jobs[j].N) * jobs[j].HeadDim * heads;
        var many = new Jobs { First = jobs, Heads = heads };
        if (work >= 1 << 16 && count * heads > 1) WorkerPool.Run(count * heads, &HeadOfMany, &many);
        else for (int i = 0; i < count * heads; i++) HeadOfMany(&many, i);
    }

    private struct Jobs
    {
        public AttentionJob* First;
        public int Heads;
    }

    private static void HeadOfMany(void* context, int item)
    {
        var many = (Jobs*)context;
        Head(many->First + item / many->Heads, item % many->Heads);
    }

    private static void Head(void* context, int h)
    {
        var job = (AttentionJob*)context;
        if (job->KeysF16) Head<HalfRow>(job, h);
        else Head<SingleRow>(job, h);
    }

    /// <summary>One query head over every row of the batch (causal), in its own slice of the scratch.</summary>
    private static void Head<TRow>(AttentionJob* job, int h) where TRow : struct, ICacheRow
    {
        int dim = job->Dim, headDim = job->HeadDim, n = job->N, start = job->Start;
        int kvHead = h / job->Group;
        var layout = Layout.Of(job->ContextSize, headDim, job->MaxBatch);
        float* scratch = job->Scratch + h * layout.Total;
        float* scores = scratch + layout.Scores, query = scratch + layout.Query, block = scratch + layout.Block;
        float scale = job->Scale != 0 ? job->Scale : 1f / MathF.Sqrt(headDim), softCap = job->SoftCap;
        int window = job->Window;
        long stride = (long)job->KvDim * TRow.ElementSize;
        byte* keys = job->Keys + (long)kvHead * headDim * TRow.ElementSize;
        byte* values = job->Values + (long)kvHead * headDim * TRow.ElementSize;
        float* q0 = job->Q + h * headDim, o0 = job->Output + h * headDim;

        if (job->Rounding == AttentionRounding.Flash && n >= FlashTile && headDim % 8 == 0)
        {
            FlashTiled<TRow>(q0, o0, dim, n, start, keys, values, stride, headDim, scale, softCap, window, scores, block,
                scratch + layout.ValueTile, scratch + layout.RowMax, scratch + layout.RowSum);
            return;
        }
        for (int i = 0; i < n; i++)
        {
            float* q = q0 + (long)i * dim, o = o0 + (long)i * dim;
            int positions = start + i + 1;
            // The positions before the window are masked: -inf scores for the softmax, skipped by flash attention.
            int first = window > 0 ? Math.Max(0, positions - window) : 0;
            switch (job->Rounding)
            {
                case AttentionRounding.Full:
                case AttentionRounding.Unfused:
                    // The f32 cache computes the same products without rounding the query or the weights.
                    bool f16 = job->Rounding == AttentionRounding.Unfused;
                    if (f16) RoundToHalf(q, query, headDim);
                    else new Span<float>(q, headDim).CopyTo(new Span<float>(query, headDim));
                    // llama.cpp hands a batch (two tokens or more) to its GEMM, which needs whole 8-value steps. Not
                    // the f32 cache's scores: their queries are a permuted view, which its GEMM refuses, and f32 needs
                    // no conversion into a contiguous copy, so each score is its vector dot.
                    bool gemm = n > 1;
                    if (gemm && f16 && headDim % 8 == 0) ScoresGemm<TRow>(query, keys, stride, positions, headDim, scale, scores);
                    else if (f16) ScoresDot<TRow>(query, keys, stride, positions, headDim, scale, scores);
                    else ScoresDotF32<TRow>(query, keys, stride, positions, headDim, scale, scores);
                    if (softCap != 0) SoftCapScores(scores, positions, softCap);
                    for (int t = 0; t < first; t++) scores[t] = float.NegativeInfinity;
                    int padded = RoundUp(positions, 8);
                    for (int t = positions; t < padded; t++) scores[t] = float.NegativeInfinity;
                    Softmax(scores, padded);
                    if (f16) RoundToHalf(scores, scores, positions);
                    if (gemm && headDim % 4 == 0) WeightedSumGemm<TRow>(scores, values, stride, positions, headDim, block, o);
                    else WeightedSumDot<TRow>(scores, values, stride, positions, headDim, block, o);
                    break;
                default:
                    RoundToHalf(q, query, headDim);
                    FlashOnline<TRow>(query, keys + first * stride, values + first * stride, stride, positions - first, headDim, scale,
                        softCap, block, o);
                    break;
            }
        }
    }

    /// <summary>s = cap · tanh(s · (1/cap)) for each score: ggml's scale, tanh and scale ops on the scores.</summary>
    private static void SoftCapScores(float* scores, int count, float cap)
    {
        float inverse = 1f / cap;
        for (int t = 0; t < count; t++) scores[t] = MathF.Tanh(scores[t] * inverse) * cap;
    }

    /// <summary>
    /// y = x rounded to f16 (to nearest even), kept as f32; y may be x. Eight at a time by adding and subtracting
    /// 1.5 · 2^(e+13) for x's exponent e (at least f16's smallest normal exponent, −14): the sum's last place is then
    /// f16's spacing at x, so the float addition rounds x exactly as f16 does, ties to even included; magnitudes
    /// from 65520 up (f16 infinity) and NaN take the scalar conversion.
    /// </summary>
    public static void RoundToHalf(float* x, float* y, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var exponent = Vector256.Create(0x7F800000u);
            var smallest = Vector256.Create(0x38800000u); // 2^-14
            var magic = Vector256.Create(13u << 23) + Vector256.Create(0x00400000u); // × 2^13, mantissa 1.5
            var sign = Vector256.Create(0x80000000u);
            var limit = Vector256.Create(65520f);
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.Load(x + i);
                if (!Vector256.LessThanAll(Vector256.Abs(v), limit)) break; // infinity, NaN or beyond f16's range
                var c = (Vector256.Max(v.AsUInt32() & exponent, smallest) + magic).AsSingle();
                Vector256.Store((((v + c) - c).AsUInt32() | (v.AsUInt32() & sign)).AsSingle(), y + i);
            }
        }
        for (; i < n; i++) y[i] = Fp16.Round(x[i]);
    }

    /// <summary>
    /// ggml's f16 vector dot (ggml_vec_dot_f16) over f16-valued rows: value d into accumulator d mod 32 by fused
    /// multiply-adds while whole 32-value steps last, the accumulators reduced in ggml's order, the rest in double.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float DotGgml<TRow>(byte* x, float* y, int n) where TRow : struct, ICacheRow
    {
        int np = n & ~31;
        double sum = DotSteps<TRow>(x, y, np);
        for (int i = np; i < n; i++) sum += TRow.Load(x, i) * y[i];
        return (float)sum;
    }

    /// <summary>ggml's vector dots' whole 32-value steps (np a multiple of 32): four fused 8-lane accumulators, reduced.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotSteps<TRow>(byte* x, float* y, int np) where TRow : struct, ICacheRow
    {
        if (np == 0) return 0;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (int i = 0; i < np; i += 32)
        {
            s0 = Vector256.FusedMultiplyAdd(TRow.Load8(x, i), Vector256.Load(y + i), s0);
            s1 = Vector256.FusedMultiplyAdd(TRow.Load8(x, i + 8), Vector256.Load(y + i + 8), s1);
            s2 = Vector256.FusedMultiplyAdd(TRow.Load8(x, i + 16), Vector256.Load(y + i + 16), s2);
            s3 = Vector256.FusedMultiplyAdd(TRow.Load8(x, i + 24), Vector256.Load(y + i + 24), s3);
        }
        return ReduceGgml((s0 + s2) + (s1 + s3));
    }

    /// <summary>
    /// ggml's f32 vector dot (ggml_vec_dot_f32): <see cref="DotGgml{TRow}"/>'s accumulators, but the sum and the rest
    /// kept in f32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float DotGgmlF32<TRow>(byte* x, float* y, int n) where TRow : struct, ICacheRow
    {
        int np = n & ~31;
        float sum = DotSteps<TRow>(x, y, np);
        for (int i = np; i < n; i++) sum += TRow.Load(x, i) * y[i];
        return sum;
    }

    /// <summary>ggml's reduction of one 8-lane vector: the halves added, then two horizontal adds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ReduceGgml(Vector256<float> x)
    {
        var t = x.GetLower() + x.GetUpper();
        return (t.GetElement(0) + t.GetElement(1)) + (t.GetElement(2) + t.GetElement(3));
    }

    /// <summary>The horizontal sum of llama.cpp's GEMM and softmax: ((x0+x4)+(x2+x6)) + ((x1+x5)+(x3+x7)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HSum(Vector256<float> x)
    {
        var t = x.GetLower() + x.GetUpper();
        return (t.GetElement(0) + t.GetElement(2)) + (t.GetElement(1) + t.GetElement(3));
    }

    /// <summary>scores[t] = DotGgml(k_t, q) · scale (a single token, or a head size the GEMM cannot take).</summary>
    public static void ScoresDot<TRow>(float* q, byte* keys, long stride, int positions, int headDim, float scale, float* scores)
        where TRow : struct, ICacheRow
    {
        for (int t = 0; t < positions; t++, keys += stride) scores[t] = DotGgml<TRow>(keys, q, headDim) * scale;
    }

    /// <summary>scores[t] = DotGgmlF32(k_t, q) · scale (the f32 cache, a single token).</summary>
    public static void ScoresDotF32<TRow>(float* q, byte* keys, long stride, int positions, int headDim, float scale, float* scores)
        where TRow : struct, ICacheRow
    {
        for (int t = 0; t < positions; t++, keys += stride) scores[t] = DotGgmlF32<TRow>(keys, q, headDim) * scale;
    }

    /// <summary>scores[t] = (k_t·q as llama.cpp's GEMM sums it: one 8-lane fused accumulator, then <see cref="HSum"/>) · scale.</summary>
    public static void ScoresGemm<TRow>(float* q, byte* keys, long stride, int positions, int headDim, float scale, float* scores)
        where TRow : struct, ICacheRow
    {
        for (int t = 0; t < positions; t++, keys += stride)
        {
            var acc = Vector256<float>.Zero;
            for (int d = 0; d < headDim; d += 8) acc = Vector256.FusedMultiplyAdd(TRow.Load8(keys, d), Vector256.Load(q + d), acc);
            scores[t] = HSum(acc) * scale;
        }
    }

    /// <summary>
    /// ggml's softmax over <paramref name="count"/> scores (a multiple of 8; -inf where masked): the maximum, ggml's
    /// vectorised exp 8 at a time, each 8's sum added in double, then every weight times 1/sum. Returns nothing: the
    /// weights replace the scores.
    /// </summary>
    public static void Softmax(float* x, int count)
    {
        float max = float.NegativeInfinity;
        for (int t = 0; t < count; t++) max = max > x[t] ? max : x[t];
        double sum = ExpSum(x, count, max);
        float inv = (float)(1.0 / sum);
        var vinv = Vector256.Create(inv);
        for (int t = 0; t < count; t += 8) Vector256.Store(Vector256.Load(x + t) * vinv, x + t);
    }

    /// <summary>x[t] = exp(x[t] − max) by ggml's vectorised exp (count a multiple of 8); returns their sum as ggml forms it.</summary>
    private static double ExpSum(float* x, int count, float max)
    {
        double sum = 0;
        var m = Vector256.Create(max);
        for (int t = 0; t < count; t += 8)
        {
            var e = VectorMath.Exp(Vector256.Load(x + t) - m);
            Vector256.Store(e, x + t);
            sum += HSum(e);
        }
        return sum;
    }

    /// <summary>
    /// o[d] = Σ_t w_t v_t[d] as ggml's f16 and f32 vector dots sum a one-token product: position t into accumulator t mod 32
    /// (whole 32-position steps, as llama.cpp's cache length is a multiple of 32), reduced in ggml's order.
    /// </summary>
    /// <param name="slots">[32 x headDim] the accumulators.</param>
    public static void WeightedSumDot<TRow>(float* w, byte* values, long stride, int positions, int headDim, float* slots, float* o)
        where TRow : struct, ICacheRow
    {
        Accumulate<TRow>(w, values, stride, positions, headDim, slots, 32);
        for (int d = 0; d < headDim; d++)
        {
            // Lane l of accumulator j holds slot 8j + l: (j0 + j2) + (j1 + j3), then the halves, then the pairs.
            float* s = slots + d;
            long hd = headDim;
            float y0 = (s[0] + s[16 * hd]) + (s[8 * hd] + s[24 * hd]);
            float y1 = (s[1 * hd] + s[17 * hd]) + (s[9 * hd] + s[25 * hd]);
            float y2 = (s[2 * hd] + s[18 * hd]) + (s[10 * hd] + s[26 * hd]);
            float y3 = (s[3 * hd] + s[19 * hd]) + (s[11 * hd] + s[27 * hd]);
            float y4 = (s[4 * hd] + s[20 * hd]) + (s[12 * hd] + s[28 * hd]);
            float y5 = (s[5 * hd] + s[21 * hd]) + (s[13 * hd] + s[29 * hd]);
            float y6 = (s[6 * hd] + s[22 * hd]) + (s[14 * hd] + s[30 * hd]);
            float y7 = (s[7 * hd] + s[23 * hd]) + (s[15 * hd] + s[31 * hd]);
            o[d] = ((y0 + y4) + (y1 + y5)) + ((y2 + y6) + (y3 + y7));
        }
    }

    /// <summary>
    /// o[d] = Σ_t w_t v_t[d] as llama.cpp's GEMM sums a batch's product: position t into lane t mod 8 of one fused
    /// accumulator, then <see cref="HSum"/>.
    /// </summary>
    /// <param name="slots">[8 x headDim] the accumulators.</param>
    public static void WeightedSumGemm<TRow>(float* w, byte* values, long stride, int positions, int headDim, float* slots, float* o)
        where TRow : struct, ICacheRow
    {
        Accumulate<TRow>(w, values, stride, positions, headDim, slots, 8);
        long hd = headDim;
        for (int d = 0; d < headDim; d++)
        {
            float* s = slots + d;
            o[d] = ((s[0] + s[4 * hd]) + (s[2 * hd] + s[6 * hd])) + ((s[1 * hd] + s[5 * hd]) + (s[3 * hd] + s[7 * hd]));
        }
    }

    /// <summary>slots[t mod count][d] += w_t · v_t[d] (fused), from zero.</summary>
    private static void Accumulate<TRow>(float* w, byte* values, long stride, int positions, int headDim, float* slots, int count)
        where TRow : struct, ICacheRow
    {
        new Span<float>(slots, count * headDim).Clear();
        for (int t = 0; t < positions; t++, values += stride)
        {
            float* acc = slots + (long)(t % count) * headDim;
            var wt = Vector256.Create(w[t]);
            int d = 0;
            for (; d + 8 <= headDim; d += 8)
                Vector256.Store(Vector256.FusedMultiplyAdd(TRow.Load8(values, d), wt, Vector256.Load(acc + d)), acc + d);
            for (; d < headDim; d++) acc[d] = MathF.FusedMultiplyAdd(TRow.Load(values, d), w[t], acc[d]);
        }
    }

    /// <summary>
    /// llama.cpp's flash-attention loop for one query row (the query already rounded to f16): positions in order,
    /// the output accumulated in f16 (every step rounded), rescaled when a new maximum arrives; S the f32 running sum.
    /// </summary>
    /// <param name="acc">[headDim] the f16-valued accumulator.</param>
    /// <param name="softCap">cap of cap·tanh(s/cap) on each score (ggml divides the scale by it first); 0: none.</param>
    public static void FlashOnline<TRow>(float* q, byte* keys, byte* values, long stride, int positions, int headDim, float scale,
        float softCap, float* acc, float* o) where TRow : struct, ICacheRow
    {
        if (softCap != 0) scale /= softCap;
        new Span<float>(acc, headDim).Clear();
        float sum = 0, max = float.NegativeInfinity;
        for (int t = 0; t < positions; t++, keys += stride, values += stride)
        {
            float s = DotGgml<TRow>(keys, q, headDim) * scale;
            if (softCap != 0) s = softCap * MathF.Tanh(s);
            float ms = 1, vs = 1;
            if (s > max)
            {
                float old = max;
                max = s;
                ms = MathF.Exp(old - max);
                ScaleHalf(acc, ms, headDim);
            }
            else vs = MathF.Exp(s - max);
            MultiplyAddHalf<TRow>(acc, values, vs, headDim);
            sum = sum * ms + vs; // llama.cpp's build contracts S·ms + vs into one fused step
        }
        float inv = sum == 0 ? 0 : 1f / sum;
        for (int d = 0; d < headDim; d++) o[d] = acc[d] * inv;
    }

    /// <summary>y = f16(y · v) (ggml_vec_scale_f16).</summary>
    private static void ScaleHalf(float* y, float v, int n)
    {
        for (int i = 0; i < n; i++) y[i] *= v;
        RoundToHalf(y, y, n);
    }

    /// <summary>y = f16(y + x · v) (ggml_vec_mad_f16), fused (llama.cpp's build contracts its scalar tail too).</summary>
    private static void MultiplyAddHalf<TRow>(float* y, byte* x, float v, int n) where TRow : struct, ICacheRow
    {
        int np = n & ~31, i = 0;
        var vv = Vector256.Create(v);
        for (; i < np; i += 8) Vector256.Store(Vector256.FusedMultiplyAdd(TRow.Load8(x, i), vv, Vector256.Load(y + i)), y + i);
        for (; i < n; i++) y[i] = MathF.FusedMultiplyAdd(TRow.Load(x, i), v, y[i]);
        RoundToHalf(y, y, n);
    }

    /// <summary>
    /// llama.cpp's tiled flash attention for a batch of at least <see cref="FlashTile"/> rows (head size a multiple
    /// of 8): f32 queries; per tile of 64 positions, scores by a fused sum over the head in order, the tile's
    /// maximum and softmax (ggml's exp, its sum through double into the f32 running sum), and the output, an f32
    /// accumulator kept in place in <paramref name="o0"/>, gaining Σ w_t v_t in position order. Each tile's keys and
    /// values are converted to f32 once for all the rows; every step is element-wise, so 512-bit vectors give the
    /// 256-bit steps' bits.
    /// </summary>
    /// <param name="kq">[64] one row's scores for the tile.</param>
    /// <param name="keysT">[headDim x 64] the tile's keys transposed.</param>
    /// <param name="valueTile">[64 x headDim] the tile's values.</param>
    /// <param name="rowMax">[n] running maximum per row.</param>
    /// <param name="rowSum">[n] running sum per row.</param>
    private static void FlashTiled<TRow>(float* q0, float* o0, int dim, int n, int start, byte* keys, byte* values, long stride,
        int headDim, float scale, float softCap, int window, float* kq, float* keysT, float* valueTile, float* rowMax, float* rowSum)
        where TRow : struct, ICacheRow
    {
        const int tile = FlashTile;
        bool wide = Kernels.UseAvx512;
        if (softCap != 0) scale /= softCap;
        for (int i = 0; i < n; i++)
        {
            rowMax[i] = float.NegativeInfinity;
            rowSum[i] = 0;
            new Span<float>(o0 + (long)i * dim, headDim).Clear();
        }
        int last = start + n; // positions the last row sees
        for (int ic = 0; ic < last; ic += tile)
        {
            int count = Math.Min(tile, last - ic);
            for (int tk = 0; tk < count; tk++)
            {
                byte* k = keys + (ic + tk) * stride, v = values + (ic + tk) * stride;
                float* vt = valueTile + tk * headDim;
                for (int d = 0; d < headDim; d += 8)
                {
                    Vector256.Store(TRow.Load8(v, d), vt + d);
                    var kd = TRow.Load8(k, d);
                    for (int l = 0; l < 8; l++) keysT[(d + l) * tile + tk] = kd.GetElement(l);
                }
            }
            for (int i = Math.Max(0, ic - start); i < n; i++)
            {
                int valid = Math.Min(tile, start + i + 1 - ic);
                // Sliding window: positions before first are masked; a tile wholly before it adds nothing.
                int first = window > 0 ? Math.Max(0, start + i + 1 - window) : 0;
                if (ic + valid <= first) continue;
                float* q = q0 + (long)i * dim, o = o0 + (long)i * dim;
                if (wide) TileScores512(q, keysT, headDim, scale, kq);
                else TileScores256(q, keysT, headDim, scale, kq);
                if (softCap != 0)
                    for (int tk = 0; tk < valid; tk++) kq[tk] = softCap * MathF.Tanh(kq[tk]);
                for (int tk = 0; tk < first - ic; tk++) kq[tk] = float.NegativeInfinity;
                for (int tk = valid; tk < tile; tk++) kq[tk] = float.NegativeInfinity;
                float tileMax = float.NegativeInfinity;
                for (int tk = 0; tk < tile; tk++) tileMax = tileMax > kq[tk] ? tileMax : kq[tk];
                float old = rowMax[i], max = MathF.Max(old, tileMax);
                // The accumulator's rescale for a larger maximum (1: none) is a step of its own before the tile's sums.
                float rescale = 1;
                if (max > old)
                {
                    rescale = MathF.Exp(old - max);
                    rowSum[i] *= rescale;
                }
                rowMax[i] = max;
                rowSum[i] = (float)(rowSum[i] + ExpSum(kq, tile, max));
                TileValues(o, valueTile, kq, valid, headDim, rescale, wide);
            }
        }
        for (int i = 0; i < n; i++)
        {
            float s = rowSum[i], inv = s == 0 ? 0 : 1f / s;
            float* o = o0 + (long)i * dim;
            var vinv = Vector256.Create(inv);
            for (int d = 0; d < headDim; d += 8) Vector256.Store(Vector256.Load(o + d) * vinv, o + d);
        }
    }

    /// <summary>kq[tk] = (Σ_d k_tk[d]·q[d], fused in d order) · scale for the tile's 64 positions, 8 at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileScores256(float* q, float* keysT, int headDim, float scale, float* kq)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int d = 0; d < headDim; d++)
        {
            float* k = keysT + d * FlashTile;
            var qd = Vector256.Create(q[d]);
            a0 = Vector256.FusedMultiplyAdd(Vector256.Load(k), qd, a0);
            a1 = Vector256.FusedMultiplyAdd(Vector256.Load(k + 8), qd, a1);
            a2 = Vector256.FusedMultiplyAdd(Vector256.Load(k + 16), qd, a2);
            a3 = Vector256.FusedMultiplyAdd(Vector256.Load(k + 24), qd, a3);
            a4 = Vector256.FusedMultiplyAdd(Vector256.Load(k + 32), qd, a4);
            a5 = Vector256.FusedMultiplyAdd(Vector256.Load(k + 40), qd, a5);
            a6 = Vector256.FusedMultiplyAdd(Vector256.Load(k + 48), qd, a6);
            a7 = Vector256.FusedMultiplyAdd(Vector256.Load(k + 56), qd, a7);
        }
        var vscale = Vector256.Create(scale);
        Vector256.Store(a0 * vscale, kq); Vector256.Store(a1 * vscale, kq + 8);
        Vector256.Store(a2 * vscale, kq + 16); Vector256.Store(a3 * vscale, kq + 24);
        Vector256.Store(a4 * vscale, kq + 32); Vector256.Store(a5 * vscale, kq + 40);
        Vector256.Store(a6 * vscale, kq + 48); Vector256.Store(a7 * vscale, kq + 56);
    }

    /// <summary><see cref="TileScores256"/>, 16 positions at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileScores512(float* q, float* keysT, int headDim, float scale, float* kq)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int d = 0; d < headDim; d++)
        {
            float* k = keysT + d * FlashTile;
            var qd = Vector512.Create(q[d]);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Load(k), qd, a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Load(k + 16), qd, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Load(k + 32), qd, a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Load(k + 48), qd, a3);
        }
        var vscale = Vector512.Create(scale);
        Vector512.Store(a0 * vscale, kq); Vector512.Store(a1 * vscale, kq + 16);
        Vector512.Store(a2 * vscale, kq + 32); Vector512.Store(a3 * vscale, kq + 48);
    }

    /// <summary>
    /// o = o · rescale, then o[d] = fma(v_tk[d], w_tk, o[d]) for the tile's valid positions in order, each slice of the
    /// head held in registers across the positions.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileValues(float* o, float* valueTile, float* w, int valid, int headDim, float rescale, bool wide)
    {
        bool scaled = rescale != 1;
        int d = 0;
        if (wide)
        {
            var r = Vector512.Create(rescale);
            for (; d + 64 <= headDim; d += 64)
            {
                var o0 = Vector512.Load(o + d); var o1 = Vector512.Load(o + d + 16);
                var o2 = Vector512.Load(o + d + 32); var o3 = Vector512.Load(o + d + 48);
                if (scaled) { o0 *= r; o1 *= r; o2 *= r; o3 *= r; }
                float* v = valueTile + d;
                for (int tk = 0; tk < valid; tk++, v += headDim)
                {
                    var wt = Vector512.Create(w[tk]);
                    o0 = Vector512.FusedMultiplyAdd(Vector512.Load(v), wt, o0);
                    o1 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 16), wt, o1);
                    o2 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 32), wt, o2);
                    o3 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 48), wt, o3);
                }
                Vector512.Store(o0, o + d); Vector512.Store(o1, o + d + 16);
                Vector512.Store(o2, o + d + 32); Vector512.Store(o3, o + d + 48);
            }
        }
        var r8 = Vector256.Create(rescale);
        for (; d + 32 <= headDim; d += 32)
        {
            var o0 = Vector256.Load(o + d); var o1 = Vector256.Load(o + d + 8);
            var o2 = Vector256.Load(o + d + 16); var o3 = Vector256.Load(o + d + 24);
            if (scaled) { o0 *= r8; o1 *= r8; o2 *= r8; o3 *= r8; }
            float* v = valueTile + d;
            for (int tk = 0; tk < valid; tk++, v += headDim)
            {
                var wt = Vector256.Create(w[tk]);
                o0 = Vector256.FusedMultiplyAdd(Vector256.Load(v), wt, o0);
                o1 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 8), wt, o1);
                o2 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 16), wt, o2);
                o3 = Vector256.FusedMultiplyAdd(Vector256.Load(v + 24), wt, o3);
            }
            Vector256.Store(o0, o + d); Vector256.Store(o1, o + d + 8);
            Vector256.Store(o2, o + d + 16); Vector256.Store(o3, o + d + 24);
        }
        for (; d < headDim; d += 8)
        {
            var o0 = Vector256.Load(o + d);
            if (scaled) o0 *= r8;
            float* v = valueTile + d;
            for (int tk = 0; tk < valid; tk++, v += headDim) o0 = Vector256.FusedMultiplyAdd(Vector256.Load(v), Vector256.Create(w[tk]), o0);
            Vector256.Store(o0, o + d);
        }
    }
}

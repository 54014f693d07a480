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
    /// one parallel dispatch when there is enough work. A job's flash-attention rows outside the tiled kernel go by
    /// groups of query heads that share a key/value head (<see cref="HeadGroup{TRow}"/>); the rest head by head.
    /// </summary>
    public static void Run(AttentionJob* jobs, int count, int heads)
    {
        long work = 0;
        int groups = 0;
        for (int j = 0; j < count; j++)
        {
            work += (long)jobs[j].N * (jobs[j].Start + jobs[j].N) * jobs[j].HeadDim * heads;
            if (ByGroups(jobs + j)) groups += heads / jobs[j].Group;
        }
        // A group splits into parts (heads apart) when there are too few groups to keep every thread busy.
        int parts = groups == 0 ? 1 : Math.Max(1, (2 * WorkerPool.ThreadCount + groups - 1) / groups);
        var many = new Jobs { First = jobs, Count = count, Heads = heads, Parts = parts };
        int items = 0;
        for (int j = 0; j < count; j++) items += Items(&many, jobs + j);
        if (work >= 1 << 16 && items > 1) WorkerPool.Run(items, &ItemOfMany, &many);
        else for (int i = 0; i < items; i++) ItemOfMany(&many, i);
    }

    /// <summary>
    /// Every head of one job, each on its own by <see cref="FlashOnline{TRow}"/> where flash attention takes a row
    /// at a time: the reference for <see cref="Run"/>'s grouped heads.
    /// </summary>
    internal static void RunEachHead(AttentionJob* job, int heads)
    {
        for (int h = 0; h < heads; h++) Head(job, h);
    }

    /// <summary>Flash-attention rows that <see cref="FlashTiled{TRow}"/> does not take, where vectors are hardware.</summary>
    private static bool ByGroups(AttentionJob* job)
        => job->Rounding == AttentionRounding.Flash && !TakesTiled(job) && Vector256.IsHardwareAccelerated;

    private static bool TakesTiled(AttentionJob* job) => job->N >= FlashTile && job->HeadDim % 8 == 0;

    private struct Jobs
    {
        public AttentionJob* First;
        public int Count, Heads, Parts;
    }

    /// <summary>A job's work items: its heads, or its groups' parts.</summary>
    private static int Items(Jobs* many, AttentionJob* job)
        => ByGroups(job) ? many->Heads / job->Group * Math.Min(many->Parts, job->Group) : many->Heads;

    private static void ItemOfMany(void* context, int item)
    {
        var many = (Jobs*)context;
        var job = many->First;
        for (int items; item >= (items = Items(many, job)); job++) item -= items;
        if (!ByGroups(job))
        {
            Head(job, item);
            return;
        }
        int parts = Math.Min(many->Parts, job->Group), per = (job->Group + parts - 1) / parts, part = item % parts;
        int first = part * per, heads = Math.Min(per, job->Group - first);
        if (heads <= 0) return;
        if (job->KeysF16) HeadGroup<HalfRow>(job, item / parts, first, heads);
        else HeadGroup<SingleRow>(job, item / parts, first, heads);
    }

    private static void Head(AttentionJob* job, int h)
    {
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
    /// from 65520 up (f16 infinity) and NaN are chosen apart.
    /// </summary>
    public static void RoundToHalf(float* x, float* y, int n)
    {
        int i = 0;
        if (Kernels.UseAvx512 && Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16) Vector512.Store(RoundToHalf(Vector512.Load(x + i)), y + i);
        if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8) Vector256.Store(RoundToHalf(Vector256.Load(x + i)), y + i);
        for (; i < n; i++) y[i] = Fp16.Round(x[i]);
    }

    /// <summary>Bits of 65520, the least magnitude f16 rounds to infinity; a magnitude's bits from here up are NaN's or beyond f16.</summary>
    private const uint HalfOverflowBits = 0x477FF000;

    /// <summary>
    /// Eight values rounded to f16 as <see cref="Fp16.Round"/> rounds them, without a branch: magnitudes from 65520
    /// up become infinity, NaN becomes the quiet NaN of its sign.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> RoundToHalf(Vector256<float> v)
    {
        var sign = v.AsUInt32() & Vector256.Create(0x80000000u);
        var special = Vector256.ConditionalSelect(Vector256.Equals(v, v).AsUInt32(), Vector256.Create(0x7F800000u), Vector256.Create(0x7FC00000u)) | sign;
        var inRange = Vector256.LessThan(v.AsUInt32() & Vector256.Create(0x7FFFFFFFu), Vector256.Create(HalfOverflowBits));
        return Vector256.ConditionalSelect(inRange, RoundInRange(v).AsUInt32(), special).AsSingle();
    }

    /// <summary>Eight values of magnitude below 65520 rounded to f16 (the adding and subtracting above).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> RoundInRange(Vector256<float> v)
    {
        var bits = v.AsUInt32();
        var exponent = bits & Vector256.Create(0x7F800000u);
        var smallest = Vector256.Create(0x38800000u); // 2^-14
        var magic = Vector256.Create((13u << 23) + 0x00400000u); // × 2^13, mantissa 1.5
        var c = (Vector256.Max(exponent, smallest) + magic).AsSingle();
        return (((v + c) - c).AsUInt32() | (bits & Vector256.Create(0x80000000u))).AsSingle();
    }

    /// <summary>Sixteen values rounded to f16 as <see cref="RoundToHalf(Vector256{float})"/> rounds them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RoundToHalf(Vector512<float> v)
    {
        var sign = v.AsUInt32() & Vector512.Create(0x80000000u);
        var special = Vector512.ConditionalSelect(Vector512.Equals(v, v).AsUInt32(), Vector512.Create(0x7F800000u), Vector512.Create(0x7FC00000u)) | sign;
        var inRange = Vector512.LessThan(v.AsUInt32() & Vector512.Create(0x7FFFFFFFu), Vector512.Create(HalfOverflowBits));
        return Vector512.ConditionalSelect(inRange, RoundInRange(v).AsUInt32(), special).AsSingle();
    }

    /// <summary>Sixteen values of magnitude below 65520 rounded to f16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RoundInRange(Vector512<float> v)
    {
        var bits = v.AsUInt32();
        var exponent = bits & Vector512.Create(0x7F800000u);
        var c = (Vector512.Max(exponent, Vector512.Create(0x38800000u)) + Vector512.Create((13u << 23) + 0x00400000u)).AsSingle();
        return (((v + c) - c).AsUInt32() | (bits & Vector512.Create(0x80000000u))).AsSingle();
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

    /// <summary>Positions whose keys and values a group of heads reads into f32 together.</summary>
    private const int GroupChunk = 16;

    /// <summary>
    /// Query heads [first, first + count) of key/value head <paramref name="kvHead"/> (all within one group), every
    /// row of the batch within its window, by <see cref="FlashOnlineGroup{TRow}"/>.
    /// </summary>
    private static void HeadGroup<TRow>(AttentionJob* job, int kvHead, int first, int count) where TRow : struct, ICacheRow
    {
        int dim = job->Dim, headDim = job->HeadDim, n = job->N, start = job->Start, window = job->Window;
        var layout = Layout.Of(job->ContextSize, headDim, job->MaxBatch);
        int h0 = kvHead * job->Group + first;
        float* scratch = job->Scratch + h0 * layout.Total;
        float scale = job->Scale != 0 ? job->Scale : 1f / MathF.Sqrt(headDim);
        long stride = (long)job->KvDim * TRow.ElementSize;
        byte* keys = job->Keys + (long)kvHead * headDim * TRow.ElementSize;
        byte* values = job->Values + (long)kvHead * headDim * TRow.ElementSize;
        for (int i = 0; i < n; i++)
        {
            int positions = start + i + 1;
            int skip = window > 0 ? Math.Max(0, positions - window) : 0;
            float* q = job->Q + (long)i * dim + h0 * headDim;
            for (int g = 0; g < count; g++) RoundToHalf(q + g * headDim, scratch + g * layout.Total + layout.Query, headDim);
            FlashOnlineGroup<TRow>(scratch, layout, count, keys + skip * stride, values + skip * stride, stride, positions - skip,
                headDim, scale, job->SoftCap, job->Output + (long)i * dim + h0 * headDim);
        }
    }

    /// <summary>
    /// <see cref="FlashOnline{TRow}"/> for <paramref name="count"/> query heads over the same keys and values (their
    /// outputs side by side in <paramref name="o"/>): each chunk of positions read into f32 once for all of them,
    /// then each head's steps over it, its state carried from chunk to chunk. Every head's arithmetic, in its order,
    /// is FlashOnline's, so its bits are too.
    /// </summary>
    /// <param name="scratch">
    /// The first head's scratch; head g's lies g · Total further: its query rounded to f16 at Query, its running
    /// maximum and sum at RowMax and RowSum, its steps' weights at Scores, its [headDim] accumulator at
    /// Block + 2 · GroupChunk · headDim. The first head's Block starts with the chunk's [GroupChunk x headDim] keys,
    /// then its values, in f32.
    /// </param>
    private static void FlashOnlineGroup<TRow>(float* scratch, Layout layout, int count, byte* keys, byte* values, long stride,
        int positions, int headDim, float scale, float softCap, float* o) where TRow : struct, ICacheRow
    {
        if (softCap != 0) scale /= softCap;
        float* chunkKeys = scratch + layout.Block, chunkValues = chunkKeys + GroupChunk * headDim;
        long accumulator = layout.Block + 2L * GroupChunk * headDim;
        for (int g = 0; g < count; g++)
        {
            float* head = scratch + g * layout.Total;
            new Span<float>(head + accumulator, headDim).Clear();
            head[layout.RowMax] = float.NegativeInfinity;
            head[layout.RowSum] = 0;
        }
        for (int t0 = 0; t0 < positions; t0 += GroupChunk)
        {
            int steps = Math.Min(GroupChunk, positions - t0);
            float* k = (float*)(keys + t0 * stride), v = (float*)(values + t0 * stride);
            long rowStride = stride / sizeof(float);
            if (TRow.ElementSize != sizeof(float))
            {
                for (int t = 0; t < steps; t++)
                {
                    HalfConversion.ToSingle((Half*)(keys + (t0 + t) * stride), chunkKeys + t * headDim, headDim);
                    HalfConversion.ToSingle((Half*)(values + (t0 + t) * stride), chunkValues + t * headDim, headDim);
                }
                k = chunkKeys;
                v = chunkValues;
                rowStride = headDim;
            }
            for (int g = 0; g < count; g++)
            {
                float* head = scratch + g * layout.Total;
                FlashSteps(head + layout.Query, k, v, rowStride, steps, headDim, scale, softCap, head + accumulator,
                    head + layout.Scores, ref head[layout.RowMax], ref head[layout.RowSum]);
            }
        }
        for (int g = 0; g < count; g++)
        {
            float* head = scratch + g * layout.Total, acc = head + accumulator, og = o + g * headDim;
            float sum = head[layout.RowSum], inv = sum == 0 ? 0 : 1f / sum;
            for (int d = 0; d < headDim; d++) og[d] = acc[d] * inv;
        }
    }

    /// <summary>
    /// <see cref="FlashOnline{TRow}"/>'s loop over f32 rows (<paramref name="rowStride"/> floats apart) for one head,
    /// from its state: first every score and the softmax's running state (exp is a call, which would spill an
    /// accumulator held in registers), then the accumulator a block at a time, in registers through every step.
    /// </summary>
    /// <param name="weights">[3 x GroupChunk] each step's rescale factor, weight, and whether the maximum grew (1 or 0).</param>
    private static void FlashSteps(float* q, float* keys, float* values, long rowStride, int steps, int headDim, float scale,
        float softCap, float* acc, float* weights, ref float runningMax, ref float runningSum)
    {
        float* rescales = weights, vweights = weights + GroupChunk, grows = weights + 2 * GroupChunk;
        float max = runningMax, sum = runningSum;
        float* k = keys;
        for (int t = 0; t < steps; t++, k += rowStride)
        {
            float s = DotGgml(k, q, headDim) * scale;
            if (softCap != 0) s = softCap * MathF.Tanh(s);
            float ms = 1, vs = 1;
            grows[t] = s > max ? 1 : 0;
            if (s > max)
            {
                float old = max;
                max = s;
                ms = MathF.Exp(old - max);
            }
            else vs = MathF.Exp(s - max);
            rescales[t] = ms;
            vweights[t] = vs;
            sum = sum * ms + vs;
        }
        (runningMax, runningSum) = (max, sum);
        UpdateHalf(acc, values, rowStride, steps, rescales, vweights, grows, headDim);
    }

    /// <summary><see cref="DotGgml{TRow}"/> of f32 rows, its four 8-lane accumulators as two 16-lane ones on the AVX-512 path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotGgml(float* x, float* y, int n)
    {
        if (!Kernels.UseAvx512 || !Vector512.IsHardwareAccelerated || n < 32) return DotGgml<SingleRow>((byte*)x, y, n);
        int np = n & ~31;
        // Lanes 0-7 of s01 are ggml's first accumulator, 8-15 its second; s23 its third and fourth.
        Vector512<float> s01 = Vector512<float>.Zero, s23 = Vector512<float>.Zero;
        for (int i = 0; i < np; i += 32)
        {
            s01 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(y + i), s01);
            s23 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 16), Vector512.Load(y + i + 16), s23);
        }
        var pairs = s01 + s23; // (s0 + s2) | (s1 + s3)
        double sum = ReduceGgml(pairs.GetLower() + pairs.GetUpper());
        for (int i = np; i < n; i++) sum += x[i] * y[i];
        return (float)sum;
    }

    /// <summary>
    /// For each step t: y = f16(y · rescales[t]) where the maximum grew (<see cref="ScaleHalf"/>), then
    /// y = f16(y + x_t · weights[t]) (<see cref="MultiplyAddHalf{TRow}"/>); each element's operations theirs, a block
    /// of y at a time, in registers through every step. A block first rounds as if nothing left f16's range and
    /// keeps the largest magnitude it met; only where one did (infinity, NaN) is it redone with the full rounding.
    /// </summary>
    private static void UpdateHalf(float* y, float* x, long rowStride, int steps, float* rescales, float* weights, float* grows, int n)
    {
        int d = 0;
        if (Kernels.UseAvx512 && Vector512.IsHardwareAccelerated)
            for (; d + 16 <= n; d += 16)
                if (!TryUpdateHalf<Lanes16, Vector512<float>>(y + d, x + d, rowStride, steps, rescales, weights, grows))
                    UpdateHalf<Lanes16, Vector512<float>>(y + d, x + d, rowStride, steps, rescales, weights, grows);
        for (; d + 8 <= n; d += 8)
            if (!TryUpdateHalf<Lanes8, Vector256<float>>(y + d, x + d, rowStride, steps, rescales, weights, grows))
                UpdateHalf<Lanes8, Vector256<float>>(y + d, x + d, rowStride, steps, rescales, weights, grows);
        for (; d < n; d++)
        {
            float a = y[d];
            float* v = x + d;
            for (int t = 0; t < steps; t++, v += rowStride)
            {
                if (grows[t] != 0) a = Fp16.Round(a * rescales[t]);
                a = Fp16.Round(MathF.FusedMultiplyAdd(*v, weights[t], a));
            }
            y[d] = a;
        }
    }

    /// <summary>
    /// <see cref="UpdateHalf"/> of one vector of y by the in-range rounding, tracking the largest magnitude met; false,
    /// y untouched, where a value left f16's range.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryUpdateHalf<TLanes, TVector>(float* y, float* x, long rowStride, int steps, float* rescales, float* weights, float* grows)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var a = TLanes.Load(y);
        TVector largest = default; // the largest magnitude's bits before each rounding
        for (int t = 0; t < steps; t++, x += rowStride)
        {
            if (grows[t] != 0)
            {
                a = TLanes.Multiply(a, TLanes.Splat(rescales[t]));
                largest = TLanes.LargerMagnitude(largest, a);
                a = TLanes.RoundInRange(a);
            }
            a = TLanes.MultiplyAdd(TLanes.Load(x), TLanes.Splat(weights[t]), a);
            largest = TLanes.LargerMagnitude(largest, a);
            a = TLanes.RoundInRange(a);
        }
        if (!TLanes.BelowHalfOverflow(largest)) return false;
        TLanes.Store(a, y);
        return true;
    }

    /// <summary><see cref="UpdateHalf"/> of one vector of y with the full rounding.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void UpdateHalf<TLanes, TVector>(float* y, float* x, long rowStride, int steps, float* rescales, float* weights, float* grows)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var a = TLanes.Load(y);
        for (int t = 0; t < steps; t++, x += rowStride)
        {
            if (grows[t] != 0) a = TLanes.RoundToHalf(TLanes.Multiply(a, TLanes.Splat(rescales[t])));
            a = TLanes.RoundToHalf(TLanes.MultiplyAdd(TLanes.Load(x), TLanes.Splat(weights[t]), a));
        }
        TLanes.Store(a, y);
    }

    /// <summary>
    /// One vector width's steps for the drivers written once for both (<see cref="TryUpdateHalf{TLanes, TVector}"/>,
    /// <see cref="TileScores{TLanes, TVector}"/>, <see cref="TileValues{TLanes, TVector}"/>): 8 lanes (AVX2) or 16 (AVX-512).
    /// </summary>
    private interface ILanes<TVector> where TVector : struct
    {
        static abstract int Count { get; }
        static abstract TVector Load(float* p);
        static abstract void Store(TVector v, float* p);
        static abstract TVector Splat(float x);
        static abstract TVector Multiply(TVector a, TVector b);
        /// <summary>fma(x, w, a), rounded once.</summary>
        static abstract TVector MultiplyAdd(TVector x, TVector w, TVector a);
        static abstract TVector RoundToHalf(TVector v);
        static abstract TVector RoundInRange(TVector v);
        /// <summary>Per lane the larger of <paramref name="largest"/>'s bits and the bits of |v| (NaN's above every number's).</summary>
        static abstract TVector LargerMagnitude(TVector largest, TVector v);
        /// <summary>True when every lane's magnitude bits (<see cref="LargerMagnitude"/>) lie below 65520's.</summary>
        static abstract bool BelowHalfOverflow(TVector largest);
    }

    private readonly struct Lanes8 : ILanes<Vector256<float>>
    {
        public static int Count => 8;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, float* p) => Vector256.Store(v, p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Splat(float x) => Vector256.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MultiplyAdd(Vector256<float> x, Vector256<float> w, Vector256<float> a) => Vector256.FusedMultiplyAdd(x, w, a);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> RoundToHalf(Vector256<float> v) => Attention.RoundToHalf(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> RoundInRange(Vector256<float> v) => Attention.RoundInRange(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> LargerMagnitude(Vector256<float> largest, Vector256<float> v)
            => Vector256.Max(largest.AsUInt32(), v.AsUInt32() & Vector256.Create(0x7FFFFFFFu)).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool BelowHalfOverflow(Vector256<float> largest) => Vector256.LessThanAll(largest.AsUInt32(), Vector256.Create(HalfOverflowBits));
    }

    private readonly struct Lanes16 : ILanes<Vector512<float>>
    {
        public static int Count => 16;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, float* p) => Vector512.Store(v, p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Splat(float x) => Vector512.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MultiplyAdd(Vector512<float> x, Vector512<float> w, Vector512<float> a) => Vector512.FusedMultiplyAdd(x, w, a);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> RoundToHalf(Vector512<float> v) => Attention.RoundToHalf(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> RoundInRange(Vector512<float> v) => Attention.RoundInRange(v);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> LargerMagnitude(Vector512<float> largest, Vector512<float> v)
            => Vector512.Max(largest.AsUInt32(), v.AsUInt32() & Vector512.Create(0x7FFFFFFFu)).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool BelowHalfOverflow(Vector512<float> largest) => Vector512.LessThanAll(largest.AsUInt32(), Vector512.Create(HalfOverflowBits));
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
                if (wide) TileScores<Lanes16, Vector512<float>>(q, keysT, headDim, scale, kq);
                else TileScores<Lanes8, Vector256<float>>(q, keysT, headDim, scale, kq);
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
                int d = wide ? TileValues<Lanes16, Vector512<float>>(o, valueTile, kq, valid, headDim, rescale, 0) : 0;
                d = TileValues<Lanes8, Vector256<float>>(o, valueTile, kq, valid, headDim, rescale, d);
                TileValuesRest(o, valueTile, kq, valid, headDim, rescale, d);
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

    /// <summary>
    /// kq[tk] = (Σ_d k_tk[d]·q[d], fused in d order) · scale for the tile's 64 positions, 4 vectors of positions side by
    /// side per pass over the head.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileScores<TLanes, TVector>(float* q, float* keysT, int headDim, float scale, float* kq)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int w = TLanes.Count;
        for (int p = 0; p < FlashTile; p += 4 * w)
        {
            TVector a0 = default, a1 = default, a2 = default, a3 = default;
            for (int d = 0; d < headDim; d++)
            {
                float* k = keysT + d * FlashTile + p;
                var qd = TLanes.Splat(q[d]);
                a0 = TLanes.MultiplyAdd(TLanes.Load(k), qd, a0);
                a1 = TLanes.MultiplyAdd(TLanes.Load(k + w), qd, a1);
                a2 = TLanes.MultiplyAdd(TLanes.Load(k + 2 * w), qd, a2);
                a3 = TLanes.MultiplyAdd(TLanes.Load(k + 3 * w), qd, a3);
            }
            var vscale = TLanes.Splat(scale);
            TLanes.Store(TLanes.Multiply(a0, vscale), kq + p); TLanes.Store(TLanes.Multiply(a1, vscale), kq + p + w);
            TLanes.Store(TLanes.Multiply(a2, vscale), kq + p + 2 * w); TLanes.Store(TLanes.Multiply(a3, vscale), kq + p + 3 * w);
        }
    }

    /// <summary>
    /// From o[d] on, 4 vectors at a time: o = o · rescale, then o = fma(v_tk, w_tk, o) for the tile's valid positions in
    /// order, each slice of the head held in registers across the positions; returns the first element left.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int TileValues<TLanes, TVector>(float* o, float* valueTile, float* w, int valid, int headDim, float rescale, int d)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int lanes = TLanes.Count;
        bool scaled = rescale != 1;
        var r = TLanes.Splat(rescale);
        for (; d + 4 * lanes <= headDim; d += 4 * lanes)
        {
            var o0 = TLanes.Load(o + d); var o1 = TLanes.Load(o + d + lanes);
            var o2 = TLanes.Load(o + d + 2 * lanes); var o3 = TLanes.Load(o + d + 3 * lanes);
            if (scaled)
            {
                o0 = TLanes.Multiply(o0, r); o1 = TLanes.Multiply(o1, r);
                o2 = TLanes.Multiply(o2, r); o3 = TLanes.Multiply(o3, r);
            }
            float* v = valueTile + d;
            for (int tk = 0; tk < valid; tk++, v += headDim)
            {
                var wt = TLanes.Splat(w[tk]);
                o0 = TLanes.MultiplyAdd(TLanes.Load(v), wt, o0);
                o1 = TLanes.MultiplyAdd(TLanes.Load(v + lanes), wt, o1);
                o2 = TLanes.MultiplyAdd(TLanes.Load(v + 2 * lanes), wt, o2);
                o3 = TLanes.MultiplyAdd(TLanes.Load(v + 3 * lanes), wt, o3);
            }
            TLanes.Store(o0, o + d); TLanes.Store(o1, o + d + lanes);
            TLanes.Store(o2, o + d + 2 * lanes); TLanes.Store(o3, o + d + 3 * lanes);
        }
        return d;
    }

    /// <summary><see cref="TileValues{TLanes, TVector}"/> for the last eights of the head (fewer than 32 values).</summary>
    private static void TileValuesRest(float* o, float* valueTile, float* w, int valid, int headDim, float rescale, int d)
    {
        var r8 = Vector256.Create(rescale);
        for (; d < headDim; d += 8)
        {
            var o0 = Vector256.Load(o + d);
            if (rescale != 1) o0 *= r8;
            float* v = valueTile + d;
            for (int tk = 0; tk < valid; tk++, v += headDim) o0 = Vector256.FusedMultiplyAdd(Vector256.Load(v), Vector256.Create(w[tk]), o0);
            Vector256.Store(o0, o + d);
        }
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants.KQuants;

/// <summary>
/// ggml's block_q4_K: 256 values in 8 sub-blocks of 32; value = D·scale_j·q − DMin·min_j with 4-bit q and 6-bit
/// scale/min pairs packed into 12 bytes (see <see cref="KQuantMath.GetScaleMinK4"/>).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockQ4K
{
    /// <summary>fp16 bits of the super-block scale of the scales.</summary>
    public ushort D;
    /// <summary>fp16 bits of the super-block scale of the mins.</summary>
    public ushort DMin;
    public fixed byte Scales[12];
    /// <summary>Nibbles: byte 32·c + l holds value 64·c + l (low) and 64·c + 32 + l (high).</summary>
    public fixed byte Qs[GgmlTypeInfo.QK_K / 2];
}

/// <summary>Q4_K: 4.5 bits per weight, the workhorse of Q4_K_M models.</summary>
public static unsafe class Q4_K
{
    public const int BlockSize = GgmlTypeInfo.QK_K;
    public const int BlockBytes = 2 + 2 + 12 + BlockSize / 2;

    /// <summary>Q4_K as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q4_K, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel
        {
            Activation = Q8_K.Activation, Dot = &Dot,
            Dot8PackedAvx2 = &Dot8Packed, PackActivationTile = &PackActivationTile, PackedTileBytes = &PackedTileBytes,
            Dot8PackedAvx512 = &Tiles.Q4KPairTiles.Dot8Packed, PackActivationTileAvx512 = &Tiles.Q4KPairTiles.PackActivationTile,
        }) { QuantizeWeighted = &Quantize };

    /// <summary>The quantizer without an importance matrix.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>quantize_row_q4_K_ref, bit for bit.</summary>
    /// <param name="importance">Empty, or the row's column importance [src.Length] from an importance matrix
    /// (ggml's quantize_q4_K with quant_weights).</param>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        int blocks = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        Blocks.CheckImportance(importance.Length, src.Length);
        fixed (byte* p = dst)
        {
            for (int i = 0; i < blocks; i++)
                QuantizeBlock(src.Slice(i * BlockSize, BlockSize), (BlockQ4K*)(p + i * BlockBytes),
                    importance.IsEmpty ? default : importance.Slice(i * BlockSize, BlockSize));
        }
    }

    private static void QuantizeBlock(ReadOnlySpan<float> x, BlockQ4K* y, ReadOnlySpan<float> importance)
    {
        Span<byte> levels = stackalloc byte[BlockSize];
        KQuantMath.QuantizeScaleMinSuperBlock(x, 15, -1f, 20, (byte*)y, levels, importance);

        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y->Qs[32 * c + l] = (byte)(levels[64 * c + l] | (levels[64 * c + l + 32] << 4));
    }

    /// <summary>dequantize_row_q4_K, bit for bit.</summary>
    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* p = src)
        fixed (float* yp = dst)
        {
            float* y = yp;
            for (int i = 0; i < blocks; i++)
            {
                var x = (BlockQ4K*)(p + i * BlockBytes);
                var table = new ReadOnlySpan<byte>(x->Scales, 12);
                float d = KQuantMath.FromHalfBits(x->D), min = KQuantMath.FromHalfBits(x->DMin);
                byte* q = x->Qs;
                for (int j = 0; j < 8; j += 2)
                {
                    KQuantMath.GetScaleMinK4(j, table, out byte sc, out byte m);
                    float d1 = d * sc, m1 = min * m;
                    KQuantMath.GetScaleMinK4(j + 1, table, out sc, out m);
                    float d2 = d * sc, m2 = min * m;
                    for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
                    for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
                    q += 32;
                }
            }
        }
    }

    /// <summary>Dot product of a Q4_K row with a Q8_K-quantized activation row of as many blocks.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> q8k)
        => Blocks.Dot(weights, q8k, BlockSize, BlockBytes, Q8_K.BlockBytes, &Dot);

    /// <summary>The dot of <paramref name="n"/> values on the kernel path in use (<see cref="Kernels.Path"/>).</summary>
    internal static float Dot(byte* weights, byte* q8k, int n)
    {
        if (Kernels.UseAvx2) return DotAvx2(weights, q8k, n);
        if (Kernels.UseAdvSimd) return DotAdvSimd(weights, q8k, n);
        return DotScalar(weights, q8k, n);
    }

    /// <summary>
    /// Reference: exact integer sums per block, then d·Σ scale·(q·q8) − dmin·Σ min·bsum in single precision.
    /// </summary>
    internal static float DotScalar(byte* weights, byte* q8k, int n)
    {
        int blocks = n / BlockSize;
        float sum = 0;
        uint* utmp = stackalloc uint[4];
        for (int i = 0; i < blocks; i++)
        {
            var x = (BlockQ4K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            KQuantMath.UnpackScaleMinK4(x->Scales, utmp);
            byte* sc = (byte*)utmp;
            byte* mn = sc + 8;
            int sumMins = KQuantMath.SumMinsK4(mn, y->BSums);
            int sumi = 0;
            for (int c = 0; c < 4; c++)
            {
                int lo = 0, hi = 0;
                for (int l = 0; l < 32; l++)
                {
                    int q = x->Qs[32 * c + l];
                    lo += (q & 0xF) * y->Qs[64 * c + l];
                    hi += (q >> 4) * y->Qs[64 * c + 32 + l];
                }
                sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
            }
            sum += KQuantMath.ScaleMinTerm(y->D, x->D, x->DMin, sumi, sumMins);
        }
        return sum;
    }

    /// <summary>
    /// AVX2 row dot in the arithmetic the packed 8-row tile (<see cref="Dot8Packed"/>) shares, so that a batch gives
    /// the same bits as its rows one at a time. Per block, T = Σ scale_j·(q·q8)_j and M = Σ min_j·bsum_j are exact
    /// integers, and the block's term is (a·d)·T − (a·dmin)·M rounded step by step as the scalar reference rounds it
    /// (<see cref="KQuantMath.ScaleMinTerm"/>); the term of block i goes to chain i mod 8, and the chains are summed
    /// ((c0 + c4) + (c2 + c6)) + ((c1 + c5) + (c3 + c7)). Here 8 blocks' T and M meet in the lanes of one vector each,
    /// so the float steps of 8 blocks are a few vector operations.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* weights, byte* q8k, int n)
    {
        int blocks = n / BlockSize;
        var chains = Vector256<float>.Zero;
        byte* broadcasts = (byte*)X86Simd.ScaleBroadcasts;
        var m4 = Vector256.Create((byte)0x0F);
        int i = 0;
        for (; i + 8 <= blocks; i += 8)
        {
            var x = (BlockQ4K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            // Four blocks at a time, their sums added horizontally at once, so that few vectors are live.
            var s0123 = FourBlockSums(x, y, out var m0123, broadcasts, m4);
            var s4567 = FourBlockSums(x + 4, y + 4, out var m4567, broadcasts, m4);
            var totals = Avx2.Add(Avx2.Permute2x128(s0123, s4567, 0x20), Avx2.Permute2x128(s0123, s4567, 0x31));
            // The mins come out as (m0, m2, m4, m6 | m1, m3, m5, m7): put in block order.
            var mins = Avx2.PermuteVar8x32(Avx2.HorizontalAdd(m0123, m4567), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7));
            var a = Vector256.Create(y[0].D, y[1].D, y[2].D, y[3].D, y[4].D, y[5].D, y[6].D, y[7].D);
            var d = Vector256.Create(Fp16.ToFloat(x[0].D), Fp16.ToFloat(x[1].D), Fp16.ToFloat(x[2].D), Fp16.ToFloat(x[3].D),
                Fp16.ToFloat(x[4].D), Fp16.ToFloat(x[5].D), Fp16.ToFloat(x[6].D), Fp16.ToFloat(x[7].D));
            var dmin = Vector256.Create(Fp16.ToFloat(x[0].DMin), Fp16.ToFloat(x[1].DMin), Fp16.ToFloat(x[2].DMin), Fp16.ToFloat(x[3].DMin),
                Fp16.ToFloat(x[4].DMin), Fp16.ToFloat(x[5].DMin), Fp16.ToFloat(x[6].DMin), Fp16.ToFloat(x[7].DMin));
            chains = Avx.Add(chains, Term(a, d, dmin, totals, mins));
        }
        float* c = stackalloc float[8];
        Avx.Store(c, chains);
        for (; i < blocks; i++)
        {
            var x = (BlockQ4K*)(weights + i * BlockBytes);
            var y = (BlockQ8K*)(q8k + i * Q8_K.BlockBytes);
            X86Simd.PrefetchWeights((byte*)x, BlockBytes);
            int total = X86Simd.HSum(BlockSums(x, y, out var mins, broadcasts, m4));
            c[i & 7] += KQuantMath.ScaleMinTerm(y->D, x->D, x->DMin, total, Vector128.Sum(mins));
        }
        return Q8Products.SumChains(c);
    }

    /// <summary>
    /// Four blocks' T in the lanes (T0, T1, T2, T3) of each 128-bit half (the halves to be added), and their mins'
    /// partial sums as (M0, M0, M2, M2 | M1, M1, M3, M3) pairs to be added.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> FourBlockSums(BlockQ4K* x, BlockQ8K* y, out Vector256<int> mins, byte* broadcasts, Vector256<byte> m4)
    {
        // Four blocks are 576 bytes, 9 cache lines: the lines starting in the range 2 KiB ahead are asked for once
        // each, a few per block, with no loop or branch (X86Simd.PrefetchWeights' per-block loop cost about 10 µops).
        byte* ahead = (byte*)(((nint)x + X86Simd.WeightPrefetchDistance + 63) & ~(nint)63);
        X86Simd.Prefetch(ahead, 0); X86Simd.Prefetch(ahead, 1); X86Simd.Prefetch(ahead, 2);
        var b0 = BlockSums(x, y, out var m0, broadcasts, m4);
        X86Simd.Prefetch(ahead, 3); X86Simd.Prefetch(ahead, 4);
        var s01 = Avx2.HorizontalAdd(b0, BlockSums(x + 1, y + 1, out var m1, broadcasts, m4));
        var m01 = Vector256.Create(m0, m1);
        X86Simd.Prefetch(ahead, 5); X86Simd.Prefetch(ahead, 6);
        var b2 = BlockSums(x + 2, y + 2, out var m2, broadcasts, m4);
        X86Simd.Prefetch(ahead, 7); X86Simd.Prefetch(ahead, 8);
        var s23 = Avx2.HorizontalAdd(b2, BlockSums(x + 3, y + 3, out var m3, broadcasts, m4));
        mins = Avx2.HorizontalAdd(m01, Vector256.Create(m2, m3));
        return Avx2.HorizontalAdd(s01, s23);
    }

    /// <summary>(a·d)·T − (a·dmin)·M lane by lane, each step rounded as <see cref="KQuantMath.ScaleMinTerm"/> rounds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Term(Vector256<float> a, Vector256<float> d, Vector256<float> dmin, Vector256<int> totals, Vector256<int> mins)
        => Avx.Subtract(Avx.Multiply(Avx.Multiply(a, d), Avx.ConvertToVector256Single(totals)),
            Avx.Multiply(Avx.Multiply(a, dmin), Avx.ConvertToVector256Single(mins)));

    /// <summary>
    /// One block's Σ scale_j·(q·q8)_j spread over 8 int32 lanes, and its Σ min_j·bsum_j over 4 (sums of sub-block
    /// pairs: the 16-value bsums added in pairs first).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockSums(BlockQ4K* x, BlockQ8K* y, out Vector128<int> mins, byte* broadcasts, Vector256<byte> m4)
    {
        // Field addresses as offsets: x->Qs on a struct pointer costs a null check per use.
        byte* w = (byte*)x;
        byte* a = (byte*)y;
        Vector128<byte> packed = X86Simd.PackedScalesAndMinsK4(w + 4);
        // The 16 group sums in pairs: the two halves loaded apart, so the add takes one from memory.
        Vector128<short> pairSums = Ssse3.HorizontalAdd(Sse2.LoadVector128((short*)(a + 260)), Sse2.LoadVector128((short*)(a + 276)));
        mins = Sse2.MultiplyAddAdjacent(Sse2.UnpackHigh(packed, Vector128<byte>.Zero).AsInt16(), pairSums);
        ulong sc = X86Simd.ScaleKeys(packed);
        Vector256<int> sumi = Chunk(w, a, broadcasts, sc, 0, m4);
        sumi = Avx2.Add(sumi, Chunk(w, a, broadcasts, sc, 1, m4));
        sumi = Avx2.Add(sumi, Chunk(w, a, broadcasts, sc, 2, m4));
        return Avx2.Add(sumi, Chunk(w, a, broadcasts, sc, 3, m4));

        // Chunk c: nibble bytes 32c.. (values 64c.. low, 64c + 32.. high) against activation values 64c..; every
        // address a constant offset from the block's start, so each folds into its instruction.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector256<int> Chunk(byte* w, byte* a, byte* broadcasts, ulong scales, int c, Vector256<byte> m4)
        {
            Vector256<byte> bits = Avx.LoadVector256(w + 16 + 32 * c);
            Vector256<byte> lo = Avx2.And(bits, m4);
            Vector256<byte> hi = Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4);
            Vector256<short> pLo = Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256((sbyte*)(a + 4 + 64 * c)));
            Vector256<short> pHi = Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256((sbyte*)(a + 36 + 64 * c)));
            Vector256<int> sLo = Avx2.MultiplyAddAdjacent(pLo, X86Simd.ScaleBroadcast(broadcasts, scales, 2 * c));
            Vector256<int> sHi = Avx2.MultiplyAddAdjacent(pHi, X86Simd.ScaleBroadcast(broadcasts, scales, 2 * c + 1));
            return Avx2.Add(sLo, sHi);
        }
    }

    // A packed tile block: per 32-value sub-block j, 256 bytes laid out as Q8Products' tiles (group k of 4 values:
    // 8 rows x 4 bytes); then the 8 rows' scales as f32; then per sub-block pair p, the 8 rows' two sub-block sums
    // as int16 pairs (one madd with the pair of mins gives each row's part of M).
    private const int PackedScales = 8 * 256;
    private const int PackedBlockSums = PackedScales + 8 * sizeof(float);
    private const int PackedBlockBytes = PackedBlockSums + 4 * 32;

    /// <summary>Bytes of one packed tile of 8 Q8_K activation rows of <paramref name="n"/> values.</summary>
    internal static long PackedTileBytes(int n) => (long)(n / BlockSize) * PackedBlockBytes;

    /// <summary>8 Q8_K activation rows (<paramref name="stride"/> bytes apart) into the tile form of <see cref="Dot8Packed"/>.</summary>
    internal static void PackActivationTile(byte* rows, nint stride, int n, byte* tile)
    {
        int blocks = n / BlockSize;
        for (int r = 0; r < 8; r++)
        {
            for (int b = 0; b < blocks; b++)
            {
                var y = (BlockQ8K*)(rows + r * stride + (long)b * Q8_K.BlockBytes);
                byte* t = tile + (long)b * PackedBlockBytes;
                for (int j = 0; j < 8; j++) Q8Products.PackGroups((byte*)y->Qs + 32 * j, r, t + 256 * j);
                ((float*)(t + PackedScales))[r] = y->D;
                for (int p = 0; p < 4; p++)
                {
                    short* pair = (short*)(t + PackedBlockSums + 32 * p + 4 * r);
                    pair[0] = (short)(y->BSums[4 * p] + y->BSums[4 * p + 1]);
                    pair[1] = (short)(y->BSums[4 * p + 2] + y->BSums[4 * p + 3]);
                }
            }
        }
    }

    /// <summary>
    /// One weight row against a packed tile of 8 activation rows (<see cref="PackActivationTile"/>), results
    /// <paramref name="yStride"/> floats apart: one activation row per vector lane, so each block's T and M come out
    /// per row with no horizontal sums, and its float steps serve 8 rows at once; per row exactly
    /// <see cref="DotAvx2"/>'s arithmetic. The 8 groups of a sub-block add up in int16 (8 · 2 · 15 · 128 &lt; 32768)
    /// and one madd with the sub-block's scale widens them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Dot8Packed(byte* weights, byte* tile, int n, float* result, nint yStride)
    {
        int blocks = n / BlockSize;
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<float>* chains = stackalloc Vector256<float>[8];
        for (int k = 0; k < 8; k++) chains[k] = default;
        for (int b = 0; b < blocks; b++)
        {
            var x = (BlockQ4K*)(weights + (long)b * BlockBytes);
            byte* t = tile + (long)b * PackedBlockBytes;
            Vector256<short> scalesAndMins = X86Simd.ScalesAndMinsK4(x->Scales);
            Vector128<short> scales8 = scalesAndMins.GetLower(), mins8 = scalesAndMins.GetUpper();
            Vector256<byte> scales = Vector256.Create(scales8, scales8).AsByte();
            Vector256<int> totals = default;
            for (int c = 0; c < 4; c++)
            {
                Vector256<byte> bits = Avx.LoadVector256(x->Qs + 32 * c);
                Vector256<byte> lo = Avx2.And(bits, m4);
                Vector256<byte> hi = Avx2.And(Avx2.ShiftRightLogical(bits.AsUInt16(), 4).AsByte(), m4);
                totals = Avx2.Add(totals, Avx2.MultiplyAddAdjacent(Q8Products.GroupPairSums(lo, t + 512 * c),
                    Avx2.Shuffle(scales, X86Simd.WordBroadcastMask(2 * c)).AsInt16()));
                totals = Avx2.Add(totals, Avx2.MultiplyAddAdjacent(Q8Products.GroupPairSums(hi, t + 512 * c + 256),
                    Avx2.Shuffle(scales, X86Simd.WordBroadcastMask(2 * c + 1)).AsInt16()));
            }
            chains[b & 7] = Avx.Add(chains[b & 7], TileTerm(x, t, totals, mins8));
        }
        Q8Products.StoreChainSums(chains[0], chains[1], chains[2], chains[3], chains[4], chains[5], chains[6], chains[7], result, yStride);
    }

    /// <summary>
    /// A packed tile block's float step for its 8 rows, given their T: M from the rows' sub-block sums and the 8
    /// mins, then <see cref="Term"/>. Shared by the AVX2 and AVX-512 tiles.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> TileTerm(BlockQ4K* x, byte* t, Vector256<int> totals, Vector128<short> mins8)
    {
        Vector256<int> minPairs = Vector256.Create(mins8, mins8).AsInt32();
        short* sums = (short*)(t + PackedBlockSums);
        Vector256<int> mins = Avx2.Add(
            Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.Shuffle(minPairs, 0x00).AsInt16(), Avx.LoadVector256(sums)),
                Avx2.MultiplyAddAdjacent(Avx2.Shuffle(minPairs, 0x55).AsInt16(), Avx.LoadVector256(sums + 16))),
            Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.Shuffle(minPairs, 0xAA).AsInt16(), Avx.LoadVector256(sums + 32)),
                Avx2.MultiplyAddAdjacent(Avx2.Shuffle(minPairs, 0xFF).AsInt16(), Avx.LoadVector256(sums + 48))));
        var a = Avx.LoadVector256((float*)(t + PackedScales));
        return Term(a, Vector256.Create(Fp16.ToFloat(x->D)), Vector256.Create(Fp16.ToFloat(x->DMin)), totals, mins);
    }

    /// <summary>
    /// ARM64 AdvSimd: per 32-value sub-block an exact int32 dot (SDOT where the CPU has the dot-product
    /// extension), scaled in integers as the scalar reference does.
    /// </summary>
    internal static float DotAdvSimd(byte* weights, byte* q8k, int n)
        => AdvSimd.Arm64.IsSupported ? ArmSimd.DotScaleMinK4(weights, q8k, n, BlockBytes, fifthBits: false) : DotScalar(weights, q8k, n);
}

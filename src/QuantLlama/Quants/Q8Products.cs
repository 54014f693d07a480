using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// One block's exact Σ w·q8 for a 32-value format whose blocks start with an fp16 scale, against a Q8_0 block's
/// quants: what a scalar reference and its ARM64 twin differ in (<see cref="Q8Products.DotBlockSums{TSum}"/>).
/// </summary>
internal unsafe interface IQ8BlockSum
{
    static abstract int BlockBytes { get; }

    static abstract int Sum(byte* x, sbyte* q8);
}

/// <summary>
/// What the matrix products against a Q8_0 activation share: the activation with its blocks' scales and sums
/// appended, its packed 8-row tile form and the tile readers of Q4_0's and Q8_0's kernels (Q4_K's tile keeps the
/// layout within each sub-block), the order in which those kernels sum their 8 chains, and the scalar float steps
/// of the 32-value formats' reference dots. The kernels themselves are in each format's file.
/// </summary>
internal static unsafe class Q8Products
{
    private const int BlockSize = 32;

    /// <summary>
    /// Bytes per block of a packed activation tile: the quants of 8 rows in groups of 4 values (group g holds rows
    /// 0-7's values 4g..4g+3, 4 bytes per row), the 8 rows' scales as f32, and the 8 rows' sums of quants.
    /// </summary>
    internal const int PackedBlockBytes = 8 * 32 + 8 * 4 + 8 * 4;
    internal const int PackedScales = 8 * 32, PackedSums = PackedScales + 8 * 4;

    /// <summary>Bytes of one packed tile of 8 activation rows of <paramref name="n"/> values.</summary>
    internal static long PackedTileBytes(int n) => (long)(n / BlockSize) * PackedBlockBytes;

    /// <summary>Bytes of the matrix kernels' activation row (<see cref="QuantizeActivation"/>) of n values.</summary>
    internal static long ActivationRowBytes(int n) => (long)(n / BlockSize) * (Q8_0.BlockBytes + BlockInfoBytes);

    /// <summary>Per block after the Q8_0 row: the scale as f32 and the sum of the quants as int32.</summary>
    private const int BlockInfoBytes = 2 * sizeof(float);

    /// <summary>The activation form of Q4_0 and Q8_0 weights: <see cref="QuantizeActivation"/>'s.</summary>
    internal static ActivationForm Activation => new() { Type = GgmlType.Q8_0, Quantize = &QuantizeActivation, BlockInfoAppended = true };

    /// <summary>
    /// The matrix kernels' activation: the Q8_0 row ggml's dot takes, then each block's scale again as f32 (the row
    /// dot loads 8 of them in one vector instead of converting them for every weight row), then each block's sum
    /// of quants (Q4_0 subtracts 8 times it once per 8 blocks instead of once per block).
    /// </summary>
    internal static void QuantizeActivation(float* x, byte* y, int n)
    {
        Q8_0.QuantizeActivation(x, y, n);
        WriteBlockInfo(y, n / BlockSize, BlockInfo(y, n));
    }

    /// <summary>Where <see cref="QuantizeActivation"/> put the block scales (nb floats), followed by the block sums (nb ints).</summary>
    internal static float* BlockInfo(byte* activation, int n) => (float*)(activation + n / BlockSize * Q8_0.BlockBytes);

    /// <summary>Each block's scale as f32 into <paramref name="info"/>[b], then its sum of quants as int32 after the nb scales.</summary>
    internal static void WriteBlockInfo(byte* q8, int nb, float* info)
    {
        int* sums = (int*)(info + nb);
        for (int b = 0; b < nb; b++)
        {
            byte* block = q8 + b * Q8_0.BlockBytes;
            info[b] = Fp16.ToFloat(*(ushort*)block);
            sums[b] = QuantSum(block + 2);
        }
    }

    /// <summary>
    /// 8 activation rows of <see cref="QuantizeActivation"/>'s form (<paramref name="stride"/> bytes apart) into the
    /// tile form the formats' <c>Dot8PackedAvx2</c> read.
    /// </summary>
    internal static void PackActivationTile(byte* rows, nint stride, int n, byte* tile)
    {
        int nb = n / BlockSize;
        for (int r = 0; r < 8; r++)
        {
            byte* row = rows + r * stride;
            float* scales = BlockInfo(row, n);
            int* sums = (int*)(scales + nb);
            for (int b = 0; b < nb; b++)
            {
                byte* t = tile + (long)b * PackedBlockBytes;
                byte* quants = row + (long)b * Q8_0.BlockBytes + 2;
                PackGroups(quants, r, t);
                ((float*)(t + PackedScales))[r] = scales[b];
                ((int*)(t + PackedSums))[r] = sums[b];
            }
        }
    }

    /// <summary>
    /// Row <paramref name="r"/>'s 32 quants into a tile block's groups: group g (values 4g..4g+3) of the 8 rows at
    /// <paramref name="dest"/> + 32g, 4 bytes per row; the layout <see cref="GroupPairSums"/> reads.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PackGroups(byte* quants, int r, byte* dest)
    {
        for (int g = 0; g < 8; g++) *(uint*)(dest + 32 * g + 4 * r) = *(uint*)(quants + 4 * g);
    }

    /// <summary>The sum of a block's 32 signed quants.</summary>
    private static int QuantSum(byte* quants)
    {
        if (Kernels.UseAvx2)
        {
            var pairs = Avx2.MultiplyAddAdjacent(Vector256.Create((byte)1), Avx.LoadVector256((sbyte*)quants));
            return X86Simd.HSum(Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1)));
        }
        int sum = 0;
        for (int k = 0; k < BlockSize; k++) sum += (sbyte)quants[k];
        return sum;
    }

    /// <summary>
    /// Σ over the blocks in order of d_w·d_y·(exact block sum): the reference's float steps, shared by a format's
    /// scalar dot and its ARM64 one so that their results are the same to the bit.
    /// </summary>
    internal static float DotBlockSums<TSum>(byte* w, byte* a, int n) where TSum : struct, IQ8BlockSum
    {
        int nb = n / BlockSize;
        float sum = 0;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + (long)i * TSum.BlockBytes;
            var y = (Q8_0.Block*)(a + (long)i * Q8_0.BlockBytes);
            sum += Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(y->D) * TSum.Sum(x, y->Qs);
        }
        return sum;
    }

    /// <summary>The 8 chains' sum in the fixed order Q4_0's and Q4_K's kernels share (see Q4_0.X86.cs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float SumChains(float* c) => ((c[0] + c[4]) + (c[2] + c[6])) + ((c[1] + c[5]) + (c[3] + c[7]));

    /// <summary><see cref="SumChains(float*)"/> for 8 activation rows at once (lane r for row r), each row's result stored <paramref name="yStride"/> floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StoreChainSums(Vector256<float> c0, Vector256<float> c1, Vector256<float> c2, Vector256<float> c3,
        Vector256<float> c4, Vector256<float> c5, Vector256<float> c6, Vector256<float> c7, float* y, nint yStride)
    {
        var total = Avx.Add(Avx.Add(Avx.Add(c0, c4), Avx.Add(c2, c6)), Avx.Add(Avx.Add(c1, c5), Avx.Add(c3, c7)));
        for (int k = 0; k < 8; k++) y[k * yStride] = total.GetElement(k);
    }

    /// <summary>
    /// Group g (bytes 4g..4g+3) of a 32-byte vector in every 32-bit lane: each 128-bit half duplicated, then one
    /// in-lane shuffle per group. (Storing the vector and broadcasting from memory stalls on store forwarding.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void SplitGroups(Vector256<byte> v, out Vector256<int> low, out Vector256<int> high)
    {
        low = Avx2.Permute4x64(v.AsInt64(), 0b01_00_01_00).AsInt32();
        high = Avx2.Permute4x64(v.AsInt64(), 0b11_10_11_10).AsInt32();
    }

    /// <summary>Σ over the 8 groups of a block: the unsigned weight group (every lane) times the tile's group, as int16 pair sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> GroupPairSums(Vector256<byte> unsignedWeights, byte* tile)
    {
        SplitGroups(unsignedWeights, out var low, out var high);
        var pairs = Avx2.MultiplyAddAdjacent(Avx2.Shuffle(low, 0x00).AsByte(), Avx.LoadVector256((sbyte*)tile));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Avx2.Shuffle(low, 0x55).AsByte(), Avx.LoadVector256((sbyte*)(tile + 32))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Avx2.Shuffle(low, 0xAA).AsByte(), Avx.LoadVector256((sbyte*)(tile + 64))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Avx2.Shuffle(low, 0xFF).AsByte(), Avx.LoadVector256((sbyte*)(tile + 96))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Avx2.Shuffle(high, 0x00).AsByte(), Avx.LoadVector256((sbyte*)(tile + 128))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Avx2.Shuffle(high, 0x55).AsByte(), Avx.LoadVector256((sbyte*)(tile + 160))));
        pairs = Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Avx2.Shuffle(high, 0xAA).AsByte(), Avx.LoadVector256((sbyte*)(tile + 192))));
        return Avx2.Add(pairs, Avx2.MultiplyAddAdjacent(Avx2.Shuffle(high, 0xFF).AsByte(), Avx.LoadVector256((sbyte*)(tile + 224))));
    }
}

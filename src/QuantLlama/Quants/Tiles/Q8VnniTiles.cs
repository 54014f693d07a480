using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants.Tiles;

/// <summary>
/// <see cref="Q8Products"/>' packed 8-row tile with AVX-VNNI's byte dot (u8·s8, four products added into an int32
/// lane in one instruction) in place of the byte and word multiply-adds and the int16 additions: the same exact
/// integer sums and the same float steps, so the same bits as the row dot, in fewer instructions.
/// </summary>
internal static unsafe class Q8VnniTiles
{

    /// <summary>One weight row against a packed tile (<see cref="Q8Products.PackActivationTile"/>); see <see cref="Q4_0.Dot8PackedAvx2"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void Dot8PackedQ4_0(byte* w, byte* tile, int n, float* y, nint yStride)
    {
        int nb = n / 32;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        int b = 0;
        for (; b + 8 <= nb; b += 8)
        {
            c0 = Step(w, tile, b, c0); c1 = Step(w, tile, b + 1, c1);
            c2 = Step(w, tile, b + 2, c2); c3 = Step(w, tile, b + 3, c3);
            c4 = Step(w, tile, b + 4, c4); c5 = Step(w, tile, b + 5, c5);
            c6 = Step(w, tile, b + 6, c6); c7 = Step(w, tile, b + 7, c7);
        }
        if (b < nb) { c0 = Step(w, tile, b, c0); b++; }
        if (b < nb) { c1 = Step(w, tile, b, c1); b++; }
        if (b < nb) { c2 = Step(w, tile, b, c2); b++; }
        if (b < nb) { c3 = Step(w, tile, b, c3); b++; }
        if (b < nb) { c4 = Step(w, tile, b, c4); b++; }
        if (b < nb) { c5 = Step(w, tile, b, c5); b++; }
        if (b < nb) { c6 = Step(w, tile, b, c6); }
        Q8Products.StoreChainSums(c0, c1, c2, c3, c4, c5, c6, c7, y, yStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step(byte* w, byte* tile, int b, Vector256<float> chain)
    {
        byte* x = w + (long)b * Q4_0.BlockBytes;
        byte* t = tile + (long)b * Q8Products.PackedBlockBytes;
        Q8Products.SplitGroups(X86Simd.BytesFromNibbles32(x + 2), out var low, out var high);
        // Two accumulators: a chain of 8 dependent byte dots would make each block wait on their latency.
        var sumsLow = Dpbusd(Vector256<int>.Zero, Avx2.Shuffle(low, 0x00), t);
        var sumsHigh = Dpbusd(Vector256<int>.Zero, Avx2.Shuffle(high, 0x00), t + 128);
        sumsLow = Dpbusd(sumsLow, Avx2.Shuffle(low, 0x55), t + 32);
        sumsHigh = Dpbusd(sumsHigh, Avx2.Shuffle(high, 0x55), t + 160);
        sumsLow = Dpbusd(sumsLow, Avx2.Shuffle(low, 0xAA), t + 64);
        sumsHigh = Dpbusd(sumsHigh, Avx2.Shuffle(high, 0xAA), t + 192);
        sumsLow = Dpbusd(sumsLow, Avx2.Shuffle(low, 0xFF), t + 96);
        sumsHigh = Dpbusd(sumsHigh, Avx2.Shuffle(high, 0xFF), t + 224);
        var sums = Avx2.Add(sumsLow, sumsHigh);
        sums = Avx2.Subtract(sums, Avx2.ShiftLeftLogical(Avx.LoadVector256((int*)(t + Q8Products.PackedSums)), 3));
        var d = Avx.Multiply(Vector256.Create(Fp16.ToFloat(*(ushort*)x)), Avx.LoadVector256((float*)(t + Q8Products.PackedScales)));
        return Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(sums), chain);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dpbusd(Vector256<int> acc, Vector256<int> unsignedWeights, byte* group)
        => AvxVnni.MultiplyWideningAndAdd(acc, unsignedWeights.AsByte(), Avx.LoadVector256((sbyte*)group));
}

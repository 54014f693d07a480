using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using QuantLlama.Tensors;

namespace QuantLlama.Quants;

/// <summary>
/// Q8_0: blocks of 32 values as one fp16 scale d and 32 int8 quants; value = d * q.
/// Also the activation partner of Q4_0, Q5_0 and Q8_0 weights.
/// </summary>
public static unsafe class Q8_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 34;

    /// <summary>Q8_0 as <see cref="QuantFormats"/> lists it.</summary>
    internal static QuantFormat Description => new(GgmlType.Q8_0, BlockSize, BlockBytes, &Quantize, &Dequantize,
        new TypeKernel
        {
            Activation = Q8Products.Activation, Dot = &Dot, Dot8PackedAvx2 = &Dot8Packed,
            PackActivationTile = &Q8Products.PackActivationTile, PackedTileBytes = &Q8Products.PackedTileBytes,
        });

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Block
    {
        public ushort D;
        public fixed sbyte Qs[BlockSize];
    }

    /// <summary>Reference quantizer, byte for byte ggml's quantize_row_q8_0_ref (scale amax/127, roundf).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        fixed (float* x0 = src)
        fixed (byte* y0 = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                float* x = x0 + i * BlockSize;
                var y = (Block*)(y0 + i * BlockBytes);
                float amax = 0;
                for (int j = 0; j < BlockSize; j++) amax = MathF.Max(amax, MathF.Abs(x[j]));
                float d = amax / ((1 << 7) - 1);
                float id = d != 0 ? 1.0f / d : 0.0f;
                y->D = Fp16.FromFloat(d);
                for (int j = 0; j < BlockSize; j++)
                    y->Qs[j] = (sbyte)X86Convert.Truncate(MathF.Round(x[j] * id, MidpointRounding.AwayFromZero));
            }
        }
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int nb = Blocks.Check(dst.Length, BlockSize, src.Length, BlockBytes);
        fixed (byte* x0 = src)
        fixed (float* y = dst)
        {
            for (int i = 0; i < nb; i++)
            {
                var x = (Block*)(x0 + i * BlockBytes);
                float d = Fp16.ToFloat(x->D);
                for (int j = 0; j < BlockSize; j++) y[i * BlockSize + j] = x->Qs[j] * d;
            }
        }
    }

    /// <summary>
    /// Activation quantizer, byte for byte what ggml-cpu's x86 quantize_row_q8_0 produces (the vec_dot input):
    /// d = amax/127 stored as fp16, quants = round-half-even(x * (127/amax)).
    /// </summary>
    public static void QuantizeActivation(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int nb = Blocks.Check(src.Length, BlockSize, dst.Length, BlockBytes);
        fixed (float* x = src)
        fixed (byte* y = dst)
            QuantizeActivation(x, y, nb * BlockSize);
    }

    /// <summary>ggml's Q8_0 activation form (the partner of Q5_0, IQ4_NL and Q8_1 weights).</summary>
    internal static ActivationForm Activation => new() { Type = GgmlType.Q8_0, Quantize = &QuantizeActivation };

    /// <summary>n values (a whole number of blocks) from x to <see cref="QuantizeActivation(ReadOnlySpan{float}, Span{byte})"/>'s blocks at y.</summary>
    internal static void QuantizeActivation(float* x, byte* y, int n)
    {
        for (int i = 0; i < n / BlockSize; i++, x += BlockSize, y += BlockBytes)
            *(ushort*)y = Fp16.FromFloat(QuantizeActivationBlock(x, (sbyte*)(y + 2), withSum: false, out _));
    }

    /// <summary>
    /// One block of ggml-cpu's x86 quantize_row_q8_0 (and q8_1, which shares it): the 32 quants at q; returns the
    /// scale d, and the quants' sum in <paramref name="sum"/> when <paramref name="withSum"/> (Q8_1 stores d·sum).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float QuantizeActivationBlock(float* x, sbyte* q, bool withSum, out int sum)
    {
        sum = 0;
        if (Kernels.UseAvx2)
        {
            var v0 = Avx.LoadVector256(x);
            var v1 = Avx.LoadVector256(x + 8);
            var v2 = Avx.LoadVector256(x + 16);
            var v3 = Avx.LoadVector256(x + 24);
            var signBit = Vector256.Create(-0.0f);
            var maxAbs = Avx.AndNot(signBit, v0);
            maxAbs = Avx.Max(maxAbs, Avx.AndNot(signBit, v1));
            maxAbs = Avx.Max(maxAbs, Avx.AndNot(signBit, v2));
            maxAbs = Avx.Max(maxAbs, Avx.AndNot(signBit, v3));
            var max4 = Sse.Max(maxAbs.GetUpper(), maxAbs.GetLower());
            max4 = Sse.Max(max4, Sse.MoveHighToLow(max4, max4));
            max4 = Sse.MaxScalar(max4, Sse3.MoveHighAndDuplicate(max4));
            float maxScalar = max4.ToScalar();
            var mul = Vector256.Create(maxScalar != 0.0f ? 127.0f / maxScalar : 0.0f);
            var i0 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.Multiply(v0, mul)));
            var i1 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.Multiply(v1, mul)));
            var i2 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.Multiply(v2, mul)));
            var i3 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.Multiply(v3, mul)));
            if (withSum) sum = X86Simd.HSum(Avx2.Add(Avx2.Add(i0, i1), Avx2.Add(i2, i3)));
            var s01 = Avx2.PackSignedSaturate(i0, i1);
            var s23 = Avx2.PackSignedSaturate(i2, i3);
            var b = Avx2.PackSignedSaturate(s01, s23);
            b = Avx2.PermuteVar8x32(b.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
            Avx.Store(q, b);
            return maxScalar / 127.0f;
        }
        float amax = 0;
        for (int j = 0; j < BlockSize; j++) amax = MathF.Max(amax, MathF.Abs(x[j]));
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < BlockSize; j++)
        {
            int v = Math.Clamp(X86Convert.Truncate(MathF.Round(x[j] * id)), -128, 127);
            q[j] = (sbyte)v;
            sum += v;
        }
        return amax / 127.0f;
    }

    /// <summary>Dot of a Q8_0 weight row with a Q8_0 activation row.</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activation)
    {
        int nb = Blocks.CheckDot(weights.Length, BlockBytes, activation.Length, BlockBytes);
        fixed (byte* w = weights)
        fixed (byte* a = activation)
            return Kernels.UseAvx2 ? DotAvx2(w, a, nb * BlockSize) : Dot(w, a, nb * BlockSize);
    }

    /// <summary>
    /// The matrix kernels' row dot, over <see cref="Q8Products.Activation"/>'s form: ggml's Q8_0 row followed by its
    /// blocks' scales and sums, which the AVX2 path reads (the others read the Q8_0 row alone).
    /// </summary>
    internal static float Dot(byte* w, byte* a, int n)
    {
        if (Kernels.UseAvx2) return DotAvx2(w, a, n, Q8Products.BlockInfo(a, n));
        if (Kernels.UseAdvSimd) return DotAdvSimd(w, a, n);
        return DotScalar(w, a, n);
    }

    internal static float DotScalar(byte* w, byte* a, int n)
    {
        int nb = n / BlockSize;
        float sum = 0;
        for (int i = 0; i < nb; i++)
        {
            var x = (Block*)(w + i * BlockBytes);
            var y = (Block*)(a + i * BlockBytes);
            int sumi = 0;
            for (int j = 0; j < BlockSize; j++) sumi += x->Qs[j] * y->Qs[j];
            sum += Fp16.ToFloat(x->D) * Fp16.ToFloat(y->D) * sumi;
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockAvx2(byte* w, byte* a)
    {
        var qx = Avx.LoadVector256((sbyte*)(w + 2));
        var qy = Avx.LoadVector256((sbyte*)(a + 2));
        return X86Simd.MulSumI8Float(qx, qy);
    }

    /// <summary>
    /// The AVX2 row dot in ggml's arithmetic (ggml_vec_dot_q8_0_q8_0, and tinyBLAS's Q8_0 kernel for batches, which
    /// sums the same way): lane g of one accumulator chains fma(d_w·d_y, Σ of the block's group g of 4 products)
    /// over the blocks in order, and the 8 lanes are summed as hsum_float_8. <paramref name="aInfo"/>, when given,
    /// holds the activation's block scales as f32 (<see cref="Q8Products.BlockInfo"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAvx2(byte* w, byte* a, int n, float* aInfo = null)
    {
        int nb = n / BlockSize;
        var acc = Vector256<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + i * BlockBytes, y = a + i * BlockBytes;
            if ((i & 7) == 0) X86Simd.PrefetchWeights(x, 8 * BlockBytes);
            float dy = aInfo != null ? aInfo[i] : Fp16.ToFloat(*(ushort*)y);
            var d = Vector256.Create(Fp16.ToFloat(*(ushort*)x) * dy);
            acc = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Weights.BlockSums(x, y)), acc);
        }
        return X86Simd.HSum(acc);
    }

    /// <summary>
    /// One weight row against a packed tile of 8 activation rows (<see cref="Q8Products.PackActivationTile"/>),
    /// results <paramref name="yStride"/> floats apart: per row exactly <see cref="DotAvx2"/>'s arithmetic, with
    /// ggml's lane g (a group of 4 values) as chain g, a vector holding the 8 rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void Dot8Packed(byte* w, byte* tile, int n, float* y, nint yStride)
    {
        int nb = n / BlockSize;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int b = 0; b < nb; b++)
        {
            byte* x = w + (long)b * BlockBytes;
            byte* t = tile + (long)b * Q8Products.PackedBlockBytes;
            var d = Avx.Multiply(Vector256.Create(Fp16.ToFloat(*(ushort*)x)), Avx.LoadVector256((float*)(t + Q8Products.PackedScales)));
            Q8Products.SplitGroups(Avx.LoadVector256(x + 2), out var low, out var high);
            c0 = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Weights.Group(low, 0x00, t)), c0);
            c1 = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Weights.Group(low, 0x55, t + 32)), c1);
            c2 = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Weights.Group(low, 0xAA, t + 64)), c2);
            c3 = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Weights.Group(low, 0xFF, t + 96)), c3);
            c4 = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Weights.Group(high, 0x00, t + 128)), c4);
            c5 = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Weights.Group(high, 0x55, t + 160)), c5);
            c6 = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Weights.Group(high, 0xAA, t + 192)), c6);
            c7 = Fma.MultiplyAdd(d, Avx.ConvertToVector256Single(Weights.Group(high, 0xFF, t + 224)), c7);
        }
        Q8Products.StoreChainSums(c0, c1, c2, c3, c4, c5, c6, c7, y, yStride);
    }

    /// <summary>The integer part of a Q8_0 block against Q8_0: Σ w·y with ggml's sign trick (|w| times y with w's sign).</summary>
    internal static class Weights
    {
        /// <summary>Lane g: the block's group g of 4 products (ggml's mul_sum_i8_pairs).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> BlockSums(byte* x, byte* y)
        {
            var qx = Avx.LoadVector256((sbyte*)(x + 2));
            var pairs = Avx2.MultiplyAddAdjacent(Avx2.Sign(qx, qx).AsByte(), Avx2.Sign(Avx.LoadVector256((sbyte*)(y + 2)), qx));
            return Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
        }

        /// <summary>
        /// One group of a packed tile: |w| (every lane) times the 8 rows' values with w's signs, widened to int32 (a
        /// pair sum reaches 2 · 127 · 128). The absolute value is taken after the broadcast (any vector pipe) rather
        /// than broadcast separately (the shuffle pipes).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal static Vector256<int> Group(Vector256<int> weights, [ConstantExpected] byte group, byte* tile)
        {
            var w = Avx2.Shuffle(weights, group).AsSByte();
            var pairs = Avx2.MultiplyAddAdjacent(Avx2.Abs(w), Avx2.Sign(Avx.LoadVector256((sbyte*)tile), w));
            return Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static float DotAdvSimd(byte* w, byte* a, int n)
    {
        if (!AdvSimd.Arm64.IsSupported) return DotScalar(w, a, n);
        int nb = n / BlockSize;
        var acc = Vector128<float>.Zero;
        for (int i = 0; i < nb; i++)
        {
            byte* x = w + i * BlockBytes;
            byte* y = a + i * BlockBytes;
            var x0 = AdvSimd.LoadVector128((sbyte*)(x + 2));
            var x1 = AdvSimd.LoadVector128((sbyte*)(x + 18));
            var y0 = AdvSimd.LoadVector128((sbyte*)(y + 2));
            var y1 = AdvSimd.LoadVector128((sbyte*)(y + 18));
            var p = ArmSimd.DotI8(x0, y0, x1, y1);
            float d = Fp16.ToFloat(*(ushort*)x) * Fp16.ToFloat(*(ushort*)y);
            acc = AdvSimd.FusedMultiplyAdd(acc, AdvSimd.ConvertToSingle(p), Vector128.Create(d));
        }
        return ArmSimd.HSum(acc);
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QuantLlama.Quants.IQuants;

public static unsafe partial class IQ2_XS
{
    /// <summary>The ARM64 row dot: the scalar reference's result to the bit (<see cref="GridQuants.DotAdvSimd"/>).</summary>
    internal static float DotAdvSimd(byte* w, byte* a, int n) => GridQuants.DotAdvSimd<Format>(w, a, n);

    private readonly partial struct Format : IGridFormatAdvSimd
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void ValuesAdvSimd(byte* x, int ib, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            int w0 = Word(x, ib, 0), w1 = Word(x, ib, 1), w2 = Word(x, ib, 2), w3 = Word(x, ib, 3);
            var table = GridQuants.EvenSignBytes;
            low = GridQuants.SignedAdvSimd(IQGrids.IQ2XSAt(w0), IQGrids.IQ2XSAt(w1), table[w0 >> 9], table[w1 >> 9]);
            high = GridQuants.SignedAdvSimd(IQGrids.IQ2XSAt(w2), IQGrids.IQ2XSAt(w3), table[w2 >> 9], table[w3 >> 9]);
        }
    }
}

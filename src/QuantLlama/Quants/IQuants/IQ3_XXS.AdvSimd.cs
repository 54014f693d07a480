using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QuantLlama.Quants.IQuants;

public static unsafe partial class IQ3_XXS
{
    /// <summary>The ARM64 row dot: the scalar reference's result to the bit (<see cref="GridQuants.DotAdvSimd"/>).</summary>
    internal static float DotAdvSimd(byte* w, byte* a, int n) => GridQuants.DotAdvSimd<Format>(w, a, n);

    private readonly partial struct Format : IGridFormatAdvSimd
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void ValuesAdvSimd(byte* x, int ib, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            byte* i = x + 2 + 8 * ib;
            GridQuants.EvenSignedAdvSimd(Pair(i[0], i[1]), Pair(i[2], i[3]), Pair(i[4], i[5]), Pair(i[6], i[7]), SignsAndScale(x, ib), out low, out high);
        }

        /// <summary>Two 4-magnitude entries as 8 bytes.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static ulong Pair(byte first, byte second) => IQGrids.IQ3XXSAt(first) | (ulong)IQGrids.IQ3XXSAt(second) << 32;
    }
}

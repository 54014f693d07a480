using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QuantLlama.Quants.IQuants;

public static unsafe partial class IQ2_XXS
{
    /// <summary>The ARM64 row dot: the scalar reference's result to the bit (<see cref="GridQuants.DotAdvSimd"/>).</summary>
    internal static float DotAdvSimd(byte* w, byte* a, int n) => GridQuants.DotAdvSimd<Format>(w, a, n);

    private readonly partial struct Format : IGridFormatAdvSimd
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void ValuesAdvSimd(byte* x, int ib, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            byte* i = x + 2 + 8 * ib;
            GridQuants.EvenSignedAdvSimd(IQGrids.IQ2XXSAt(i[0]), IQGrids.IQ2XXSAt(i[1]), IQGrids.IQ2XXSAt(i[2]), IQGrids.IQ2XXSAt(i[3]),
                SignsAndScale(x, ib), out low, out high);
        }
    }
}

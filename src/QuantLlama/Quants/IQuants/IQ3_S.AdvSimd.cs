using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QuantLlama.Quants.IQuants;

public static unsafe partial class IQ3_S
{
    /// <summary>The ARM64 row dot: the scalar reference's result to the bit (<see cref="GridQuants.DotAdvSimd"/>).</summary>
    internal static float DotAdvSimd(byte* w, byte* a, int n) => GridQuants.DotAdvSimd<Format>(w, a, n);

    private readonly partial struct Format : IGridFormatAdvSimd
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void ValuesAdvSimd(byte* x, int ib, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            byte* signs = x + Signs + 4 * ib;
            var m0 = Vector128.Create(Magnitudes(x, ib, 0), Magnitudes(x, ib, 1), Magnitudes(x, ib, 2), Magnitudes(x, ib, 3));
            var m1 = Vector128.Create(Magnitudes(x, ib, 4), Magnitudes(x, ib, 5), Magnitudes(x, ib, 6), Magnitudes(x, ib, 7));
            low = GridQuants.SignBitsAdvSimd(m0.AsByte(), signs);
            high = GridQuants.SignBitsAdvSimd(m1.AsByte(), signs + 2);
        }
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QuantLlama.Quants.IQuants;

public static unsafe partial class IQ2_S
{
    /// <summary>The ARM64 row dot: the scalar reference's result to the bit (<see cref="GridQuants.DotAdvSimd"/>).</summary>
    internal static float DotAdvSimd(byte* w, byte* a, int n) => GridQuants.DotAdvSimd<Format>(w, a, n);

    private readonly partial struct Format : IGridFormatAdvSimd
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void ValuesAdvSimd(byte* x, int ib, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            byte* signs = x + Signs + 4 * ib;
            low = GridQuants.SignBitsAdvSimd(Vector128.Create(Magnitudes(x, ib, 0), Magnitudes(x, ib, 1)).AsByte(), signs);
            high = GridQuants.SignBitsAdvSimd(Vector128.Create(Magnitudes(x, ib, 2), Magnitudes(x, ib, 3)).AsByte(), signs + 2);
        }
    }
}

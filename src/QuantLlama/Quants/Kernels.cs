using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace QuantLlama.Quants;

/// <summary>Which family of kernels runs the dot products and activation quantizers.</summary>
public enum KernelPath
{
    /// <summary>Plain C#: the reference every SIMD path is tested against.</summary>
    Scalar,
    /// <summary>x86 AVX2 + FMA (256-bit).</summary>
    Avx2,
    /// <summary>x86 AVX-512 F/BW (512-bit), with AVX-512 VNNI where the CPU has it.</summary>
    Avx512,
    /// <summary>ARM64 AdvSimd (NEON), with the dot-product extension where the CPU has it.</summary>
    AdvSimd,
}

/// <summary>
/// Picks the kernel path at run time from what the CPU supports. Tests force a path through <see cref="Path"/>;
/// kernels without a version for the forced path use the next best one (AVX-512 falls back to AVX2).
/// </summary>
public static class Kernels
{
    /// <summary>The fastest path this CPU supports.</summary>
    public static KernelPath Best { get; } = DetectBest();

    private static KernelPath _path = Best;

    /// <summary>The path in use. Setting a path the CPU lacks throws <see cref="NotSupportedException"/>.</summary>
    public static KernelPath Path
    {
        get => _path;
        internal set
        {
            if (!IsSupported(value)) throw new NotSupportedException($"this CPU cannot run the {value} kernels");
            _path = value;
        }
    }

    /// <summary>True when this CPU can run the given path.</summary>
    public static bool IsSupported(KernelPath path) => path switch
    {
        KernelPath.Scalar => true,
        KernelPath.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        KernelPath.Avx512 => Avx512F.IsSupported && Avx512BW.IsSupported && Avx2.IsSupported && Fma.IsSupported,
        KernelPath.AdvSimd => AdvSimd.Arm64.IsSupported,
        _ => false,
    };

    /// <summary>All paths this CPU can run, scalar first.</summary>
    public static IReadOnlyList<KernelPath> Supported { get; } =
        Enum.GetValues<KernelPath>().Where(IsSupported).ToArray();

    private static KernelPath DetectBest()
    {
        // Builds the half-to-float and scale tables before any kernel is compiled (every kernel call reads Kernels.Path
        // first): kernels compiled straight to optimized code then read the table pointer as a constant, instead
        // of checking the class initialisation inside their loops and spilling their accumulators around it.
        _ = Fp16.ToFloat(0);
        unsafe { _ = X86Simd.ScaleBroadcasts[0]; }
        if (IsSupported(KernelPath.Avx512)) return KernelPath.Avx512;
        if (IsSupported(KernelPath.Avx2)) return KernelPath.Avx2;
        if (IsSupported(KernelPath.AdvSimd)) return KernelPath.AdvSimd;
        return KernelPath.Scalar;
    }

    internal static bool UseAvx512 => _path == KernelPath.Avx512;
    internal static bool UseAvx2 => _path is KernelPath.Avx2 or KernelPath.Avx512;
    internal static bool UseAdvSimd => _path == KernelPath.AdvSimd;
}

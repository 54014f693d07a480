using System.Runtime.Intrinsics.X86;

namespace QuantLlama.EndToEnd;

/// <summary>The x86 instruction sets that decide which kernels either engine runs, as one line for the report.</summary>
public static class CpuFeatures
{
    // (name in /proc/cpuinfo's flags, name printed), in the order printed.
    private static readonly (string Flag, string Name)[] Base =
        [("avx2", "AVX2"), ("fma", "FMA"), ("f16c", "F16C"), ("avx_vnni", "AVX-VNNI")];

    private static readonly (string Flag, string Name)[] Avx512 =
    [
        ("avx512f", "F"), ("avx512bw", "BW"), ("avx512cd", "CD"), ("avx512dq", "DQ"), ("avx512vl", "VL"),
        ("avx512ifma", "IFMA"), ("avx512vbmi", "VBMI"), ("avx512_vbmi2", "VBMI2"), ("avx512_vnni", "VNNI"),
        ("avx512_bf16", "BF16"), ("avx512_fp16", "FP16"), ("avx512_bitalg", "BITALG"), ("avx512_vpopcntdq", "VPOPCNTDQ"),
    ];

    private static readonly (string Flag, string Name)[] Extra = [("amx_tile", "AMX"), ("gfni", "GFNI")];

    /// <summary>E.g. "AVX2, FMA, F16C, AVX-VNNI, AVX-512 F/BW/CD/DQ/VL/VBMI/VNNI/BF16" (the CPU's, from /proc/cpuinfo;
    /// what .NET reports elsewhere), plus what .NET itself uses when that differs (DOTNET_EnableAVX512=0).</summary>
    public static string Describe()
    {
        var flags = CpuInfoFlags();
        string line;
        if (flags == null)
        {
            // No /proc/cpuinfo: what .NET sees.
            var seen = new List<string>();
            if (Avx2.IsSupported) seen.Add("AVX2");
            if (Fma.IsSupported) seen.Add("FMA");
            if (AvxVnni.IsSupported) seen.Add("AVX-VNNI");
            if (Avx512F.IsSupported) seen.Add("AVX-512 F" + (Avx512BW.IsSupported ? "/BW" : "") + (Avx512Vbmi.IsSupported ? "/VBMI" : ""));
            line = seen.Count == 0 ? "no AVX2" : string.Join(", ", seen);
        }
        else
        {
            var parts = Base.Where(f => flags.Contains(f.Flag)).Select(f => f.Name).ToList();
            var avx512 = Avx512.Where(f => flags.Contains(f.Flag)).Select(f => f.Name).ToList();
            if (avx512.Count > 0) parts.Add("AVX-512 " + string.Join("/", avx512));
            parts.AddRange(Extra.Where(f => flags.Contains(f.Flag)).Select(f => f.Name));
            line = parts.Count == 0 ? "no AVX2" : string.Join(", ", parts);
            if (flags.Contains("avx512f") && !Avx512F.IsSupported) line += " (AVX-512 turned off for .NET: DOTNET_EnableAVX512=0)";
        }
        return line;
    }

    private static HashSet<string>? CpuInfoFlags()
    {
        const string path = "/proc/cpuinfo";
        if (!File.Exists(path)) return null;
        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal));
        return line == null ? null : [.. line.Split(':', 2)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)];
    }
}

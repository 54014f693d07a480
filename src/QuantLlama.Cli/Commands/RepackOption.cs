using System.CommandLine;

namespace QuantLlama.Cli.Commands;

/// <summary>--no-repack, shared by the commands that load a model for serving or timing it.</summary>
internal static class RepackOption
{
    public static Option<bool> Create() => new("--no-repack")
    {
        Description = "Read Q4_0, Q4_K and Q8_0 weights from the mapped file instead of copies repacked at load for the "
            + "AVX-512 kernels (saves the copying at load; on Linux the process holds about the file's size either way, as the "
            + "copied pages leave the mapping; prompts read up to half as fast, and generation and conversations "
            + "decoding together slower)",
    };
}

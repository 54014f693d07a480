using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace QuantLlama.Bench;

/// <summary>
/// dotnet run -c Release --project bench/QuantLlama.Bench -- --filter '*Dot*'
/// Runs in process (no per-benchmark project build). The machine is shared and bursts of other load land on one
/// engine's block of iterations or the other's: 15 iterations, and the median and minimum beside the mean, so a
/// burst shows as a wide mean rather than a wrong ratio (docs/performance.md takes ratios from the medians).
/// </summary>
public static class Program
{
    public static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "quick")
        {
            Quick.Run(args[1..]);
            return;
        }
        var config = DefaultConfig.Instance
            .AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithWarmupCount(3).WithIterationCount(15).AsDefault())
            .AddColumn(StatisticColumn.Median, StatisticColumn.Min)
            .WithOptions(ConfigOptions.DisableOptimizationsValidator);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
    }
}

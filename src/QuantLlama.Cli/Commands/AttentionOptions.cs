using System.CommandLine;
using QuantLlama.Models;

namespace QuantLlama.Cli.Commands;

/// <summary>llama.cpp's KV cache and attention flags: --cache-type-k/--cache-type-v and --flash-attn.</summary>
public sealed class AttentionOptions
{
    private readonly Option<string> _cacheTypeK = new("--cache-type-k", "-ctk")
    {
        Description = "KV cache element type, as llama.cpp's flag: f16 (half the memory; attention rounds as --flash-attn says) "
            + "or f32 (twice the memory, no f16 rounding: llama.cpp's f32 cache with -fa off; the fastest attention at long "
            + "contexts); keys and values take one type",
        DefaultValueFactory = _ => "f16",
    };

    private readonly Option<string> _cacheTypeV = new("--cache-type-v", "-ctv")
    {
        Description = "Same as --cache-type-k (both must name one type)",
        DefaultValueFactory = _ => "f16",
    };

    private readonly Option<string> _flashAttention = new("--flash-attn", "-fa")
    {
        Description = "Attention over the f16 cache, rounding as llama.cpp's: on (query rounded to f16, output summed in f16), "
            + "off (query and softmax weights rounded to f16, sums in f32), auto (on, as llama.cpp picks on a CPU); "
            + "same memory; at long contexts on generates slower than off (it rounds its sum at every position)",
        DefaultValueFactory = _ => "auto",
    };

    public AttentionOptions(Command command)
    {
        _cacheTypeK.AcceptOnlyFromAmong("f16", "f32");
        _cacheTypeV.AcceptOnlyFromAmong("f16", "f32");
        _flashAttention.AcceptOnlyFromAmong("on", "off", "auto");
        command.Options.Add(_cacheTypeK);
        command.Options.Add(_cacheTypeV);
        command.Options.Add(_flashAttention);
    }

    /// <summary><paramref name="options"/> with the parsed cache type and attention mode.</summary>
    public ContextOptions Apply(ParseResult parse, ContextOptions options)
    {
        string k = parse.GetValue(_cacheTypeK)!, v = parse.GetValue(_cacheTypeV)!;
        if (k != v) throw new CliUsageException($"--cache-type-k {k} and --cache-type-v {v} differ: keys and values take one type");
        return options with
        {
            KvCacheType = k == "f32" ? KvCacheType.F32 : KvCacheType.F16,
            FlashAttention = parse.GetValue(_flashAttention) switch { "on" => FlashAttention.On, "off" => FlashAttention.Off, _ => FlashAttention.Auto },
        };
    }

    /// <summary>"kv cache: F16 (…), flash attention: on" for the parameters line.</summary>
    public static string Describe(InferenceContext context)
        => $"kv cache: {context.KvCacheType} ({GenerateCommand.FormatSize(context.KvCacheBytes)})"
            + (context.KvCacheType == KvCacheType.F16 ? $", flash attention: {(context.FlashAttention == FlashAttention.On ? "on" : "off")}" : "");
}

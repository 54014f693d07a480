namespace QuantLlama.Templates.Jinja;

/// <summary>
/// Settings of a template. The defaults are the ones Hugging Face renders chat templates with (trim_blocks and
/// lstrip_blocks on, a single trailing newline dropped) and limits that keep a hostile template from hanging or
/// exhausting memory.
/// </summary>
public sealed record JinjaOptions
{
    public static JinjaOptions Default { get; } = new();

    /// <summary>Remove the first newline after a block tag or comment.</summary>
    public bool TrimBlocks { get; init; } = true;

    /// <summary>Remove spaces and tabs before a block tag or comment that starts a line.</summary>
    public bool LstripBlocks { get; init; } = true;

    /// <summary>Keep a single newline at the end of the template (jinja2 drops it by default).</summary>
    public bool KeepTrailingNewline { get; init; }

    /// <summary>Most characters a render may return.</summary>
    public int MaxOutputChars { get; init; } = 4 * 1024 * 1024;

    /// <summary>
    /// Most characters a render may produce in all: output, captured blocks, macro results and strings built by
    /// concatenation, joins and repetition. Bounds the work of templates that build big strings and throw them away.
    /// </summary>
    public long MaxWorkChars { get; init; } = 64L * 1024 * 1024;

    /// <summary>Most loop iterations in one render, all loops together.</summary>
    public long MaxLoopIterations { get; init; } = 1_000_000;

    /// <summary>Most items of one list built by the template (range, repetition, concatenation, append).</summary>
    public int MaxListLength { get; init; } = 1_000_000;

    /// <summary>Deepest nesting of macro calls (recursion included).</summary>
    public int MaxCallDepth { get; init; } = 64;

    /// <summary>Deepest nesting of expressions and blocks in the source.</summary>
    public int MaxNestingDepth { get; init; } = 100;

    /// <summary>The clock of strftime_now; the local time of the machine when null.</summary>
    public Func<DateTime>? Clock { get; init; }
}

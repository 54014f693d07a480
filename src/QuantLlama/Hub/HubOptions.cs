namespace QuantLlama.Hub;

/// <summary>
/// Where the Hub is, where its cache lives, and how to authenticate: the same environment variables as
/// Python's <c>huggingface_hub</c>, so both share one cache. Tests build options explicitly instead of
/// changing the process environment.
/// </summary>
public sealed record HubOptions
{
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>Base URL of the Hub, without a trailing slash (<c>HF_ENDPOINT</c>).</summary>
    public string Endpoint { get; init; } = DefaultEndpoint;

    /// <summary>The cache root that holds <c>models--owner--name</c> folders (<c>HF_HUB_CACHE</c>).</summary>
    public required string CacheDirectory { get; init; }

    /// <summary>Bearer token for gated or private repositories (<c>HF_TOKEN</c> or <c>$HF_HOME/token</c>).</summary>
    public string? Token { get; init; }

    /// <summary>Use the cache only, never the network (<c>HF_HUB_OFFLINE=1</c>).</summary>
    public bool Offline { get; init; }

    /// <summary>Where download progress goes; null for silence.</summary>
    public IDownloadProgress? Progress { get; init; }

    /// <summary>Attempts for one download when the connection drops mid-body; each resumes where the last stopped.</summary>
    public int MaxAttempts { get; init; } = 5;

    /// <summary>Pause before retrying an attempt that received nothing (multiplied by the attempt number).</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>A read that makes no progress for this long is treated as a dropped connection.</summary>
    public TimeSpan ReadTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long to wait for another process that is downloading the same file.</summary>
    public TimeSpan LockTimeout { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>Options from the environment, as <c>huggingface_hub</c> reads it.</summary>
    public static HubOptions FromEnvironment(IDownloadProgress? progress = null) => FromEnvironment(Environment.GetEnvironmentVariable, progress);

    /// <summary>Options from a given environment lookup (for tests and embedding).</summary>
    public static HubOptions FromEnvironment(Func<string, string?> env, IDownloadProgress? progress = null)
    {
        string home = NonEmpty(env("HOME")) ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string hfHome = NonEmpty(env("HF_HOME"))
            ?? Path.Combine(NonEmpty(env("XDG_CACHE_HOME")) ?? Path.Combine(home, ".cache"), "huggingface");
        string cache = NonEmpty(env("HF_HUB_CACHE")) ?? NonEmpty(env("HUGGINGFACE_HUB_CACHE")) ?? Path.Combine(hfHome, "hub");
        string endpoint = (NonEmpty(env("HF_ENDPOINT")) ?? DefaultEndpoint).TrimEnd('/');
        return new HubOptions
        {
            Endpoint = endpoint,
            CacheDirectory = ExpandHome(cache, home),
            Token = ReadToken(env, ExpandHome(hfHome, home)),
            Offline = IsTrue(env("HF_HUB_OFFLINE")),
            Progress = progress,
        };
    }

    private static string? ReadToken(Func<string, string?> env, string hfHome)
    {
        string? token = NonEmpty(env("HF_TOKEN")) ?? NonEmpty(env("HUGGING_FACE_HUB_TOKEN"));
        if (token != null) return token.Trim();
        string tokenFile = NonEmpty(env("HF_TOKEN_PATH")) ?? Path.Combine(hfHome, "token");
        try
        {
            return File.Exists(tokenFile) ? NonEmpty(File.ReadAllText(tokenFile).Trim()) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static bool IsTrue(string? value) =>
        value != null && value.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;

    private static string ExpandHome(string path, string home) =>
        path == "~" ? home : path.StartsWith("~/", StringComparison.Ordinal) ? Path.Combine(home, path[2..]) : path;
}

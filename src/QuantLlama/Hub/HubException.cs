namespace QuantLlama.Hub;

/// <summary>What went wrong with a Hub download, in a form a user can act on.</summary>
public enum HubErrorKind
{
    /// <summary>401/403: gated or private repository; a token is missing or lacks access.</summary>
    Unauthorized,
    /// <summary>404 or the Hub's RepoNotFound: no such repository (or it is private).</summary>
    RepositoryNotFound,
    /// <summary>404 with EntryNotFound/RevisionNotFound: the repository exists, the file or revision does not.</summary>
    FileNotFound,
    /// <summary><c>HF_HUB_OFFLINE=1</c> and the file is not in the cache.</summary>
    NotInCache,
    /// <summary>The Hub could not be reached (DNS, refused connection, timeout).</summary>
    NoNetwork,
    /// <summary>Not enough free space for the download.</summary>
    DiskFull,
    /// <summary>The downloaded bytes do not match the Hub's checksum or size.</summary>
    Corrupted,
    /// <summary>Any other unexpected answer from the server.</summary>
    Server,
}

/// <summary>
/// A Hub download failure with a one-line message (no stack trace is needed to act on it). Derives from
/// <see cref="IOException"/> so the CLI reports it as a user error.
/// </summary>
public sealed class HubException(HubErrorKind kind, string message, Exception? inner = null, int? statusCode = null)
    : IOException(message, inner)
{
    public HubErrorKind Kind { get; } = kind;

    /// <summary>The HTTP status behind the error, when there was one.</summary>
    public int? StatusCode { get; } = statusCode;
}

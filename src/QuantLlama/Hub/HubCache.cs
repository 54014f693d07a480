using QuantLlama.Gguf;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace QuantLlama.Hub;

/// <summary>
/// The <c>huggingface_hub</c> cache layout, shared with Python tools:
/// <code>
/// {root}/models--owner--name/blobs/{etag}                 file contents, named by ETag (sha256 for LFS files)
/// {root}/models--owner--name/snapshots/{commit}/{file}    relative symlink to the blob (a copy where links fail)
/// {root}/models--owner--name/refs/{revision}              the commit a branch or tag pointed to
/// {root}/.locks/models--owner--name/{etag}.lock           held while one process downloads a blob
/// </code>
/// </summary>
public sealed partial class HubCache
{
    public HubCache(string root)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(root);
        Root = Path.GetFullPath(root);
    }

    public string Root { get; }

    /// <summary>The cache that <c>HF_HUB_CACHE</c> / <c>HF_HOME</c> name (else <c>~/.cache/huggingface/hub</c>).</summary>
    public static HubCache FromEnvironment() => new(HubOptions.FromEnvironment().CacheDirectory);

    public string RepoFolder(string repo) => Path.Combine(Root, "models--" + ValidateRepo(repo).Replace("/", "--"));

    public string BlobPath(string repo, string etag) => Path.Combine(RepoFolder(repo), "blobs", ValidateEtag(etag));

    public string IncompletePath(string repo, string etag) => BlobPath(repo, etag) + ".incomplete";

    public string LockPath(string repo, string etag) =>
        Path.Combine(Root, ".locks", Path.GetFileName(RepoFolder(repo)), ValidateEtag(etag) + ".lock");

    public string SnapshotPath(string repo, string commit, string file) =>
        Path.Combine([RepoFolder(repo), "snapshots", ValidateCommit(commit), .. ValidateFile(file).Split('/')]);

    public string RefPath(string repo, string revision) =>
        Path.Combine([RepoFolder(repo), "refs", .. ValidateRevision(revision).Split('/')]);

    /// <summary>The commit a revision resolves to in the cache: refs/{revision}, else the revision itself when it is a commit hash.</summary>
    public string? ResolveRevision(string repo, string revision)
    {
        string refPath = RefPath(repo, revision);
        if (File.Exists(refPath))
        {
            string commit = File.ReadAllText(refPath).Trim();
            if (IsCommitHash(commit)) return commit;
        }
        return IsCommitHash(revision) ? revision.ToLowerInvariant() : null;
    }

    /// <summary>The cached file for (repo, revision, file), found without any network request; null when absent.</summary>
    public string? TryGetCachedFile(string repo, string revision, string file)
    {
        string? commit = ResolveRevision(repo, revision);
        if (commit == null) return null;
        string path = SnapshotPath(repo, commit, file);
        return IsUsableFile(path) ? path : null;
    }

    /// <summary>Records that <paramref name="revision"/> points at <paramref name="commit"/> (nothing to do when they are the same).</summary>
    public void WriteRef(string repo, string revision, string commit)
    {
        ValidateCommit(commit);
        if (string.Equals(revision, commit, StringComparison.OrdinalIgnoreCase)) return;
        string refPath = RefPath(repo, revision);
        if (File.Exists(refPath) && File.ReadAllText(refPath).Trim() == commit) return;
        Directory.CreateDirectory(Path.GetDirectoryName(refPath)!);
        string temp = refPath + "." + Guid.NewGuid().ToString("N") + ".tmp";
        File.WriteAllText(temp, commit); // huggingface_hub writes the bare hash, no newline
        File.Move(temp, refPath, overwrite: true);
    }

    /// <summary>Makes snapshots/{commit}/{file} point at the blob: a relative symlink, or a copy where symlinks are not allowed.</summary>
    public string LinkSnapshot(string repo, string commit, string file, string etag)
    {
        string blob = BlobPath(repo, etag);
        string pointer = SnapshotPath(repo, commit, file);
        string dir = Path.GetDirectoryName(pointer)!;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, "." + Path.GetFileName(pointer) + "." + Guid.NewGuid().ToString("N") + ".tmp");
        try
        {
            File.CreateSymbolicLink(temp, Path.GetRelativePath(dir, blob));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            File.Copy(blob, temp, overwrite: true);
        }
        // A rename replaces an existing pointer atomically, so a concurrent reader never sees it missing.
        File.Move(temp, pointer, overwrite: true);
        return pointer;
    }

    /// <summary>
    /// Puts a local file into the cache as if it had been downloaded from (repo, revision, file), so a later
    /// lookup (online or with <c>HF_HUB_OFFLINE=1</c>) finds it. The blob is named by the file's sha256, as an
    /// LFS file's is; <paramref name="commit"/> defaults to a hash derived from the content.
    /// </summary>
    /// <returns>The snapshot path, as a download would return it.</returns>
    public string Store(string repo, string revision, string? commit, string file, string sourcePath)
    {
        ValidateRepo(repo);
        ValidateRevision(revision);
        ValidateFile(file);
        if (!File.Exists(sourcePath)) throw new FileNotFoundException($"{sourcePath}: no such file", sourcePath);
        string etag = Sha256Hex(sourcePath);
        commit ??= IsCommitHash(revision) ? revision.ToLowerInvariant() : etag[..40];
        ValidateCommit(commit);

        using (FileLock.Acquire(LockPath(repo, etag), TimeSpan.FromMinutes(5), null, $"{repo}/{file}"))
        {
            string blob = BlobPath(repo, etag);
            if (!IsUsableFile(blob))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
                string incomplete = IncompletePath(repo, etag);
                File.Copy(sourcePath, incomplete, overwrite: true);
                File.Move(incomplete, blob, overwrite: true);
            }
        }
        string pointer = LinkSnapshot(repo, commit, file, etag);
        WriteRef(repo, revision, commit);
        return pointer;
    }

    internal static bool IsUsableFile(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) return false;
        if (info.LinkTarget == null) return true;
        return info.ResolveLinkTarget(returnFinalTarget: true) is { Exists: true };
    }

    /// <summary>A file's length, following symlinks (a snapshot's FileInfo.Length is the link's own).</summary>
    public static long FileLength(string path)
    {
        return MappedFile.Resolve(path).Length;
    }

    internal static string Sha256Hex(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    public static bool IsCommitHash(string s) => s.Length == 40 && HexOnly().IsMatch(s);

    /// <summary>An LFS ETag is the file's sha256; a plain git file's is its git blob hash (40 hex).</summary>
    public static bool IsSha256(string etag) => etag.Length == 64 && HexOnly().IsMatch(etag);

    public static string ValidateRepo(string repo)
    {
        if (!RepoId().IsMatch(repo) || repo.Contains(".."))
            throw new ArgumentException($"'{repo}' is not a Hub repository id (expected owner/name)");
        return repo;
    }

    public static string ValidateFile(string file)
    {
        if (string.IsNullOrEmpty(file) || file.Contains('\\') || file.Contains('\0')
            || file.Split('/').Any(s => s.Length == 0 || s == "." || s == ".."))
            throw new ArgumentException($"'{file}' is not a file path inside a Hub repository");
        return file;
    }

    public static string ValidateRevision(string revision)
    {
        if (string.IsNullOrEmpty(revision) || revision.Contains('\\') || revision.Any(char.IsControl)
            || revision.Split('/').Any(s => s.Length == 0 || s == "." || s == ".."))
            throw new ArgumentException($"'{revision}' is not a revision (a branch, tag or commit)");
        return revision;
    }

    public static string ValidateCommit(string commit)
    {
        if (!IsCommitHash(commit)) throw new ArgumentException($"'{commit}' is not a commit hash (40 hex digits)");
        return commit;
    }

    public static string ValidateEtag(string etag)
    {
        if (!EtagName().IsMatch(etag)) throw new ArgumentException($"'{etag}' is not a usable ETag");
        return etag;
    }

    [GeneratedRegex("^[0-9a-fA-F]+$")]
    private static partial Regex HexOnly();

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")]
    private static partial Regex RepoId();

    [GeneratedRegex(@"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex EtagName();
}

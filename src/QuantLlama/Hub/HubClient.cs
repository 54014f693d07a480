using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace QuantLlama.Hub;

/// <summary>What the Hub says about one file before it is downloaded (from the HEAD answer).</summary>
/// <param name="Commit">The commit the revision resolved to (<c>X-Repo-Commit</c>).</param>
/// <param name="Etag">The blob name: <c>X-Linked-Etag</c> (LFS sha256) or <c>ETag</c> (git blob hash).</param>
/// <param name="Size">Bytes, where the Hub says (<c>X-Linked-Size</c> or <c>Content-Length</c>).</param>
/// <param name="DownloadUrl">Where to GET the bytes: the redirect target for LFS files, else the resolve URL.</param>
public sealed record HubFileMetadata(string Commit, string Etag, long? Size, Uri DownloadUrl);

/// <summary>
/// Downloads files from the Hugging Face Hub into the shared <c>huggingface_hub</c> cache: a cached file is
/// returned with no request; otherwise a HEAD finds the commit and ETag, a GET (following redirects) fills
/// <c>blobs/{etag}.incomplete</c> (resuming with a Range request after a drop), an LFS file's sha256 is
/// checked, and only then does the blob enter the cache. A lock file keeps two processes off the same blob.
/// </summary>
public sealed class HubClient : IDisposable
{
    private const int MaxRedirects = 10;
    private readonly HubOptions _options;
    private readonly HttpClient _http;
    private readonly Uri _endpoint;

    public HubClient(HubOptions options, HttpMessageHandler? handler = null)
    {
        _options = options;
        Cache = new HubCache(options.CacheDirectory);
        if (!Uri.TryCreate(options.Endpoint.TrimEnd('/') + "/", UriKind.Absolute, out var endpoint)
            || (endpoint.Scheme != Uri.UriSchemeHttps && endpoint.Scheme != Uri.UriSchemeHttp))
            throw new ArgumentException($"HF_ENDPOINT '{options.Endpoint}' is not an http(s) URL");
        _endpoint = endpoint;
        handler ??= new SocketsHttpHandler
        {
            // Redirects are followed by hand: the HEAD must stop at the Hub's 302 to read its headers,
            // and the token must not follow a redirect to another host (the CDN).
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(20),
        };
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("quantllama/0.1");
    }

    public HubCache Cache { get; }

    /// <summary>The local path of (repo, file) at revision, downloading it when the cache lacks it.</summary>
    public string Download(string repo, string file, string revision = "main") =>
        DownloadAsync(repo, file, revision).GetAwaiter().GetResult();

    public async Task<string> DownloadAsync(string repo, string file, string revision = "main", CancellationToken cancel = default)
    {
        HubCache.ValidateRepo(repo);
        HubCache.ValidateFile(file);
        HubCache.ValidateRevision(revision);

        string? cached = Cache.TryGetCachedFile(repo, revision, file);
        if (cached != null) return cached;
        if (_options.Offline)
            throw new HubException(HubErrorKind.NotInCache,
                $"HF_HUB_OFFLINE is set and {repo}/{file} (revision {revision}) is not in the cache {Cache.Root}; run once online to download it");

        var meta = await GetMetadataAsync(repo, file, revision, cancel).ConfigureAwait(false);
        string pointer = Cache.SnapshotPath(repo, meta.Commit, file);
        if (!HubCache.IsUsableFile(pointer))
        {
            string blob = Cache.BlobPath(repo, meta.Etag);
            if (!HubCache.IsUsableFile(blob))
            {
                using var fileLock = FileLock.Acquire(Cache.LockPath(repo, meta.Etag), _options.LockTimeout, _options.Progress, $"{repo}/{file}");
                // Another process may have finished the blob while this one waited for the lock.
                if (!HubCache.IsUsableFile(blob))
                    await DownloadBlobAsync(repo, file, meta, cancel).ConfigureAwait(false);
            }
            Cache.LinkSnapshot(repo, meta.Commit, file, meta.Etag);
        }
        Cache.WriteRef(repo, revision, meta.Commit);
        return pointer;
    }

    /// <summary>The HEAD request: the commit, ETag and size of (repo, file) at revision, with no body downloaded.</summary>
    public async Task<HubFileMetadata> GetMetadataAsync(string repo, string file, string revision = "main", CancellationToken cancel = default)
    {
        Uri url = ResolveUrl(repo, file, revision);
        string what = $"{repo}/{file}";
        for (int hop = 0; hop <= MaxRedirects; hop++)
        {
            using var request = NewRequest(HttpMethod.Head, url);
            using var response = await SendAsync(request, what, cancel).ConfigureAwait(false);
            int status = (int)response.StatusCode;
            if (status is >= 300 and < 400)
            {
                Uri target = RedirectTarget(response, url, what);
                // A redirect without the Hub's headers on the same host is a renamed repository: follow it.
                // One that carries them (an LFS file sent to the CDN) is the answer itself.
                if (Header(response, "X-Repo-Commit") == null && SameOrigin(target, url))
                {
                    url = target;
                    continue;
                }
                return MetadataFrom(response, target, what);
            }
            ThrowForStatus(response, repo, file, revision);
            return MetadataFrom(response, url, what);
        }
        throw new HubException(HubErrorKind.Server, $"{what}: more than {MaxRedirects} redirects from {_endpoint.Host}");
    }

    public Uri ResolveUrl(string repo, string file, string revision)
    {
        string path = string.Join('/', file.Split('/').Select(Uri.EscapeDataString));
        return new Uri(_endpoint, $"{repo}/resolve/{Uri.EscapeDataString(revision)}/{path}");
    }

    private async Task DownloadBlobAsync(string repo, string file, HubFileMetadata meta, CancellationToken cancel)
    {
        string what = $"{repo}/{file}";
        string incomplete = Cache.IncompletePath(repo, meta.Etag);
        string blob = Cache.BlobPath(repo, meta.Etag);
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        long have = FileLength(incomplete);
        if (meta.Size is long size && have > size) have = Truncate(incomplete);
        CheckFreeSpace(Path.GetDirectoryName(blob)!, meta.Size is long s ? s - have : 0, what);

        var progress = _options.Progress;
        progress?.Start(what, meta.Size, have);
        bool succeeded = false;
        try
        {
            for (int attempt = 1; ; attempt++)
            {
                long before = have = FileLength(incomplete);
                if (meta.Size is long total && have == total) break;
                try
                {
                    await GetIntoAsync(meta.DownloadUrl, incomplete, have, meta.Size, what, cancel).ConfigureAwait(false);
                    break;
                }
                catch (HubException e) when (e.Kind == HubErrorKind.Corrupted)
                {
                    File.Delete(incomplete);
                    throw;
                }
                catch (Exception e) when (IsDiskFull(e))
                {
                    throw DiskFull(Path.GetDirectoryName(blob)!, meta.Size, what, e);
                }
                catch (Exception e) when (IsTransient(e, cancel))
                {
                    long now = FileLength(incomplete);
                    string at = meta.Size is long t ? $"{now} of {t} bytes" : $"{now} bytes";
                    if (attempt >= _options.MaxAttempts)
                        throw new HubException(HubErrorKind.NoNetwork,
                            $"{what}: the download was interrupted at {at} ({OneLine(e)}); run again to resume", e);
                    progress?.Note($"{what}: connection lost at {at} ({OneLine(e)}); resuming");
                    // Back off only when the attempt got nowhere; a drop after progress resumes at once.
                    if (now == before) await Task.Delay(_options.RetryDelay * attempt, cancel).ConfigureAwait(false);
                }
            }

            Verify(incomplete, meta, what);
            File.Move(incomplete, blob, overwrite: true);
            succeeded = true;
        }
        finally
        {
            progress?.Finish(succeeded);
        }
    }

    /// <summary>GETs url into path, appending from offset <paramref name="have"/> with a Range request when it is non-zero.</summary>
    private async Task GetIntoAsync(Uri url, string path, long have, long? expectedSize, string what, CancellationToken cancel)
    {
        Uri current = url;
        for (int hop = 0; hop <= MaxRedirects; hop++)
        {
            using var request = NewRequest(HttpMethod.Get, current);
            if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
            using var response = await SendAsync(request, what, cancel).ConfigureAwait(false);
            int status = (int)response.StatusCode;
            if (status is >= 300 and < 400)
            {
                current = RedirectTarget(response, current, what);
                continue;
            }
            if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && have > 0)
            {
                // Nothing left to send from that offset: either the file is complete or the partial one is stale.
                if (expectedSize == null || expectedSize == have) return;
                have = Truncate(path);
                continue;
            }
            ThrowForStatus(response, null, what, null);

            if (have > 0 && response.StatusCode != HttpStatusCode.PartialContent)
                have = Truncate(path); // the server ignored the Range: start over
            else if (have > 0 && response.Content.Headers.ContentRange?.From is long from && from != have)
                throw new HubException(HubErrorKind.Server, $"{what}: the server resumed at byte {from}, not {have}");

            await using var body = await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false);
            await using var output = new FileStream(path, have > 0 ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
            byte[] buffer = new byte[1 << 20];
            long done = have;
            using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            while (true)
            {
                idle.CancelAfter(_options.ReadTimeout);
                int n = await body.ReadAsync(buffer, idle.Token).ConfigureAwait(false);
                if (n == 0) break;
                if (expectedSize is long limit && done + n > limit)
                    throw new HubException(HubErrorKind.Corrupted,
                        $"{what}: the server sent more than the {limit} bytes the Hub announced; the partial file was deleted, run again");
                await output.WriteAsync(buffer.AsMemory(0, n), cancel).ConfigureAwait(false);
                done += n;
                _options.Progress?.Report(done);
            }
            await output.FlushAsync(cancel).ConfigureAwait(false);
            return;
        }
        throw new HubException(HubErrorKind.Server, $"{what}: more than {MaxRedirects} redirects");
    }

    /// <summary>Size and (for LFS files) sha256 must match the Hub's; a mismatching file is deleted, never cached.</summary>
    private static void Verify(string incomplete, HubFileMetadata meta, string what)
    {
        long length = FileLength(incomplete);
        if (meta.Size is long size && length != size)
        {
            File.Delete(incomplete);
            throw new HubException(HubErrorKind.Corrupted,
                $"{what}: downloaded {length} bytes but the Hub announced {size}; the partial file was deleted, run again");
        }
        if (HubCache.IsSha256(meta.Etag))
        {
            string actual = HubCache.Sha256Hex(incomplete);
            if (!string.Equals(actual, meta.Etag, StringComparison.OrdinalIgnoreCase))
            {
                File.Delete(incomplete);
                throw new HubException(HubErrorKind.Corrupted,
                    $"{what}: the downloaded file's sha256 {actual} does not match the Hub's {meta.Etag.ToLowerInvariant()}; it was deleted, run again");
            }
        }
    }

    private HttpRequestMessage NewRequest(HttpMethod method, Uri url)
    {
        var request = new HttpRequestMessage(method, url);
        request.Headers.AcceptEncoding.ParseAdd("identity"); // sizes and ranges are of the stored bytes
        if (_options.Token != null && SameOrigin(url, _endpoint))
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _options.Token);
        return request;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, string what, CancellationToken cancel)
    {
        using var headersTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        headersTimeout.CancelAfter(_options.ReadTimeout);
        try
        {
            return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, headersTimeout.Token).ConfigureAwait(false);
        }
        catch (HttpRequestException e) when (e.StatusCode == null)
        {
            throw new HubException(HubErrorKind.NoNetwork,
                $"cannot reach {request.RequestUri!.GetLeftPart(UriPartial.Authority)} for {what}: {OneLine(e)}; check the network (or HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to use cached files only", e);
        }
        catch (OperationCanceledException e) when (!cancel.IsCancellationRequested)
        {
            throw new HubException(HubErrorKind.NoNetwork,
                $"{request.RequestUri!.Host} did not answer within {_options.ReadTimeout.TotalSeconds:F0}s for {what}", e);
        }
    }

    private void ThrowForStatus(HttpResponseMessage response, string? repo, string what, string? revision)
    {
        if (response.IsSuccessStatusCode) return;
        int status = (int)response.StatusCode;
        string errorCode = Header(response, "X-Error-Code") ?? "";
        string subject = repo ?? what;
        string at = revision != null ? $" (revision {revision})" : "";
        switch (status)
        {
            case 401 or 403 when errorCode == "RepoNotFound":
                throw new HubException(HubErrorKind.RepositoryNotFound,
                    $"repository {subject} not found on {_endpoint.Host}, or it is private: check the name; if it is gated or private, set HF_TOKEN to a token with access (HTTP {status})");
            case 401 or 403:
                string tokenHint = _options.Token == null
                    ? "accept its terms on the Hub and set HF_TOKEN (or put a token in $HF_HOME/token)"
                    : "the token in HF_TOKEN has no access to it: accept the repository's terms on the Hub with that account";
                throw new HubException(HubErrorKind.Unauthorized,
                    $"{subject}: access denied (HTTP {status}): the repository is gated or private; {tokenHint}");
            case 404 when errorCode == "EntryNotFound" && repo != null:
                throw new HubException(HubErrorKind.FileNotFound, $"{what} not found: repository {repo} has no such file{at}");
            case 404 when errorCode == "RevisionNotFound" && repo != null:
                throw new HubException(HubErrorKind.FileNotFound, $"{what}: repository {repo} has no revision '{revision}'");
            case 404:
                throw new HubException(HubErrorKind.RepositoryNotFound,
                    $"{what}{at} not found on {_endpoint.Host} (HTTP 404): check the repository id and the file name");
            default:
                throw new HubException(HubErrorKind.Server,
                    $"{what}{at}: {response.RequestMessage?.RequestUri?.Host} answered HTTP {status} {response.ReasonPhrase}", statusCode: status);
        }
    }

    private static HubFileMetadata MetadataFrom(HttpResponseMessage response, Uri downloadUrl, string what)
    {
        string? commit = Header(response, "X-Repo-Commit");
        string? etag = NormalizeEtag(Header(response, "X-Linked-Etag") ?? Header(response, "ETag"));
        if (commit == null || !HubCache.IsCommitHash(commit))
            throw new HubException(HubErrorKind.Server, $"{what}: the server gave no commit hash (X-Repo-Commit); is HF_ENDPOINT a Hugging Face Hub?");
        if (etag == null || !IsValidEtag(etag))
            throw new HubException(HubErrorKind.Server, $"{what}: the server gave no usable ETag; is HF_ENDPOINT a Hugging Face Hub?");
        // A redirect's own Content-Length is that of its little body, not of the file.
        bool redirected = (int)response.StatusCode is >= 300 and < 400;
        long? size = long.TryParse(Header(response, "X-Linked-Size"), out long linked) ? linked
            : redirected ? null : response.Content.Headers.ContentLength;
        return new HubFileMetadata(commit.ToLowerInvariant(), etag, size, downloadUrl);
    }

    private static Uri RedirectTarget(HttpResponseMessage response, Uri from, string what)
    {
        var location = response.Headers.Location
            ?? throw new HubException(HubErrorKind.Server, $"{what}: redirect ({(int)response.StatusCode}) without a Location");
        var target = location.IsAbsoluteUri ? location : new Uri(from, location);
        if (target.Scheme != Uri.UriSchemeHttps && target.Scheme != Uri.UriSchemeHttp)
            throw new HubException(HubErrorKind.Server, $"{what}: redirect to a non-http URL");
        return target;
    }

    internal static string? NormalizeEtag(string? etag)
    {
        if (etag == null) return null;
        etag = etag.Trim();
        if (etag.StartsWith("W/", StringComparison.Ordinal)) etag = etag[2..];
        return etag.Trim('"');
    }

    private static bool IsValidEtag(string etag)
    {
        try
        {
            HubCache.ValidateEtag(etag);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? values.FirstOrDefault() : null;

    private static bool SameOrigin(Uri a, Uri b) =>
        a.Scheme == b.Scheme && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    private static bool IsTransient(Exception e, CancellationToken cancel) => e switch
    {
        HubException { Kind: HubErrorKind.NoNetwork } => true,
        HubException { Kind: HubErrorKind.Server, StatusCode: >= 500 } => true, // a busy or restarting server
        HubException => false,
        OperationCanceledException => !cancel.IsCancellationRequested,
        HttpRequestException h => h.StatusCode == null,
        IOException => true,
        _ => false,
    };

    private static bool IsDiskFull(Exception e)
    {
        for (Exception? x = e; x != null; x = x.InnerException)
        {
            if (x is not IOException io) continue;
            int code = io.HResult & 0xFFFF;
            // ENOSPC (28) on Unix; ERROR_HANDLE_DISK_FULL (39) / ERROR_DISK_FULL (112) on Windows.
            if (io.HResult == 28 || (OperatingSystem.IsWindows() && code is 39 or 112)) return true;
        }
        return false;
    }

    private static HubException DiskFull(string dir, long? size, string what, Exception? inner)
    {
        string need = size is long s ? $" it needs {ConsoleDownloadProgress.FormatBytes(s)};" : "";
        return new HubException(HubErrorKind.DiskFull,
            $"{what}: disk full in {dir};{need} free some space or point HF_HUB_CACHE at a larger disk", inner);
    }

    private static void CheckFreeSpace(string dir, long needed, string what)
    {
        if (needed <= 0) return;
        long free;
        try
        {
            free = new DriveInfo(dir).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return; // unknown: let the write itself report a full disk
        }
        if (free < needed)
            throw new HubException(HubErrorKind.DiskFull,
                $"{what}: not enough disk space in {dir}: it needs {ConsoleDownloadProgress.FormatBytes(needed)}, {ConsoleDownloadProgress.FormatBytes(free)} free; free some space or point HF_HUB_CACHE at a larger disk");
    }

    private static long FileLength(string path) => File.Exists(path) ? new FileInfo(path).Length : 0;

    private static long Truncate(string path)
    {
        using (File.Create(path)) { }
        return 0;
    }

    private static string OneLine(Exception e)
    {
        string message = e is HubException ? e.Message : (e.InnerException is SocketException s ? s.Message : e.Message);
        return message.ReplaceLineEndings(" ");
    }

    public void Dispose() => _http.Dispose();
}

using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace QuantLlama.Tests.Hub;

/// <summary>
/// A minimal HTTP/1.1 server on 127.0.0.1 (random port) that answers like the Hugging Face Hub:
/// <c>/{owner}/{name}/resolve/{revision}/{file}</c> gives the commit and ETag headers (a 302 to
/// <c>/blobs/{sha256}</c> for LFS files, the file itself otherwise), blobs honour Range requests, and
/// gated/missing repositories and files get the Hub's 401/404 answers. One request per connection.
/// </summary>
public sealed class FakeHubServer : IDisposable
{
    public sealed record Request(string Method, string Path, string? Range, string? Authorization);

    public sealed class HubFile
    {
        public required string Repo { get; init; }
        public required string Path { get; init; }
        public required byte[] Content { get; init; }
        public required string Commit { get; init; }
        public bool Lfs { get; init; } = true;

        /// <summary>What X-Linked-Size claims, when it should differ from the real length.</summary>
        public long? AnnouncedSize { get; set; }
        public string Sha256 => Convert.ToHexStringLower(SHA256.HashData(Content));

        /// <summary>The git blob hash, which the Hub gives as the ETag of a file not stored in LFS.</summary>
        public string GitBlobSha1 =>
            Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {Content.Length}\0"), .. Content]));
    }

    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private readonly List<HubFile> _files = [];
    private int _dropsLeft;
    private int _headCount;

    public FakeHubServer()
    {
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Endpoint = $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";
        _acceptLoop = AcceptLoop();
    }

    public string Endpoint { get; }

    public ConcurrentQueue<Request> Requests { get; } = new();

    /// <summary>Repositories that answer 401 unless the request carries <see cref="ValidToken"/>.</summary>
    public HashSet<string> GatedRepos { get; } = [];

    public string ValidToken { get; set; } = "hf_test_token";

    /// <summary>The next this-many blob GETs send the headers (full length) and half the bytes, then close the connection.</summary>
    public int DropsLeft { get => Volatile.Read(ref _dropsLeft); set => Volatile.Write(ref _dropsLeft, value); }

    /// <summary>Serve blobs with one byte changed (same length): the sha256 no longer matches the ETag.</summary>
    public bool CorruptBlobs { get; set; }

    /// <summary>When set, blob bodies are held back until this many HEAD requests have arrived (bounded wait).</summary>
    public int HoldBlobsUntilHeads { get; set; }

    private readonly TaskCompletionSource _headsArrived = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Where LFS redirects send clients for the bytes (another server plays the CDN); this server by default.</summary>
    public string? BlobEndpoint { get; set; }

    /// <summary>Answer the next this-many blob GETs with 503 Service Unavailable.</summary>
    public int UnavailableLeft;

    /// <summary>Serve blobs with this many extra bytes beyond the announced size.</summary>
    public int ExtraBytes { get; set; }

    /// <summary>Answer Range requests with the whole file (200), as some servers do.</summary>
    public bool IgnoreRange { get; set; }

    /// <summary>Renamed repositories: old id → new id, answered with a relative 307 as the Hub does.</summary>
    public Dictionary<string, string> Renamed { get; } = [];

    public HubFile Add(string repo, string path, byte[] content, string? commit = null, bool lfs = true)
    {
        var file = new HubFile { Repo = repo, Path = path, Content = content, Commit = commit ?? RandomCommit(), Lfs = lfs };
        lock (_files) _files.Add(file);
        return file;
    }

    public static string RandomCommit() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));

    public int Count(string method, string pathPrefix) =>
        Requests.Count(r => r.Method == method && r.Path.StartsWith(pathPrefix, StringComparison.Ordinal));

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                return;
            }
            _ = Task.Run(() => HandleAsync(client));
        }
    }

    private async Task HandleAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var head = await ReadHeadAsync(stream);
                if (head == null) return;
                await RespondAsync(client, stream, head.Value.method, head.Value.target, head.Value.headers);
            }
            catch (IOException) { }
            catch (SocketException) { }
            catch (ObjectDisposedException) { }
        }
    }

    private static async Task<(string method, string target, Dictionary<string, string> headers)?> ReadHeadAsync(NetworkStream stream)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (bytes.Count < 16384)
        {
            if (await stream.ReadAsync(one) == 0) return null;
            bytes.Add(one[0]);
            int n = bytes.Count;
            if (n >= 4 && bytes[n - 4] == '\r' && bytes[n - 3] == '\n' && bytes[n - 2] == '\r' && bytes[n - 1] == '\n') break;
        }
        string[] lines = Encoding.ASCII.GetString([.. bytes]).Split("\r\n");
        string[] requestLine = lines[0].Split(' ');
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            int colon = line.IndexOf(':');
            if (colon > 0) headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
        }
        return (requestLine[0], requestLine[1], headers);
    }

    private async Task RespondAsync(TcpClient client, NetworkStream stream, string method, string target, Dictionary<string, string> headers)
    {
        string path = Uri.UnescapeDataString(target.Split('?')[0]);
        headers.TryGetValue("Range", out var range);
        headers.TryGetValue("Authorization", out var auth);
        Requests.Enqueue(new Request(method, path, range, auth));
        bool isHead = method == "HEAD";

        if (path.StartsWith("/blobs/", StringComparison.Ordinal))
        {
            HubFile? blob;
            lock (_files) blob = _files.FirstOrDefault(f => f.Sha256 == path["/blobs/".Length..]);
            if (blob == null)
            {
                await WriteHeadAsync(stream, 404, "Not Found", [], 0);
                return;
            }
            await ServeBlobAsync(client, stream, blob, range, isHead);
            return;
        }

        // /{owner}/{name}/resolve/{revision}/{file...}
        string[] parts = path.TrimStart('/').Split('/');
        if (parts.Length < 5 || parts[2] != "resolve")
        {
            await WriteHeadAsync(stream, 404, "Not Found", [], 0);
            return;
        }
        if (isHead && Interlocked.Increment(ref _headCount) >= HoldBlobsUntilHeads) _headsArrived.TrySetResult();
        string repo = parts[0] + "/" + parts[1];
        string revision = parts[3];
        string file = string.Join('/', parts[4..]);
        if (Renamed.TryGetValue(repo, out var newRepo))
        {
            await WriteHeadAsync(stream, 307, "Temporary Redirect", [("Location", $"/{newRepo}/resolve/{parts[3]}/{string.Join('/', parts[4..])}")], 0);
            return;
        }
        List<HubFile> inRepo;
        lock (_files) inRepo = _files.Where(f => f.Repo == repo).ToList();
        if (inRepo.Count == 0)
        {
            // The Hub does not tell a missing repository from a private one: 401 RepoNotFound.
            await WriteHeadAsync(stream, 401, "Unauthorized", [("X-Error-Code", "RepoNotFound")], 0);
            return;
        }
        if (GatedRepos.Contains(repo) && auth != "Bearer " + ValidToken)
        {
            await WriteHeadAsync(stream, 401, "Unauthorized", [("X-Error-Code", "GatedRepo")], 0);
            return;
        }
        var match = inRepo.FirstOrDefault(f => f.Path == file && (revision == "main" || revision == f.Commit));
        if (match == null)
        {
            bool revisionKnown = revision == "main" || inRepo.Any(f => f.Commit == revision);
            await WriteHeadAsync(stream, 404, "Not Found", [("X-Error-Code", revisionKnown ? "EntryNotFound" : "RevisionNotFound")], 0);
            return;
        }
        if (match.Lfs)
        {
            await WriteHeadAsync(stream, 302, "Found",
            [
                ("Location", $"{BlobEndpoint ?? Endpoint}/blobs/{match.Sha256}"),
                ("X-Repo-Commit", match.Commit),
                ("X-Linked-Etag", $"\"{match.Sha256}\""),
                ("X-Linked-Size", (match.AnnouncedSize ?? match.Content.Length).ToString()),
                ("ETag", "W/\"not-the-blob-name\""),
            ], 0);
            return;
        }
        await WriteHeadAsync(stream, 200, "OK", [("X-Repo-Commit", match.Commit), ("ETag", $"\"{match.GitBlobSha1}\"")], match.Content.Length);
        if (!isHead) await stream.WriteAsync(match.Content);
    }

    private async Task ServeBlobAsync(TcpClient client, NetworkStream stream, HubFile blob, string? range, bool isHead)
    {
        if (!isHead && Interlocked.Decrement(ref UnavailableLeft) >= 0)
        {
            await WriteHeadAsync(stream, 503, "Service Unavailable", [], 0);
            return;
        }
        byte[] content = blob.Content;
        if (ExtraBytes > 0) content = [.. content, .. new byte[ExtraBytes]];
        if (CorruptBlobs)
        {
            content = (byte[])content.Clone();
            content[content.Length / 3] ^= 0x5A;
        }
        long start = 0;
        if (IgnoreRange) range = null;
        if (range != null && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
            start = long.Parse(range["bytes=".Length..^1]);
        if (start >= content.Length && range != null)
        {
            await WriteHeadAsync(stream, 416, "Range Not Satisfiable", [("Content-Range", $"bytes */{content.Length}")], 0);
            return;
        }
        var body = content.AsMemory((int)start);
        if (range != null)
            await WriteHeadAsync(stream, 206, "Partial Content", [("Content-Range", $"bytes {start}-{content.Length - 1}/{content.Length}")], body.Length);
        else
            await WriteHeadAsync(stream, 200, "OK", [("ETag", $"\"{blob.Sha256}\"")], body.Length);
        if (isHead) return;

        if (HoldBlobsUntilHeads > 0)
        {
            try
            {
                await _headsArrived.Task.WaitAsync(TimeSpan.FromSeconds(20));
            }
            catch (TimeoutException) { }
        }
        if (Interlocked.Decrement(ref _dropsLeft) >= 0)
        {
            await stream.WriteAsync(body[..(body.Length / 2)]);
            await stream.FlushAsync();
            // Close cleanly before the announced length: every byte sent arrives (a reset could discard some),
            // so the client's resume offset is exactly half.
            client.Client.Shutdown(SocketShutdown.Both);
            client.Client.Close();
            return;
        }
        await stream.WriteAsync(body);
    }

    private static async Task WriteHeadAsync(NetworkStream stream, int status, string reason, (string, string)[] headers, long contentLength)
    {
        var sb = new StringBuilder();
        sb.Append($"HTTP/1.1 {status} {reason}\r\n");
        foreach (var (k, v) in headers) sb.Append($"{k}: {v}\r\n");
        sb.Append($"Content-Length: {contentLength}\r\nConnection: close\r\n\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(sb.ToString()));
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            _acceptLoop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException) { }
    }
}

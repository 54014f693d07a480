using System.Security.Cryptography;
using QuantLlama.Hub;

namespace QuantLlama.Tests.Hub;

/// <summary>The Hub client against a local fake Hub (127.0.0.1 only): cache layout, no-request reuse, offline mode,
/// resume, checksum rejection, concurrent downloads and the errors a user can act on.</summary>
public sealed class HubClientTests : IDisposable
{
    private const string Repo = "ggml-org/models";
    private const string File = "tinyllamas/stories260K.gguf";
    private readonly FakeHubServer _server = new();
    private readonly string _cacheDir = TestPaths.NewTempDirectory();
    private readonly byte[] _content = RandomNumberGenerator.GetBytes(300_000);

    private HubOptions Options(bool offline = false, string? token = null, int maxAttempts = 5) => new()
    {
        Endpoint = _server.Endpoint,
        CacheDirectory = _cacheDir,
        Offline = offline,
        Token = token,
        MaxAttempts = maxAttempts,
        RetryDelay = TimeSpan.Zero,
        LockTimeout = TimeSpan.FromSeconds(60),
    };

    private string Download(HubOptions? options = null, string repo = Repo, string file = File, string revision = "main")
    {
        using var client = new HubClient(options ?? Options());
        return client.Download(repo, file, revision);
    }

    private string RepoFolder => Path.Combine(_cacheDir, "models--ggml-org--models");

    [Fact]
    public void FirstDownloadFillsTheHuggingFaceCacheLayout()
    {
        var hubFile = _server.Add(Repo, File, _content);

        string path = Download();

        string blob = Path.Combine(RepoFolder, "blobs", hubFile.Sha256);
        string snapshot = Path.Combine(RepoFolder, "snapshots", hubFile.Commit, "tinyllamas", "stories260K.gguf");
        Assert.Equal(snapshot, path);
        Assert.Equal(_content, System.IO.File.ReadAllBytes(path));
        Assert.Equal(_content, System.IO.File.ReadAllBytes(blob));
        // As huggingface_hub makes it on Linux: a relative symlink from the snapshot to the blob.
        Assert.Equal(Path.Combine("..", "..", "..", "blobs", hubFile.Sha256), new FileInfo(snapshot).LinkTarget);
        Assert.Equal(hubFile.Commit, System.IO.File.ReadAllText(Path.Combine(RepoFolder, "refs", "main")));
        Assert.Single(Directory.GetFiles(Path.Combine(RepoFolder, "blobs")));
        Assert.Equal(1, _server.Count("HEAD", $"/{Repo}/resolve/main/{File}"));
        Assert.Equal(1, _server.Count("GET", "/blobs/"));
        Assert.Equal(0, _server.Count("GET", $"/{Repo}/resolve"));
        Assert.All(_server.Requests, r => Assert.Null(r.Range));
    }

    [Fact]
    public void SecondRunUsesTheCacheWithoutAnyRequest()
    {
        _server.Add(Repo, File, _content);
        string first = Download();
        int requests = _server.Requests.Count;

        string second = Download();

        Assert.Equal(first, second);
        Assert.Equal(requests, _server.Requests.Count);
    }

    [Fact]
    public void OfflineModeFindsACachedFileWithNoRequest()
    {
        _server.Add(Repo, File, _content);
        string online = Download();
        int requests = _server.Requests.Count;

        string offline = Download(Options(offline: true));

        Assert.Equal(online, offline);
        Assert.Equal(requests, _server.Requests.Count);
    }

    [Fact]
    public void OfflineModeMissNamesWhatIsMissingAndMakesNoRequest()
    {
        _server.Add(Repo, File, _content);

        var e = Assert.Throws<HubException>(() => Download(Options(offline: true), revision: "v1.0"));

        Assert.Equal(HubErrorKind.NotInCache, e.Kind);
        Assert.Contains(Repo, e.Message);
        Assert.Contains(File, e.Message);
        Assert.Contains("v1.0", e.Message);
        Assert.Contains("HF_HUB_OFFLINE", e.Message);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public void DroppedConnectionResumesWithARangeRequest()
    {
        _server.Add(Repo, File, _content);
        _server.DropsLeft = 1;

        string path = Download();

        Assert.Equal(_content, System.IO.File.ReadAllBytes(path));
        var gets = _server.Requests.Where(r => r.Method == "GET").ToList();
        Assert.Equal(2, gets.Count);
        Assert.Null(gets[0].Range);
        Assert.Equal($"bytes={_content.Length / 2}-", gets[1].Range);
    }

    [Fact]
    public void InterruptedDownloadLeavesAnIncompleteFileThatTheNextRunResumes()
    {
        var hubFile = _server.Add(Repo, File, _content);
        _server.DropsLeft = 1;

        var e = Assert.Throws<HubException>(() => Download(Options(maxAttempts: 1)));
        Assert.Equal(HubErrorKind.NoNetwork, e.Kind);
        Assert.Contains("run again to resume", e.Message);
        string incomplete = Path.Combine(RepoFolder, "blobs", hubFile.Sha256 + ".incomplete");
        Assert.Equal(_content.Length / 2, new FileInfo(incomplete).Length);

        string path = Download(Options(maxAttempts: 1));

        Assert.Equal(_content, System.IO.File.ReadAllBytes(path));
        Assert.False(System.IO.File.Exists(incomplete));
        Assert.Equal($"bytes={_content.Length / 2}-", _server.Requests.Last(r => r.Method == "GET").Range);
    }

    [Fact]
    public void CorruptedBodyIsRejectedAndNeverCached()
    {
        var hubFile = _server.Add(Repo, File, _content);
        _server.CorruptBlobs = true;

        var e = Assert.Throws<HubException>(() => Download());

        Assert.Equal(HubErrorKind.Corrupted, e.Kind);
        Assert.Contains(hubFile.Sha256, e.Message);
        Assert.Empty(Directory.GetFiles(Path.Combine(RepoFolder, "blobs")));
        Assert.False(Directory.Exists(Path.Combine(RepoFolder, "snapshots")));
        Assert.False(System.IO.File.Exists(Path.Combine(RepoFolder, "refs", "main")));
        Assert.Null(new HubCache(_cacheDir).TryGetCachedFile(Repo, "main", File));

        // A good body afterwards is accepted.
        _server.CorruptBlobs = false;
        Assert.Equal(_content, System.IO.File.ReadAllBytes(Download()));
    }

    [Fact]
    public async Task TwoConcurrentDownloadsOfOneFileBothSucceedWithOneBlob()
    {
        var hubFile = _server.Add(Repo, File, _content);
        // The first body is held until both clients have asked for the file, so they truly overlap.
        _server.HoldBlobsUntilHeads = 2;

        var a = Task.Run(() => Download());
        var b = Task.Run(() => Download());
        string[] paths = await Task.WhenAll(a, b).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(paths[0], paths[1]);
        Assert.Equal(_content, System.IO.File.ReadAllBytes(paths[0]));
        Assert.Equal(2, _server.Count("HEAD", $"/{Repo}/resolve"));
        Assert.Equal(1, _server.Count("GET", "/blobs/"));
        Assert.Equal([hubFile.Sha256], Directory.GetFiles(Path.Combine(RepoFolder, "blobs")).Select(Path.GetFileName));
    }

    [Fact]
    public void GatedRepositoryAsksForATokenAndWorksWithOne()
    {
        _server.Add(Repo, File, _content);
        _server.GatedRepos.Add(Repo);

        var e = Assert.Throws<HubException>(() => Download());
        Assert.Equal(HubErrorKind.Unauthorized, e.Kind);
        Assert.Contains("HF_TOKEN", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        string path = Download(Options(token: _server.ValidToken));
        Assert.Equal(_content, System.IO.File.ReadAllBytes(path));
        Assert.Contains(_server.Requests, r => r.Method == "HEAD" && r.Authorization == "Bearer " + _server.ValidToken);
    }

    [Fact]
    public void TokenIsNotSentToTheHostThatServesTheBytes()
    {
        using var cdn = new FakeHubServer();
        var hubFile = _server.Add(Repo, File, _content);
        cdn.Add(Repo, File, _content, hubFile.Commit);
        _server.GatedRepos.Add(Repo);
        _server.BlobEndpoint = cdn.Endpoint;

        string path = Download(Options(token: _server.ValidToken));

        Assert.Equal(_content, System.IO.File.ReadAllBytes(path));
        Assert.Equal(0, _server.Count("GET", "/"));
        var blobGet = Assert.Single(cdn.Requests);
        Assert.Equal("GET", blobGet.Method);
        Assert.Null(blobGet.Authorization);
    }

    [Fact]
    public void ServerThatIgnoresRangeMakesTheDownloadStartOver()
    {
        var hubFile = _server.Add(Repo, File, _content);
        _server.DropsLeft = 1;
        _server.IgnoreRange = true;

        string path = Download();

        Assert.Equal(_content, System.IO.File.ReadAllBytes(path));
        Assert.Equal($"bytes={_content.Length / 2}-", _server.Requests.Last(r => r.Method == "GET").Range);
        Assert.Equal(hubFile.Sha256, Convert.ToHexStringLower(SHA256.HashData(System.IO.File.ReadAllBytes(path))));
    }

    [Fact]
    public void BusyServerIsRetried()
    {
        _server.Add(Repo, File, _content);
        _server.UnavailableLeft = 2;

        string path = Download();

        Assert.Equal(_content, System.IO.File.ReadAllBytes(path));
        Assert.Equal(3, _server.Count("GET", "/blobs/"));
    }

    [Fact]
    public void BodyLongerThanAnnouncedIsCutOffAndNotCached()
    {
        _server.Add(Repo, File, _content);
        _server.ExtraBytes = 5_000_000;

        var e = Assert.Throws<HubException>(() => Download(Options(maxAttempts: 1)));

        Assert.Equal(HubErrorKind.Corrupted, e.Kind);
        Assert.Empty(Directory.GetFiles(Path.Combine(RepoFolder, "blobs")));
    }

    [Fact]
    public void StaleIncompleteFileLongerThanTheBlobIsDiscarded()
    {
        var hubFile = _server.Add(Repo, File, _content);
        Directory.CreateDirectory(Path.Combine(RepoFolder, "blobs"));
        string incomplete = Path.Combine(RepoFolder, "blobs", hubFile.Sha256 + ".incomplete");
        System.IO.File.WriteAllBytes(incomplete, new byte[_content.Length + 10]);

        string path = Download();

        Assert.Equal(_content, System.IO.File.ReadAllBytes(path));
        Assert.Null(_server.Requests.Single(r => r.Method == "GET").Range);
    }

    [Fact]
    public void MissingRepositoryFileAndRevisionAreToldApart()
    {
        _server.Add(Repo, File, _content);

        var noRepo = Assert.Throws<HubException>(() => Download(repo: "nobody/nothing"));
        Assert.Equal(HubErrorKind.RepositoryNotFound, noRepo.Kind);
        Assert.Contains("nobody/nothing", noRepo.Message);

        var noFile = Assert.Throws<HubException>(() => Download(file: "missing.gguf"));
        Assert.Equal(HubErrorKind.FileNotFound, noFile.Kind);
        Assert.Contains("missing.gguf", noFile.Message);

        var noRevision = Assert.Throws<HubException>(() => Download(revision: "no-such-branch"));
        Assert.Equal(HubErrorKind.FileNotFound, noRevision.Kind);
        Assert.Contains("no-such-branch", noRevision.Message);
        Assert.False(Directory.Exists(Path.Combine(RepoFolder, "blobs")));
    }

    [Fact]
    public void UnreachableEndpointIsReportedAsNoNetwork()
    {
        // A port that was just free on 127.0.0.1 and now has no listener: the connection is refused.
        var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        int port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();

        var e = Assert.Throws<HubException>(() => Download(Options() with { Endpoint = $"http://127.0.0.1:{port}" }));

        Assert.Equal(HubErrorKind.NoNetwork, e.Kind);
        Assert.Contains("HF_HUB_OFFLINE", e.Message);
    }

    [Fact]
    public void PlainGitFileIsNamedByItsEtagAndPinnedRevisionNeedsNoRef()
    {
        byte[] text = "{\"hello\": 1}"u8.ToArray();
        var hubFile = _server.Add("owner/small", "config.json", text, lfs: false);

        using var client = new HubClient(Options());
        string path = client.Download("owner/small", "config.json", hubFile.Commit);

        string folder = Path.Combine(_cacheDir, "models--owner--small");
        Assert.Equal(text, System.IO.File.ReadAllBytes(path));
        Assert.True(System.IO.File.Exists(Path.Combine(folder, "blobs", hubFile.GitBlobSha1)));
        Assert.Equal(Path.Combine(folder, "snapshots", hubFile.Commit, "config.json"), path);
        Assert.False(Directory.Exists(Path.Combine(folder, "refs")));
        Assert.Equal(path, new HubCache(_cacheDir).TryGetCachedFile("owner/small", hubFile.Commit, "config.json"));
    }

    [Fact]
    public void StoredFileIsFoundOfflineByWhich()
    {
        string source = Path.Combine(_cacheDir, "source.gguf");
        System.IO.File.WriteAllBytes(source, _content);
        var cache = new HubCache(Path.Combine(_cacheDir, "hub"));

        string stored = cache.Store("ggml-org/models", "main", null, "tinyllamas/stories260K.gguf", source);

        var offline = Options(offline: true) with { CacheDirectory = cache.Root };
        var resolved = ModelLocator.Locate(null, "stories260k", offline);
        Assert.Equal(stored, resolved.Path);
        Assert.Equal(_content, System.IO.File.ReadAllBytes(resolved.Path));
        Assert.Equal("stories260k", resolved.Entry!.Name);
        Assert.Equal(ChatTemplateFamily.None, resolved.Template);
        string sha = Convert.ToHexStringLower(SHA256.HashData(_content));
        Assert.True(System.IO.File.Exists(Path.Combine(cache.Root, "models--ggml-org--models", "blobs", sha)));
        // The hub form of --model finds the same file and the same entry.
        var byReference = ModelLocator.Locate("ggml-org/models/tinyllamas/stories260K.gguf", "7b", offline);
        Assert.Equal(stored, byReference.Path);
        Assert.Equal("stories260k", byReference.Entry!.Name);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public void RenamedRepositoryIsFollowedAndCachedUnderTheNameAskedFor()
    {
        var hubFile = _server.Add("ggml-org/models-moved", File, _content);
        _server.Renamed[Repo] = "ggml-org/models-moved";

        string path = Download();

        Assert.Equal(Path.Combine(RepoFolder, "snapshots", hubFile.Commit, "tinyllamas", "stories260K.gguf"), path);
        Assert.Equal(_content, System.IO.File.ReadAllBytes(path));
        Assert.Equal(1, _server.Count("HEAD", "/ggml-org/models-moved/resolve/main/"));
    }

    [Fact]
    public void FileLargerThanTheFreeSpaceIsRefusedBeforeDownloading()
    {
        var hubFile = _server.Add(Repo, File, _content);
        hubFile.AnnouncedSize = 1L << 60; // an exabyte: no disk has that free

        var e = Assert.Throws<HubException>(() => Download());

        Assert.Equal(HubErrorKind.DiskFull, e.Kind);
        Assert.Contains("HF_HUB_CACHE", e.Message);
        Assert.Equal(0, _server.Count("GET", "/"));
    }

    [Fact]
    public void ProgressIsReportedFromStartToFinish()
    {
        _server.Add(Repo, File, _content);
        var progress = new RecordingProgress();

        Download(Options() with { Progress = progress });

        Assert.Equal([$"start {Repo}/{File} {_content.Length} 0", $"finish True"], progress.Events.Where(e => !e.StartsWith("report")));
        Assert.Equal($"report {_content.Length}", progress.Events[^2]);
    }

    private sealed class RecordingProgress : IDownloadProgress
    {
        public List<string> Events { get; } = [];
        public void Start(string label, long? totalBytes, long resumedFrom) => Events.Add($"start {label} {totalBytes} {resumedFrom}");
        public void Report(long bytesDone) => Events.Add($"report {bytesDone}");
        public void Finish(bool succeeded) => Events.Add($"finish {succeeded}");
        public void Note(string message) => Events.Add($"note {message}");
    }

    public void Dispose()
    {
        _server.Dispose();
        try
        {
            Directory.Delete(_cacheDir, recursive: true);
        }
        catch (IOException) { }
    }
}

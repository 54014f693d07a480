using System.Diagnostics;

namespace QuantLlama.Hub;

/// <summary>
/// An inter-process lock: a lock file opened with <see cref="FileShare.None"/>, which .NET enforces with an
/// exclusive advisory lock (flock on Unix), the same kind Python's <c>filelock</c> takes on huggingface_hub's
/// lock files. The file is left in place: deleting it could let two processes lock different inodes.
/// </summary>
internal sealed class FileLock : IDisposable
{
    private readonly FileStream _stream;

    private FileLock(FileStream stream) => _stream = stream;

    public static FileLock Acquire(string path, TimeSpan timeout, IDownloadProgress? progress, string what)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var clock = Stopwatch.StartNew();
        bool noted = false;
        int delayMs = 10;
        while (true)
        {
            try
            {
                return new FileLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1));
            }
            catch (IOException) when (clock.Elapsed < timeout)
            {
                if (!noted)
                {
                    progress?.Note($"waiting for another process downloading {what} (lock {path})");
                    noted = true;
                }
                Thread.Sleep(delayMs);
                delayMs = Math.Min(delayMs * 2, 250);
            }
            catch (IOException e)
            {
                throw new HubException(HubErrorKind.Server,
                    $"{what}: another process has held the download lock {path} for {timeout.TotalMinutes:F0} minutes; if none is running, delete that file", e);
            }
        }
    }

    public void Dispose() => _stream.Dispose();
}

using System.IO.MemoryMappedFiles;

namespace QuantLlama.Gguf;

/// <summary>
/// A whole file mapped read-only, with a pointer to its first byte held until disposal: the one place the model
/// readers (GGUF, legacy ggml, llama2.c) open, map and release their files.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _mapping;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _pointer;

    public string Path { get; }
    /// <summary>The file's length (of its target when the path is a symlink).</summary>
    public long Length { get; }
    /// <summary>The first byte of the mapping; null once disposed.</summary>
    public byte* Pointer => _pointer;

    private MappedFile(string path, long length, MemoryMappedFile mapping, MemoryMappedViewAccessor view, byte* pointer)
    {
        Path = path;
        Length = length;
        _mapping = mapping;
        _view = view;
        _pointer = pointer;
    }

    /// <summary>
    /// The file a path names, following symlinks to their final target: a symlink (as in the Hugging Face cache's
    /// snapshots) reports its own length, not its target's.
    /// </summary>
    public static FileInfo Resolve(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget != null && info.ResolveLinkTarget(returnFinalTarget: true) is FileInfo target) info = target;
        return info;
    }

    /// <summary>Maps a file read-only; a missing file is a <see cref="FileNotFoundException"/>, an empty one a format error.</summary>
    public static MappedFile Open(string path)
    {
        var info = Resolve(path);
        if (!info.Exists) throw new FileNotFoundException($"{path}: no such file", path);
        if (info.Length == 0) throw new GgufFormatException(path, 0, "the file is empty");
        var mapping = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            view = mapping.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            acquired = true;
            return new MappedFile(path, info.Length, mapping, view, p + view.PointerOffset);
        }
        catch
        {
            if (acquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            mapping.Dispose();
            throw;
        }
    }

    /// <summary>Maps a file and hands it to a parser that takes ownership; if the parser throws, the mapping is released.</summary>
    public static T Open<T>(string path, Func<MappedFile, T> parse)
    {
        var file = Open(path);
        try
        {
            return parse(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Hands the whole pages of [<paramref name="start"/>, + <paramref name="bytes"/>) back to the system, on Linux:
    /// they leave the process's resident memory (the page cache keeps them) and a later read maps them again, with the
    /// same bytes. For data the process has copied and no longer reads. A range outside this mapping, or another
    /// system, is left alone.
    /// </summary>
    public void ReleasePages(byte* start, long bytes)
    {
        if (!OperatingSystem.IsLinux() || _pointer == null || start < _pointer || bytes <= 0 || bytes > Length - (start - _pointer)) return;
        long page = Environment.SystemPageSize;
        // Only the pages wholly inside the range: the ones it shares with its neighbours may still be read.
        nint first = ((nint)start + (nint)page - 1) & ~((nint)page - 1);
        nint end = ((nint)start + (nint)bytes) & ~((nint)page - 1);
        if (end <= first) return;
        try
        {
            _ = madvise((void*)first, (nuint)(end - first), MadviseDontNeed);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    private const int MadviseDontNeed = 4; // MADV_DONTNEED

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = false)]
    private static extern int madvise(void* address, nuint length, int advice);

    /// <summary>Releases the pointer and the mapping; safe to call more than once.</summary>
    public void Dispose()
    {
        if (_pointer == null) return;
        _pointer = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mapping.Dispose();
    }
}

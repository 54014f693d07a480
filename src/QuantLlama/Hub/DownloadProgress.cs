using System.Diagnostics;

namespace QuantLlama.Hub;

/// <summary>Receives a download's progress. Calls come from the downloading thread, in order.</summary>
public interface IDownloadProgress
{
    /// <summary>A download begins; <paramref name="resumedFrom"/> bytes were already on disk.</summary>
    void Start(string label, long? totalBytes, long resumedFrom);

    /// <summary>Bytes on disk so far (including resumed ones).</summary>
    void Report(long bytesDone);

    /// <summary>The download ended (successfully or not).</summary>
    void Finish(bool succeeded);

    /// <summary>A one-line note (waiting for a lock, retrying after a dropped connection).</summary>
    void Note(string message);
}

/// <summary>
/// Progress for a console: a one-line bar redrawn in place (bytes, rate, time left) when the writer is a terminal,
/// otherwise a line when a download starts and one when it ends, so logs stay readable.
/// </summary>
public sealed class ConsoleDownloadProgress : IDownloadProgress
{
    private readonly TextWriter _out;
    private readonly bool _interactive;
    private readonly Stopwatch _clock = new();
    private string _label = "";
    private long? _total;
    private long _resumedFrom;
    private long _done;
    private long _lastDrawTicks;
    private int _lastLineLength;

    private readonly int _width;

    /// <param name="width">Terminal columns; a longer bar line would wrap and break the in-place redraw (0: unlimited).</param>
    public ConsoleDownloadProgress(TextWriter output, bool interactive, int width = 0)
    {
        _out = output;
        _interactive = interactive;
        _width = width;
    }

    public void Start(string label, long? totalBytes, long resumedFrom)
    {
        _label = label;
        _total = totalBytes;
        _resumedFrom = _done = resumedFrom;
        _clock.Restart();
        _lastDrawTicks = 0;
        string size = totalBytes is long t ? $" ({FormatBytes(t)})" : "";
        string resume = resumedFrom > 0 ? $", resuming at {FormatBytes(resumedFrom)}" : "";
        if (_interactive) Draw(force: true);
        else _out.WriteLine($"downloading {label}{size}{resume}");
    }

    public void Report(long bytesDone)
    {
        _done = bytesDone;
        if (_interactive) Draw(force: false);
    }

    public void Finish(bool succeeded)
    {
        _clock.Stop();
        double seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-3);
        string summary = $"{_label}: {FormatBytes(_done)} in {seconds:F1}s ({FormatBytes((long)((_done - _resumedFrom) / seconds))}/s)";
        if (_interactive)
        {
            Draw(force: true);
            _out.WriteLine();
        }
        else if (succeeded)
        {
            _out.WriteLine($"downloaded {summary}");
        }
        if (!succeeded) _out.WriteLine($"download stopped: {summary}");
    }

    public void Note(string message)
    {
        if (_interactive && _lastLineLength > 0)
        {
            _out.Write('\r' + new string(' ', _lastLineLength) + '\r');
            _lastLineLength = 0;
        }
        _out.WriteLine(message);
    }

    private void Draw(bool force)
    {
        long now = _clock.ElapsedTicks;
        // Redraw at most ten times a second: a terminal write per network read would cost more than the read.
        if (!force && now - _lastDrawTicks < Stopwatch.Frequency / 10) return;
        _lastDrawTicks = now;
        double seconds = _clock.Elapsed.TotalSeconds;
        double rate = seconds > 0.2 ? (_done - _resumedFrom) / seconds : 0;
        string numbers;
        if (_total is long total && total > 0)
        {
            double fraction = Math.Clamp((double)_done / total, 0, 1);
            const int barWidth = 24;
            int filled = (int)(fraction * barWidth);
            string bar = new string('#', filled) + new string('-', barWidth - filled);
            string eta = rate > 0 ? FormatDuration((total - _done) / rate) : "--:--";
            numbers = $" [{bar}] {fraction * 100,5:F1}% {FormatBytes(_done)}/{FormatBytes(total)} {FormatBytes((long)rate)}/s eta {eta}";
        }
        else
        {
            numbers = $" {FormatBytes(_done)} {FormatBytes((long)rate)}/s";
        }
        string label = _label;
        if (_width > 0 && label.Length + numbers.Length > _width - 1)
        {
            // A line wider than the terminal would wrap and break the redraw: keep the label's end (the file name).
            int room = Math.Max(8, _width - 1 - numbers.Length);
            if (label.Length > room) label = "…" + label[^(room - 1)..];
        }
        string line = label + numbers;
        if (_width > 0 && line.Length > _width - 1) line = line[..(_width - 1)];
        int pad = Math.Max(0, _lastLineLength - line.Length);
        _out.Write('\r' + line + new string(' ', pad));
        _out.Flush();
        _lastLineLength = line.Length;
    }

    public static string FormatBytes(long bytes) => bytes switch
    {
        < 1000 => $"{bytes} B",
        < 1_000_000 => $"{bytes / 1e3:F1} kB",
        < 1_000_000_000 => $"{bytes / 1e6:F1} MB",
        _ => $"{bytes / 1e9:F2} GB",
    };

    private static string FormatDuration(double seconds)
    {
        if (double.IsNaN(seconds) || seconds > 99 * 3600) return "--:--";
        var t = TimeSpan.FromSeconds(Math.Max(0, seconds));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:D2}:{t.Seconds:D2}" : $"{t.Minutes:D2}:{t.Seconds:D2}";
    }
}

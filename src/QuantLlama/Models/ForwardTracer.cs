using System.Diagnostics;
using System.Text;

namespace QuantLlama.Models;

public enum TraceSpan
{
    Embedding,
    Attention,
    FeedForward,
    Experts,
    Output,
    Sampling,
}

/// <summary>
/// Records spans of the forward pass into a preallocated buffer (no allocation while recording) and writes them as a
/// Chrome trace (chrome://tracing, Perfetto), as candle's --tracing does. Spans past the capacity are dropped.
/// </summary>
public sealed class ForwardTracer(int capacity = 1 << 20)
{
    private readonly (TraceSpan Span, long Start, long End)[] _events = new (TraceSpan, long, long)[capacity];
    private readonly long _origin = Stopwatch.GetTimestamp();
    private int _count;

    public int Count => _count;

    public long Begin() => Stopwatch.GetTimestamp();

    public void End(TraceSpan span, long start)
    {
        int i = Interlocked.Increment(ref _count) - 1;
        if (i < _events.Length) _events[i] = (span, start, Stopwatch.GetTimestamp());
        else _count = _events.Length;
    }

    public void Write(string path)
    {
        var sb = new StringBuilder("[\n");
        int n = Math.Min(_count, _events.Length);
        double toMicros = 1e6 / Stopwatch.Frequency;
        for (int i = 0; i < n; i++)
        {
            var (span, start, end) = _events[i];
            sb.Append(i == 0 ? "" : ",\n")
              .Append("{\"name\":\"").Append(span).Append("\",\"ph\":\"X\",\"pid\":1,\"tid\":1,\"ts\":")
              .Append(((start - _origin) * toMicros).ToString("F3", System.Globalization.CultureInfo.InvariantCulture))
              .Append(",\"dur\":")
              .Append(((end - start) * toMicros).ToString("F3", System.Globalization.CultureInfo.InvariantCulture))
              .Append('}');
        }
        sb.Append("\n]\n");
        File.WriteAllText(path, sb.ToString());
    }
}

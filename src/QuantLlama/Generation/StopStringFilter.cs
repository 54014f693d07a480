namespace QuantLlama.Generation;

/// <summary>
/// Holds back generated text while its end could be the start of a stop string, so no part of a stop string is
/// ever released, even when the model writes it across several tokens.
/// </summary>
internal sealed class StopStringFilter(IReadOnlyList<string> stopStrings)
{
    private readonly System.Text.StringBuilder _pending = new();

    /// <summary>
    /// Adds <paramref name="text"/>; returns what is now safe to release. When a stop string appears, returns the
    /// text before it and sets <paramref name="stopped"/>.
    /// </summary>
    public string Push(string text, out bool stopped)
    {
        stopped = false;
        if (stopStrings.Count == 0) return text;
        _pending.Append(text);
        string pending = _pending.ToString();
        int first = -1;
        foreach (string stop in stopStrings)
        {
            int at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first)) first = at;
        }
        if (first >= 0)
        {
            stopped = true;
            _pending.Clear();
            return pending[..first];
        }
        int hold = 0;
        foreach (string stop in stopStrings)
            for (int length = Math.Min(stop.Length - 1, pending.Length); length > hold; length--)
                if (pending.AsSpan(pending.Length - length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    hold = length;
                    break;
                }
        _pending.Remove(0, pending.Length - hold);
        return pending[..^hold];
    }

    /// <summary>The end of the generation: <paramref name="text"/> (the decoder's last bytes) and everything held back.</summary>
    public string Flush(string text)
    {
        string ready = Push(text, out bool stopped);
        if (stopped) return ready;
        ready += _pending.ToString();
        _pending.Clear();
        return ready;
    }
}

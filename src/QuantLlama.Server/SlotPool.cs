using QuantLlama.Generation;
using QuantLlama.Models;

namespace QuantLlama.Server;

/// <summary>One conversation slot: a KV cache on the shared model and the chat session that generates in it.</summary>
public sealed class Slot
{
    internal Slot(int index, ChatSession session)
    {
        Index = index;
        Session = session;
    }

    public int Index { get; }

    public ChatSession Session { get; }

    public InferenceContext Context => Session.Context;

    /// <summary>When the slot was last taken, in the pool's own count of acquisitions (0: never).</summary>
    internal long LastUsed { get; set; }

    /// <summary>How many leading tokens of <paramref name="tokens"/> this slot's cache already holds.</summary>
    public int CommonPrefixLength(IReadOnlyList<int> tokens)
    {
        var cached = Context.Tokens;
        int limit = Math.Min(cached.Count, tokens.Count), n = 0;
        while (n < limit && cached[n] == tokens[n]) n++;
        return n;
    }
}

/// <summary>The server refuses a request because every slot is busy and the queue is full.</summary>
public sealed class QueueFullException() : Exception("the server is busy: every slot is in use and the queue is full");

/// <summary>
/// The slots of a server and the requests waiting for them. A request takes the free slot whose cache shares the
/// longest prefix with its tokens, so a client that re-sends its conversation lands where the conversation is
/// cached; when no free slot holds at least half of the request, it takes the least recently used one instead
/// (llama-server's rule with its default similarity of 0.5), so that new conversations do not keep evicting the one
/// cache that merely shares their first token. With no slot free a request waits, first come first served, in a
/// bounded queue.
/// </summary>
public sealed class SlotPool : IDisposable
{
    private readonly Slot[] _slots;
    private readonly bool[] _busy;
    private readonly int _maxQueue;
    private readonly LinkedList<TaskCompletionSource<Slot>> _waiting = new();
    private readonly Lock _lock = new();
    private long _acquisitions;

    internal SlotPool(IEnumerable<Slot> slots, int maxQueue)
    {
        _slots = [.. slots];
        _busy = new bool[_slots.Length];
        _maxQueue = maxQueue;
    }

    public int Count => _slots.Length;

    public int BusyCount
    {
        get { lock (_lock) return _busy.Count(b => b); }
    }

    public int QueueLength
    {
        get { lock (_lock) return _waiting.Count; }
    }

    /// <summary>
    /// A slot for <paramref name="tokens"/>, held until the returned SlotHold is disposed. Throws <see cref="QueueFullException"/>
    /// when none is free and the queue is full, and <see cref="OperationCanceledException"/> if cancelled while waiting.
    /// </summary>
    public async Task<SlotHold> AcquireAsync(IReadOnlyList<int> tokens, CancellationToken cancel = default)
    {
        TaskCompletionSource<Slot> turn;
        LinkedListNode<TaskCompletionSource<Slot>> node;
        lock (_lock)
        {
            cancel.ThrowIfCancellationRequested();
            if (BestFreeSlot(tokens) is { } free)
            {
                _busy[free.Index] = true;
                free.LastUsed = ++_acquisitions;
                return new SlotHold(this, free);
            }
            if (_waiting.Count >= _maxQueue) throw new QueueFullException();
            turn = new TaskCompletionSource<Slot>(TaskCreationOptions.RunContinuationsAsynchronously);
            node = _waiting.AddLast(turn);
        }
        using (cancel.Register(() =>
               {
                   lock (_lock)
                   {
                       // Still waiting (not handed a slot): leave the queue.
                       if (node.List == null) return;
                       _waiting.Remove(node);
                   }
                   turn.TrySetCanceled(cancel);
               }))
        {
            return new SlotHold(this, await turn.Task.ConfigureAwait(false));
        }
    }

    private Slot? BestFreeSlot(IReadOnlyList<int> tokens)
    {
        Slot? longest = null, leastRecent = null;
        int longestLength = 0;
        foreach (var slot in _slots)
        {
            if (_busy[slot.Index]) continue;
            int length = slot.CommonPrefixLength(tokens);
            if (length > longestLength) (longest, longestLength) = (slot, length);
            if (leastRecent == null || slot.LastUsed < leastRecent.LastUsed) leastRecent = slot;
        }
        return longest != null && 2 * longestLength >= tokens.Count ? longest : leastRecent;
    }

    internal void Release(Slot slot)
    {
        TaskCompletionSource<Slot>? next;
        lock (_lock)
        {
            next = _waiting.First?.Value;
            if (next == null)
            {
                _busy[slot.Index] = false;
                return;
            }
            _waiting.RemoveFirst(); // the slot passes to the longest waiting request, still busy
            slot.LastUsed = ++_acquisitions;
        }
        next.SetResult(slot);
    }

    public void Dispose()
    {
        foreach (var slot in _slots) slot.Context.Dispose();
    }
}

/// <summary>A slot held by one request; disposing it frees the slot (or hands it to the next waiting request).</summary>
public sealed class SlotHold : IDisposable
{
    private SlotPool? _pool;

    internal SlotHold(SlotPool pool, Slot slot)
    {
        _pool = pool;
        Slot = slot;
    }

    public Slot Slot { get; }

    public void Dispose() => Interlocked.Exchange(ref _pool, null)?.Release(Slot);
}

namespace QuantLlama.Compute;

/// <summary>
/// A persistent pool of worker threads for the matrix kernels. The calling thread works too, so
/// <see cref="ThreadCount"/> threads in total share a job. Between jobs workers spin on a job counter for a short
/// while (a forward pass submits hundreds of jobs microseconds apart, as llama.cpp's threads spin between
/// operations), then sleep on a semaphore until woken. Jobs are described by a function pointer and a context
/// pointer, so running one allocates nothing. One job runs at a time; a job submitted while another runs (another
/// thread, or from inside a job) simply runs on its caller's thread.
/// </summary>
public static unsafe class WorkerPool
{
    private sealed class Worker
    {
        public readonly SemaphoreSlim Wake = new(0);
        public volatile bool Stop;
        /// <summary>1 while the worker is (about to be) blocked on <see cref="Wake"/>.</summary>
        public int Sleeping;
    }

    /// <summary>How long an idle worker spins for the next job before it sleeps.</summary>
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 1000; // 1 ms

    // Incremented (a full fence) to publish each job; workers wait for it to move past the last one they ran.
    private static int _generation;

    private static readonly object ResizeGate = new();
    private static Worker[] _workers = [];
    private static int _threadCount;
    private static int _busy;

    // The current job. Written by the submitting thread before it wakes workers (Release is a full fence).
    private static delegate*<void*, int, void> _body;
    private static void* _context;
    private static int _itemCount;
    private static int _nextItem;
    private static int _running;
    private static Exception? _failure;

    static WorkerPool() => SetThreadCount(Environment.ProcessorCount);

    /// <summary>Threads that share each job, the caller included (the CLI's -t/--threads).</summary>
    public static int ThreadCount => _threadCount;

    /// <summary>
    /// Sets how many threads share each job (the caller included); 1 runs everything on the caller. Values
    /// below 1 throw; the default is <see cref="Environment.ProcessorCount"/>.
    /// </summary>
    public static void SetThreadCount(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), $"thread count must be at least 1, not {threads}");
        lock (ResizeGate)
        {
            // Wait for a running job to finish, and keep new ones inline while the workers change.
            var spin = new SpinWait();
            while (Interlocked.CompareExchange(ref _busy, 1, 0) != 0) spin.SpinOnce();
            try
            {
                foreach (var w in _workers) w.Stop = true;
                Interlocked.Increment(ref _generation);
                foreach (var w in _workers) w.Wake.Release();
                var workers = new Worker[threads - 1];
                for (int i = 0; i < workers.Length; i++)
                {
                    var w = workers[i] = new Worker();
                    int seen = Volatile.Read(ref _generation);
                    var thread = new Thread(() => WorkerLoop(w, seen)) { IsBackground = true, Name = $"QuantLlama worker {i + 1}" };
                    thread.Start();
                }
                _workers = workers;
                _threadCount = threads;
            }
            finally
            {
                Volatile.Write(ref _busy, 0);
            }
        }
    }

    /// <summary>
    /// Runs body(context, i) for every i in [0, count), spread over the pool; returns when all are done.
    /// Items are claimed one at a time, so make each a reasonable chunk of work.
    /// </summary>
    internal static void Run(int count, delegate*<void*, int, void> body, void* context)
    {
        if (count <= 0) return;
        var workers = _workers;
        if (count == 1 || workers.Length == 0 || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int i = 0; i < count; i++) body(context, i);
            return;
        }
        try
        {
            workers = _workers;
            _body = body;
            _context = context;
            _itemCount = count;
            _nextItem = 0;
            _failure = null;
            _running = workers.Length;
            Interlocked.Increment(ref _generation);
            // Only sleeping workers need the semaphore; spinning ones see the new generation by themselves.
            foreach (var w in workers)
                if (Volatile.Read(ref w.Sleeping) != 0) w.Wake.Release();
            try
            {
                DoItems();
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
                Interlocked.Exchange(ref _nextItem, int.MaxValue / 2);
            }
            var spin = new SpinWait();
            while (Volatile.Read(ref _running) != 0) spin.SpinOnce(sleep1Threshold: -1);
            if (_failure != null) throw new AggregateException("a worker thread failed", _failure);
        }
        finally
        {
            _body = null;
            _context = null;
            Volatile.Write(ref _busy, 0);
        }
    }

    private static void DoItems()
    {
        int count = _itemCount;
        var body = _body;
        void* context = _context;
        int i;
        while ((i = Interlocked.Increment(ref _nextItem) - 1) < count) body(context, i);
    }

    private static void WorkerLoop(Worker self, int seen)
    {
        while (true)
        {
            WaitForJob(self, seen);
            if (self.Stop) return;
            seen = Volatile.Read(ref _generation);
            try
            {
                DoItems();
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
                Interlocked.Exchange(ref _nextItem, int.MaxValue / 2);
            }
            finally
            {
                Interlocked.Decrement(ref _running);
            }
        }
    }

    /// <summary>Spins until the generation moves past <paramref name="seen"/>; after <see cref="SpinTicks"/>, sleeps.</summary>
    private static void WaitForJob(Worker self, int seen)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        int spins = 0;
        while (Volatile.Read(ref _generation) == seen)
        {
            if (++spins < 64 || System.Diagnostics.Stopwatch.GetTimestamp() - start < SpinTicks)
            {
                Thread.SpinWait(8);
                if ((spins & 63) == 0) Thread.Yield(); // let another runnable thread in on a busy machine
                continue;
            }
            // Announce the sleep before the last check (Exchange is a full fence, as is the submitter's Increment),
            // so a job published in between either is seen here or finds Sleeping set and releases the semaphore.
            Interlocked.Exchange(ref self.Sleeping, 1);
            if (Volatile.Read(ref _generation) == seen) self.Wake.Wait();
            Volatile.Write(ref self.Sleeping, 0);
            start = System.Diagnostics.Stopwatch.GetTimestamp();
            spins = 0;
        }
    }
}

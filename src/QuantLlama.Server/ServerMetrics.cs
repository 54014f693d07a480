using System.Globalization;
using System.Text;
using QuantLlama.Generation;
using QuantLlama.Models;

namespace QuantLlama.Server;

/// <summary>Counters behind <c>GET /metrics</c> (Prometheus text format).</summary>
public sealed class ServerMetrics
{
    private long _requests, _rejected, _cancelled, _promptTokens, _cachedPromptTokens, _generatedTokens, _decodeTokens, _decodeTicks;

    public long Requests => Interlocked.Read(ref _requests);

    public long Rejected => Interlocked.Read(ref _rejected);

    public void RecordRejected() => Interlocked.Increment(ref _rejected);

    public void Record(GenerationResult result)
    {
        Interlocked.Increment(ref _requests);
        if (result.StopReason == StopReason.Cancelled) Interlocked.Increment(ref _cancelled);
        Interlocked.Add(ref _promptTokens, result.PromptTokens - result.CachedPromptTokens);
        Interlocked.Add(ref _cachedPromptTokens, result.CachedPromptTokens);
        Interlocked.Add(ref _generatedTokens, result.Tokens.Count);
        Interlocked.Add(ref _decodeTokens, result.GeneratedTokens);
        Interlocked.Add(ref _decodeTicks, result.GenerationTime.Ticks);
    }

    public string ToPrometheus(SlotPool? slots, DecodeBatcher? batcher = null)
    {
        var text = new StringBuilder();
        Write(text, "requests_total", "counter", "Completion requests served (cancelled ones included).", Requests);
        Write(text, "requests_cancelled_total", "counter", "Completion requests whose client went away before the end.", Interlocked.Read(ref _cancelled));
        Write(text, "requests_rejected_total", "counter", "Requests refused because every slot was busy and the queue full.", Rejected);
        Write(text, "prompt_tokens_total", "counter", "Prompt tokens computed (not counting cached ones).", Interlocked.Read(ref _promptTokens));
        Write(text, "prompt_tokens_cached_total", "counter", "Prompt tokens reused from a slot's cache.", Interlocked.Read(ref _cachedPromptTokens));
        Write(text, "generated_tokens_total", "counter", "Tokens generated.", Interlocked.Read(ref _generatedTokens));
        long ticks = Interlocked.Read(ref _decodeTicks);
        Write(text, "generated_tokens_per_second", "gauge", "Average generation rate over all requests, per slot.",
            ticks > 0 ? Interlocked.Read(ref _decodeTokens) / TimeSpan.FromTicks(ticks).TotalSeconds : 0);
        Write(text, "queue_length", "gauge", "Requests waiting for a slot.", slots?.QueueLength ?? 0);
        Write(text, "slots_busy", "gauge", "Slots generating.", slots?.BusyCount ?? 0);
        Write(text, "slots_total", "gauge", "Slots.", slots?.Count ?? 0);
        if (batcher != null)
        {
            Write(text, "batch_steps_total", "counter", "Batched passes through the weights.", batcher.Steps);
            Write(text, "batch_generated_rows_total", "counter", "Generated tokens those passes held (per step: the batch size).", batcher.Rows);
            Write(text, "batch_prompt_rows_total", "counter", "Prompt tokens those passes held beside the generated ones.", batcher.PromptRows);
        }
        Write(text, "resident_memory_bytes", "gauge", "The process's resident memory.", Environment.WorkingSet);
        Write(text, "managed_heap_bytes", "gauge", "The managed heap's size after the last garbage collection.", GC.GetGCMemoryInfo().HeapSizeBytes);
        return text.ToString();
    }

    private static void Write(StringBuilder text, string name, string type, string help, double value)
    {
        text.Append("# HELP quantllama_").Append(name).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE quantllama_").Append(name).Append(' ').Append(type).Append('\n');
        text.Append("quantllama_").Append(name).Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
    }
}

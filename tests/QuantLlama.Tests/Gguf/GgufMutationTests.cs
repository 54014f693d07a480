using QuantLlama.Gguf;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Gguf;

/// <summary>
/// Truncates and corrupts valid GGUF images thousands of times (deterministic seed): the reader must either
/// accept the result with every tensor inside the file, or reject it with a <see cref="GgufFormatException"/>.
/// Any other exception (IndexOutOfRange, Overflow, OutOfMemory, InvalidCast...) fails the test.
/// </summary>
public class GgufMutationTests
{
    /// <summary>Small valid files covering every metadata type, nesting, three versions and two alignments.</summary>
    public static byte[] SampleFile(uint version, int alignment)
    {
        var w = new GgufWriter(version)
            .Set("general.architecture", "llama")
            .Set("u8", GgufValue.From((byte)7))
            .Set("i8", GgufValue.From((sbyte)-7))
            .Set("u16", GgufValue.From((ushort)700))
            .Set("i16", GgufValue.From((short)-700))
            .Set("u32", 70000u)
            .Set("i32", -70000)
            .Set("u64", GgufValue.From(7UL << 40))
            .Set("i64", GgufValue.From(-7L << 40))
            .Set("f32", 0.5f)
            .Set("f64", GgufValue.From(0.25))
            .Set("bool", true)
            .Set("tokens", ["<unk>", "<s>", "</s>", "▁a", "b"])
            .Set("scores", [0f, -1f, -2f, -3f, -4f])
            .Set("types", [2, 3, 3, 1, 1])
            .Set("flags", GgufValue.From(new GgufArray(GgufValueType.Bool, new[] { true, false, true })))
            .Set("bytes", GgufValue.From(new GgufArray(GgufValueType.UInt8, new byte[] { 1, 2, 3 })))
            .Set("longs", GgufValue.From(new GgufArray(GgufValueType.Int64, new long[] { -1, 1L << 40 })))
            .Set("nested", GgufValue.From(new GgufArray(GgufValueType.Array, new[]
            {
                new GgufArray(GgufValueType.Float64, new[] { 1.0, 2.0 }),
                new GgufArray(GgufValueType.String, new[] { "x", "yz" }),
            })));
        if (alignment != GgufFile.DefaultAlignment) w.Set("general.alignment", (uint)alignment);
        var rng = new Random(42);
        var f32 = new float[32 * 2];
        for (int i = 0; i < f32.Length; i++) f32[i] = (float)rng.NextDouble();
        var q8 = new byte[34 * 2];
        rng.NextBytes(q8);
        var q4k = new byte[GgmlTypeInfo.TypeSize(GgmlType.Q4_K)];
        rng.NextBytes(q4k);
        w.AddTensor("a.weight", [32, 2], f32)
            .AddTensor("b.weight", GgmlType.Q8_0, [64], q8)
            .AddTensor("c.weight", GgmlType.Q4_K, [256], q4k)
            .AddTensor("d.bias", GgmlType.F16, [3], new byte[6]);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        return ms.ToArray();
    }

    private static readonly ulong[] InterestingValues =
    [
        0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 31, 32, 33, 63, 64, 255, 256, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF,
        0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, ulong.MaxValue,
        ulong.MaxValue - 1, 1UL << 31, 1UL << 32, 1UL << 62,
    ];

    [Fact]
    public unsafe void MutatedFilesNeverEscapeTheFormatException()
    {
        var samples = new List<byte[]>
        {
            SampleFile(1, 32), SampleFile(2, 32), SampleFile(3, 32), SampleFile(3, 64), SampleFile(3, 8),
        };
        var rng = new Random(20261128);
        int accepted = 0, rejected = 0;
        var failures = new List<string>();
        const int iterationsPerSample = 2000;
        for (int s = 0; s < samples.Count; s++)
        {
            byte[] original = samples[s];
            long dataStart;
            fixed (byte* p = original)
            {
                using var f = GgufFile.FromMemory(p, original.Length);
                dataStart = f.DataOffset;
            }
            for (int iteration = 0; iteration < iterationsPerSample; iteration++)
            {
                byte[] mutated = Mutate(original, dataStart, rng, out string description);
                try
                {
                    fixed (byte* p = mutated)
                    {
                        using var f = GgufFile.FromMemory(p, mutated.Length, "mutant");
                        CheckInvariants(f, mutated.Length);
                    }
                    accepted++;
                }
                catch (GgufFormatException e)
                {
                    rejected++;
                    if (e.Offset < 0 || e.Offset > mutated.Length) failures.Add($"sample {s} #{iteration} ({description}): offset {e.Offset} outside the file");
                }
                catch (Exception e)
                {
                    failures.Add($"sample {s} #{iteration} ({description}): {e.GetType().Name}: {e.Message}");
                }
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
        // Both outcomes must really happen, or the mutations test nothing.
        Assert.True(rejected > samples.Count * iterationsPerSample / 4, $"only {rejected} mutants rejected");
        Assert.True(accepted > 100, $"only {accepted} mutants accepted");
    }

    private static unsafe void CheckInvariants(GgufFile f, long length)
    {
        foreach (var (key, value) in f.Metadata.Entries) _ = key.Length + value.ToString().Length;
        Assert.True(f.DataOffset % f.Alignment == 0);
        foreach (var t in f.Tensors)
        {
            Assert.True(t.Offset >= 0 && t.ByteSize >= 0 && f.DataOffset + t.Offset + t.ByteSize <= length, $"tensor {t.Name} outside the file");
            Assert.True(t.Offset % f.Alignment == 0);
            Assert.Equal(GgmlTypeInfo.RowBytes(t.Type, t.ElementCount), t.ByteSize);
            var data = f.GetTensorData(t);
            if (data.Length > 0) _ = data[0] + data[^1];
        }
    }

    private static byte[] Mutate(byte[] original, long dataStart, Random rng, out string description)
    {
        // Most damage goes into the header, where the parser looks; a truncation anywhere.
        int headerEnd = (int)Math.Min(dataStart, original.Length);
        int Position() => rng.Next(10) < 9 ? rng.Next(headerEnd) : rng.Next(original.Length);
        int kind = rng.Next(5);
        byte[] b;
        switch (kind)
        {
            case 0:
            {
                int length = rng.Next(original.Length);
                description = $"truncate to {length}";
                return original.AsSpan(0, length).ToArray();
            }
            case 1:
            {
                b = (byte[])original.Clone();
                int at = Position(), bit = rng.Next(8);
                b[at] ^= (byte)(1 << bit);
                description = $"flip bit {bit} at {at}";
                return b;
            }
            case 2:
            {
                b = (byte[])original.Clone();
                int count = rng.Next(1, 4);
                description = "random bytes at";
                for (int i = 0; i < count; i++)
                {
                    int at = Position();
                    b[at] = (byte)rng.Next(256);
                    description += " " + at;
                }
                return b;
            }
            case 3:
            {
                // Plant a boundary value where a count, length, type or offset may sit.
                b = (byte[])original.Clone();
                int width = rng.Next(2) == 0 ? 4 : 8;
                int at = Math.Max(0, Math.Min(Position(), b.Length - width));
                ulong v = InterestingValues[rng.Next(InterestingValues.Length)];
                for (int i = 0; i < width && at + i < b.Length; i++) b[at + i] = (byte)(v >> (8 * i));
                description = $"{width}-byte 0x{v:X} at {at}";
                return b;
            }
            default:
            {
                b = (byte[])original.Clone();
                int at = Position();
                b[at] ^= (byte)(1 << rng.Next(8));
                int length = rng.Next(at, b.Length + 1);
                description = $"flip at {at}, truncate to {length}";
                return b.AsSpan(0, length).ToArray();
            }
        }
    }

    [Fact]
    public void TruncationsOfARealFileAreRejectedCleanly()
    {
        // llama.cpp's own stories260K: every cut in the first 256 bytes, then cuts spread over the header and the data.
        byte[] original = File.ReadAllBytes(TestPaths.SharedFile("llamacpp", "stories260K-Q4_0.gguf"));
        long dataStart;
        unsafe
        {
            fixed (byte* p = original)
            {
                using var f = GgufFile.FromMemory(p, original.Length);
                dataStart = f.DataOffset;
            }
        }
        var cuts = Enumerable.Range(0, 256)
            .Concat(Enumerable.Range(0, 500).Select(i => (int)(dataStart * i / 500) + i % 7))
            .Append((int)dataStart)
            .Concat(Enumerable.Range(1, 100).Select(i => (int)(dataStart + (original.Length - dataStart) * i / 101)));
        foreach (int cut in cuts)
        {
            unsafe
            {
                fixed (byte* p = original)
                {
                    GgufFormatException? error = null;
                    try { GgufFile.FromMemory(p, cut, "cut").Dispose(); }
                    catch (GgufFormatException e) { error = e; }
                    Assert.True(error != null, $"a cut at {cut} of {original.Length} bytes was accepted");
                    Assert.InRange(error.Offset, 0, cut);
                }
            }
        }
    }
}

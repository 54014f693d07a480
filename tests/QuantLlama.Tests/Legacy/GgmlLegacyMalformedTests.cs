using System.Buffers.Binary;
using QuantLlama.Gguf;
using QuantLlama.Gguf.Legacy;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Legacy;

/// <summary>Broken legacy files: every one gives a GgufFormatException naming the file, an offset inside it and the
/// problem; none crashes, hangs or allocates by a lying count.</summary>
public sealed unsafe class GgmlLegacyMalformedTests
{
    private const string Name = "broken.bin";

    // Offsets in the small ggjt v3 file below: magic 0, version 4, hyperparameters 8..35, vocabulary from 36.
    private const int VocabSizeAt = 8;
    private const int FirstTokenAt = 36;

    private static LegacyGgmlWriter Small(GgmlLegacyFormat format = GgmlLegacyFormat.Ggjt, uint version = 3)
    {
        var w = new LegacyGgmlWriter { Format = format, Version = version, EmbeddingLength = 32, Mult = 32, HeadCount = 4, LayerCount = 1, RotaryDimensions = 8 };
        foreach (var piece in new[] { " \u2047 ", "", "", "\u2581a", " b", "c" })
            w.Vocab.Add((System.Text.Encoding.UTF8.GetBytes(piece), -w.Vocab.Count));
        w.Tensors.Add(("norm.weight", GgmlType.F32, [32], Enumerable.Range(0, 128).Select(i => (byte)i).ToArray()));
        w.Tensors.Add(("output.weight", format == GgmlLegacyFormat.Ggjt && version == 3 ? GgmlType.Q8_0 : GgmlType.F16, [32, 6],
            Enumerable.Range(0, format == GgmlLegacyFormat.Ggjt && version == 3 ? 34 * 6 : 64 * 6).Select(i => (byte)(i * 7)).ToArray()));
        return w;
    }

    /// <summary>Byte offset of the first tensor header in <see cref="Small"/>'s ggjt v3 file.</summary>
    private static int FirstTensorAt()
    {
        int at = FirstTokenAt;
        foreach (var (piece, _) in Small().Vocab) at += 4 + piece.Length + 4;
        return at;
    }

    private static GgmlLegacyFile Parse(byte[] bytes, GgmlLegacyOptions? options = null)
    {
        fixed (byte* p = bytes)
        {
            var file = GgmlLegacyFile.FromMemory(p, bytes.Length, Name, options);
            // Touch every byte the reader hands out while the buffer is pinned.
            long sum = 0;
            foreach (var t in file.Tensors)
            {
                Assert.InRange(t.Offset, 0, bytes.Length - t.ByteSize);
                foreach (byte b in file.GetTensorData(t)) sum += b;
            }
            GC.KeepAlive(sum);
            file.Dispose();
            return file;
        }
    }

    private static GgufFormatException Broken(byte[] bytes, params string[] expected)
    {
        var e = Assert.Throws<GgufFormatException>(() => Parse(bytes));
        Assert.Equal(Name, e.FileName);
        Assert.InRange(e.Offset, 0, bytes.Length);
        Assert.StartsWith($"{Name}: invalid model file at byte {e.Offset}: ", e.Message);
        foreach (var s in expected) Assert.True(e.Message.Contains(s, StringComparison.Ordinal), $"'{s}' not in: {e.Message}");
        return e;
    }

    private static byte[] With(byte[] bytes, int at, uint value)
    {
        var copy = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(at), value);
        return copy;
    }

    [Fact]
    public void TheSmallFileIsValid()
    {
        var file = Parse(Small().ToBytes());
        Assert.Equal(2, file.Tensors.Count);
        Assert.Equal(6, file.Metadata.GetStringArray("tokenizer.ggml.tokens").Length);
        Assert.Equal(4, file.HeadCountKv);
        Assert.Equal(96, file.FeedForwardLength); // 2*(4*32)/3 = 85, rounded up to a multiple of 32
    }

    [Fact]
    public void EveryTruncation_IsAFormatErrorOrAShorterValidFile()
    {
        foreach (var (format, version) in new[] { (GgmlLegacyFormat.Ggjt, 3u), (GgmlLegacyFormat.Ggml, 0u), (GgmlLegacyFormat.Ggmf, 1u) })
        {
            var full = Small(format, version).ToBytes();
            int errors = 0;
            for (int length = 0; length < full.Length; length++)
            {
                var prefix = full[..length];
                try
                {
                    // Only a cut exactly between two parts (after the vocabulary or a tensor) leaves a valid file.
                    Assert.True(Parse(prefix).Tensors.Count < 2, $"{format} cut at {length}");
                }
                catch (GgufFormatException e)
                {
                    Assert.Equal(Name, e.FileName);
                    Assert.InRange(e.Offset, 0, length);
                    errors++;
                }
            }
            Assert.True(errors >= full.Length - 3, $"{format}: {errors} errors in {full.Length} cuts");
        }
    }

    [Fact]
    public void EmptyFileOnDisk_IsAFormatError()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = Path.Combine(dir, "empty.bin");
            File.WriteAllBytes(path, []);
            var e = Assert.Throws<GgufFormatException>(() => GgmlLegacyFile.Open(path));
            Assert.Contains("empty", e.Message);
            Assert.Throws<FileNotFoundException>(() => GgmlLegacyFile.Open(Path.Combine(dir, "missing.bin")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void BadMagicAndVersions()
    {
        var bytes = Small().ToBytes();
        Broken(With(bytes, 0, 0x58554747), "magic");
        Broken(With(bytes, 4, 4), "ggjt version 4");
        Broken(With(bytes, 4, 0), "ggjt version 0");
        var ggmf = Small(GgmlLegacyFormat.Ggmf, 1).ToBytes();
        Broken(With(ggmf, 4, 2), "ggmf version 2");
    }

    [Fact]
    public void LyingVocabularyCounts()
    {
        var bytes = Small().ToBytes();
        Assert.Equal(VocabSizeAt, Broken(With(bytes, VocabSizeAt, uint.MaxValue), "n_vocab 4294967295").Offset);
        Broken(With(bytes, VocabSizeAt, 1000), "n_vocab 1000");
        Assert.Equal(FirstTokenAt, Broken(With(bytes, FirstTokenAt, 0x7FFFFFF0), "token 0 claims").Offset);
        // One token more than written: the tensor headers are read as a token and the file runs out.
        Broken(With(bytes, VocabSizeAt, 7));
    }

    [Fact]
    public void LyingTensorHeaders()
    {
        var bytes = Small().ToBytes();
        int t = FirstTensorAt(); // n_dims, name length, type, dims..., name
        Broken(With(bytes, t, 0), "0 dimensions");
        Broken(With(bytes, t, 5), "5 dimensions");
        Broken(With(bytes, t + 4, uint.MaxValue), "name length");
        Broken(With(bytes, t + 4, 200)); // the name swallows the data; what follows is garbage
        Broken(With(bytes, t + 8, 99), "unknown ggml type 99");
        Broken(With(bytes, t + 8, 16), "unknown ggml type 16");
        Broken(With(bytes, t + 8, 4), "Q4_2", "re-convert");
        Broken(With(bytes, t + 12, 0), "dimension 0 = 0");
        Broken(With(bytes, t + 12, 1 << 28), "norm.weight", "truncated");
        Broken(With(bytes, t + 8, (uint)GgmlType.Q4_K), "norm.weight", "not a multiple of the Q4_K block size 256");
    }

    [Fact]
    public void ElementCountOverflowAndDuplicates()
    {
        var w = Small();
        w.Tensors.Clear();
        w.Tensors.Add(("huge", GgmlType.F32, [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], []));
        Broken(w.ToBytes(), "more elements than a 64-bit count");

        w = Small();
        w.Tensors.Add(w.Tensors[0]);
        Broken(w.ToBytes(), "'norm.weight' appears twice");
    }

    [Fact]
    public void RandomMutations_NeverCrash()
    {
        // Deterministic: the same 4000 mutants on every run, biased towards the header where the counts live.
        var rng = new Random(20261128);
        var files = new[] { Small().ToBytes(), Small(GgmlLegacyFormat.Ggml, 0).ToBytes(), Small(GgmlLegacyFormat.Ggjt, 2).ToBytes() };
        int parsed = 0, rejected = 0;
        for (int i = 0; i < 4000; i++)
        {
            var source = files[i % files.Length];
            var bytes = (byte[])source.Clone();
            int headerEnd = Math.Min(bytes.Length, FirstTensorAt() + 40);
            int flips = 1 + rng.Next(4);
            for (int f = 0; f < flips; f++)
            {
                int at = rng.Next(4) == 0 ? rng.Next(bytes.Length) : rng.Next(headerEnd);
                bytes[at] = rng.Next(3) switch { 0 => (byte)rng.Next(256), 1 => 0xFF, _ => (byte)(bytes[at] ^ (1 << rng.Next(8))) };
            }
            if (rng.Next(8) == 0) bytes = bytes[..rng.Next(bytes.Length)];
            try
            {
                var file = Parse(bytes);
                Assert.NotNull(file.Metadata);
                parsed++;
            }
            catch (GgufFormatException e)
            {
                Assert.Equal(Name, e.FileName);
                Assert.InRange(e.Offset, 0, bytes.Length);
                rejected++;
            }
        }
        Assert.True(parsed > 200 && rejected > 200, $"parsed {parsed}, rejected {rejected}");
    }
}

using System.Runtime.InteropServices;
using QuantLlama.Gguf;
using QuantLlama.Tensors;
using QuantLlama.Tests.Oracle;

namespace QuantLlama.Tests.Gguf;

public class GgufReaderTests
{
    [Theory]
    [InlineData(1u, 1)]
    [InlineData(2u, 8)]
    [InlineData(3u, 64)]
    [InlineData(3u, 4096)]
    public void CustomAlignmentPlacesDataAndTensorsOnItsBoundaries(uint version, int alignment)
    {
        byte[] image = GgufMutationTests.SampleFile(version, alignment);
        unsafe
        {
            fixed (byte* p = image)
            {
                using var f = GgufFile.FromMemory(p, image.Length);
                Assert.Equal(version, f.Version);
                Assert.Equal(alignment, f.Alignment);
                Assert.Equal(0, f.DataOffset % alignment);
                Assert.Equal(alignment == 32 ? null : (object)(uint)alignment, f.Metadata.TryGetValue("general.alignment", out var a) ? a.Value : null);
                Assert.Equal(4, f.Tensors.Count);
                foreach (var t in f.Tensors) Assert.Equal(0, t.Offset % alignment);
                // Consecutive tensors start at the next aligned offset after the previous one's bytes.
                for (int i = 1; i < f.Tensors.Count; i++)
                    Assert.Equal(GgufFile.AlignUp(f.Tensors[i - 1].Offset + f.Tensors[i - 1].ByteSize, alignment), f.Tensors[i].Offset);
                Assert.Equal(GgmlTypeInfo.TypeSize(GgmlType.Q4_K), f.GetTensor("c.weight").ByteSize);
                Assert.Equal(6, f.GetTensor("d.bias").ByteSize);
                Assert.Equal(f.DataOffset + GgufFile.AlignUp(f.Tensors[^1].Offset + 6, alignment), image.Length);
            }
        }
    }

    [Theory]
    [InlineData(1u)]
    [InlineData(2u)]
    [InlineData(3u)]
    public void ArraysOfEveryElementTypeReadBack(uint version)
    {
        var arrays = new Dictionary<string, GgufArray>
        {
            ["u8"] = new(GgufValueType.UInt8, new byte[] { 0, 255 }),
            ["i8"] = new(GgufValueType.Int8, new sbyte[] { -128, 127 }),
            ["u16"] = new(GgufValueType.UInt16, new ushort[] { 0, 65535 }),
            ["i16"] = new(GgufValueType.Int16, new short[] { -32768, 32767 }),
            ["u32"] = new(GgufValueType.UInt32, new uint[] { 0, uint.MaxValue }),
            ["i32"] = new(GgufValueType.Int32, new[] { int.MinValue, int.MaxValue }),
            ["f32"] = new(GgufValueType.Float32, new[] { float.NegativeInfinity, 1e-45f, float.NaN }),
            ["bool"] = new(GgufValueType.Bool, new[] { false, true }),
            ["string"] = new(GgufValueType.String, new[] { "", "▁日本", "a\0b" }),
            ["u64"] = new(GgufValueType.UInt64, new[] { 0UL, ulong.MaxValue }),
            ["i64"] = new(GgufValueType.Int64, new[] { long.MinValue, long.MaxValue }),
            ["f64"] = new(GgufValueType.Float64, new[] { double.Epsilon, -0.0 }),
            ["empty"] = new(GgufValueType.UInt32, Array.Empty<uint>()),
            ["nested"] = new(GgufValueType.Array, new[]
            {
                new GgufArray(GgufValueType.Array, new[] { new GgufArray(GgufValueType.Bool, new[] { true }) }),
                new GgufArray(GgufValueType.Int16, Array.Empty<short>()),
            }),
        };
        var w = new GgufWriter(version);
        foreach (var (k, a) in arrays) w.Set(k, GgufValue.From(a));
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        byte[] image = ms.ToArray();
        unsafe
        {
            fixed (byte* p = image)
            {
                using var f = GgufFile.FromMemory(p, image.Length);
                Assert.Equal(arrays.Keys, f.Metadata.Keys);
                foreach (var (k, a) in arrays)
                {
                    var read = f.Metadata.GetArray(k);
                    Assert.Equal(a.ElementType, read.ElementType);
                    if (a.ElementType != GgufValueType.Array) Assert.Equal(a.Items, read.Items);
                }
                var nested = f.Metadata.GetArray("nested").As<GgufArray>();
                Assert.True(nested[0].As<GgufArray>()[0].As<bool>()[0]);
                Assert.Empty(nested[1].As<short>());
                Assert.Equal([int.MinValue, int.MaxValue], f.Metadata.GetIntArray("i32"));
                Assert.Equal([0, 255], f.Metadata.GetIntArray("u8"));
                Assert.Contains("element 1 = 18446744073709551615 does not fit", Assert.Throws<FormatException>(() => f.Metadata.GetIntArray("u64")).Message);
                Assert.Contains("element 1 = 4294967295 does not fit", Assert.Throws<FormatException>(() => f.Metadata.GetIntArray("u32")).Message);
                Assert.Throws<InvalidCastException>(() => f.Metadata.GetArray("u32").As<int>());
                Assert.Equal([-128, 127], f.Metadata.GetIntArray("i8"));
            }
        }
    }

    public static IEnumerable<object[]> SharedGgufFiles() =>
        Directory.GetFiles(TestPaths.SharedFile("vocab"), "*.gguf").Concat(Directory.GetFiles(TestPaths.SharedFile("llamacpp"), "*.gguf"))
            .Where(p => Path.GetFileName(p) != "test_writer.gguf").Order().Select(p => new object[] { Path.GetFileName(p) });

    [Theory]
    [MemberData(nameof(SharedGgufFiles))]
    public void SharedFilesOpen(string name)
    {
        string path = Path.Combine(name.Contains("stories") ? TestPaths.SharedFile("llamacpp") : TestPaths.SharedFile("vocab"), name);
        using var f = GgufFile.Open(path);
        Assert.Equal(3u, f.Version);
        Assert.True(f.Metadata.GetStringArray("tokenizer.ggml.tokens").Length > 500);
        Assert.Equal(f.Metadata.GetStringArray("tokenizer.ggml.tokens").Length, f.Metadata.GetIntArray("tokenizer.ggml.token_type").Length);
        if (name.Contains("stories"))
        {
            Assert.Equal(48, f.Tensors.Count);
            Assert.Equal([64L, 512L], f.GetTensor("token_embd.weight").Dimensions);
            Assert.Equal(128, f.Metadata.GetInteger("llama.context_length"));
        }
    }

    [Fact]
    public unsafe void TensorBytesAreReadInPlaceFromTheMapping()
    {
        using var f = GgufFile.Open(TestPaths.SharedFile("llamacpp", "stories260K.gguf"));
        var t = f.GetTensor("blk.0.attn_norm.weight");
        var span = f.GetTensorData(t);
        fixed (byte* s = span) Assert.Equal((nint)f.GetTensorPointer(t), (nint)s);
        using var raw = File.OpenRead(f.FileName);
        raw.Position = f.DataOffset + t.Offset;
        var expected = new byte[t.ByteSize];
        raw.ReadExactly(expected);
        Assert.Equal(expected, span.ToArray());
    }

    /// <summary>
    /// The writer's files load in llama.cpp: llama.cpp's stories260K rewritten by our writer (versions 2 and 3,
    /// alignments 32 and 64) gives bit-identical logits to the original in llama.cpp.
    /// </summary>
    [Theory]
    [InlineData(3u, 32)]
    [InlineData(3u, 64)]
    [InlineData(2u, 32)]
    public void RewrittenFileLoadsInLlamaCppWithIdenticalLogits(uint version, int alignment)
    {
        string original = TestPaths.SharedFile("llamacpp", "stories260K-Q8_0.gguf");
        string dir = TestPaths.NewTempDirectory();
        string rewritten = Path.Combine(dir, "rewritten.gguf");
        try
        {
            using (var source = GgufFile.Open(original))
            {
                var w = new GgufWriter(version).CopyMetadataFrom(source);
                if (alignment != 32) w.Set("general.alignment", (uint)alignment);
                foreach (var t in source.Tensors) w.AddTensor(t.Name, t.Type, t.Dimensions, source.GetTensorData(t).ToArray());
                w.Write(rewritten);
            }
            using (var check = GgufFile.Open(rewritten)) Assert.Equal(alignment, check.Alignment);
            int[] prompt;
            float[] expected;
            using (var reference = LlamaCppModel.Load(original))
            {
                prompt = reference.Tokenize("Once upon a time");
                expected = reference.LastLogits(prompt);
            }
            using var model = LlamaCppModel.Load(rewritten);
            Assert.Equal(prompt, model.Tokenize("Once upon a time"));
            Assert.Equal(expected, model.LastLogits(prompt));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

using QuantLlama.Gguf;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Gguf;

public class GgufRoundTripTests
{
    [Theory]
    [InlineData(1u)]
    [InlineData(2u)]
    [InlineData(3u)]
    public void WriterOutputReadsBackBitForBit(uint version)
    {
        string dir = TestPaths.NewTempDirectory();
        string path = Path.Combine(dir, "t.gguf");
        var weights = Enumerable.Range(0, 64 * 3).Select(i => i * 0.25f - 7f).ToArray();
        var q8 = new byte[34 * 2];
        new Random(1).NextBytes(q8);
        new GgufWriter(version)
            .Set("general.architecture", "llama")
            .Set("u8", GgufValue.From((byte)200))
            .Set("i8", GgufValue.From((sbyte)-5))
            .Set("u16", GgufValue.From((ushort)65000))
            .Set("i16", GgufValue.From((short)-30000))
            .Set("u32", 4000000000u)
            .Set("i32", -123456)
            .Set("u64", GgufValue.From(ulong.MaxValue - 1))
            .Set("i64", GgufValue.From(long.MinValue + 1))
            .Set("f32", 1.5f)
            .Set("f64", GgufValue.From(Math.PI))
            .Set("bool", true)
            .Set("strings", ["a", "ünï", ""])
            .Set("nested", GgufValue.From(new GgufArray(GgufValueType.Array, new[]
            {
                new GgufArray(GgufValueType.Int32, new[] { 1, 2 }),
                new GgufArray(GgufValueType.String, new[] { "x" }),
            })))
            .AddTensor("w", [64, 3], weights)
            .AddTensor("q", GgmlType.Q8_0, [64], q8)
            .Write(path);

        using var f = GgufFile.Open(path);
        Assert.Equal(version, f.Version);
        Assert.Equal("llama", f.Metadata.GetString("general.architecture"));
        Assert.Equal((byte)200, f.Metadata.GetValue("u8").Value);
        Assert.Equal((sbyte)-5, f.Metadata.GetValue("i8").Value);
        Assert.Equal((ushort)65000, f.Metadata.GetValue("u16").Value);
        Assert.Equal((short)-30000, f.Metadata.GetValue("i16").Value);
        Assert.Equal(4000000000L, f.Metadata.GetInteger("u32"));
        Assert.Equal(-123456L, f.Metadata.GetInteger("i32"));
        Assert.Equal(ulong.MaxValue - 1, f.Metadata.GetValue("u64").Value);
        Assert.Equal(long.MinValue + 1, f.Metadata.GetInteger("i64"));
        Assert.Equal(1.5, f.Metadata.GetFloat("f32"));
        Assert.Equal(Math.PI, f.Metadata.GetFloat("f64"));
        Assert.True(f.Metadata.GetBool("bool"));
        Assert.Equal(["a", "ünï", ""], f.Metadata.GetStringArray("strings"));
        var nested = f.Metadata.GetArray("nested").As<GgufArray>();
        Assert.Equal([1, 2], nested[0].As<int>());
        Assert.Equal(["x"], nested[1].As<string>());

        var w = f.GetTensor("w");
        Assert.Equal([64L, 3L], w.Dimensions);
        Assert.Equal(GgmlType.F32, w.Type);
        Assert.Equal(weights, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.GetTensorData(w)).ToArray());
        var q = f.GetTensor("q");
        Assert.Equal(q8, f.GetTensorData(q).ToArray());
        Assert.Equal(0, f.DataOffset % 32);
        Assert.Equal(0, q.Offset % 32);
    }

    [Fact]
    public void MissingAndMistypedKeysGiveClearErrors()
    {
        string path = Path.Combine(TestPaths.NewTempDirectory(), "k.gguf");
        new GgufWriter().Set("name", "x").Write(path);
        using var f = GgufFile.Open(path);
        var missing = Assert.Throws<KeyNotFoundException>(() => f.Metadata.GetString("absent"));
        Assert.Contains("'absent' is missing", missing.Message);
        var mistyped = Assert.Throws<FormatException>(() => f.Metadata.GetInteger("name"));
        Assert.Contains("has type String, expected an integer", mistyped.Message);
    }

    [Fact]
    public void UndefinedMetadataTypeIsRejected()
    {
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(TestPaths.SharedFile("vocab", "test_writer.gguf")));
        Assert.Contains("invalid GGUF type 13", e.Message);
        Assert.Contains("test_writer.gguf", e.Message);
    }
}

using System.Runtime.InteropServices;
using QuantLlama.Gguf;
using QuantLlama.Models.Llama2c;
using QuantLlama.Tests.Oracle;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Models;

public class Llama2cConverterTests
{
    private const string Prompt = "Once upon a time";
    private const string ExpectedStart = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

    private static string Checkpoint => TestPaths.SharedFile("models", "stories260K.bin");
    private static string Tokenizer => TestPaths.SharedFile("models", "tok512.bin");
    private static string LlamaCppConversion => TestPaths.SharedFile("llamacpp", "stories260K.gguf");

    [Fact]
    public void LlamaCppContinuesTheConvertedModelAsDocumented()
    {
        using var model = LlamaCppModel.Load(ConvertedModels.Stories260KGguf);
        string text = model.GenerateGreedyText(Prompt, 40);
        Assert.StartsWith(ExpectedStart, text);
    }

    [Fact]
    public void ConvertedModelGivesLlamaCppsOwnConversionsLogitsExactly()
    {
        // Same weights in the same RoPE layout: llama.cpp computes bit-identical logits from both files.
        using var ours = LlamaCppModel.Load(ConvertedModels.Stories260KGguf);
        using var theirs = LlamaCppModel.Load(LlamaCppConversion);
        var prompt = theirs.Tokenize(Prompt + ", there was a little girl");
        Assert.Equal(prompt, ours.Tokenize(Prompt + ", there was a little girl"));
        Assert.Equal(theirs.LastLogits(prompt), ours.LastLogits(prompt));
    }

    [Fact]
    public void TensorsMatchLlamaCppsConversionByteForByte()
    {
        using var ours = GgufFile.Open(ConvertedModels.Stories260KGguf);
        using var theirs = GgufFile.Open(LlamaCppConversion);
        Assert.Equal(theirs.Tensors.Select(t => t.Name).Where(n => n != "output.weight").Order(), ours.Tensors.Select(t => t.Name).Order());
        foreach (var t in ours.Tensors)
        {
            var reference = theirs.GetTensor(t.Name);
            Assert.Equal(reference.Dimensions, t.Dimensions);
            Assert.Equal(reference.Type, t.Type);
            Assert.True(reference.ByteSize == t.ByteSize && theirs.GetTensorData(reference).SequenceEqual(ours.GetTensorData(t)), $"{t.Name} differs");
        }
        // llama.cpp stores the shared classifier again as output.weight; we rely on llama.cpp's fallback to token_embd.
        Assert.True(theirs.GetTensorData("output.weight").SequenceEqual(ours.GetTensorData("token_embd.weight")));
    }

    [Fact]
    public void MetadataAndVocabularyAreComplete()
    {
        using var ours = GgufFile.Open(ConvertedModels.Stories260KGguf);
        using var theirs = GgufFile.Open(LlamaCppConversion);
        var m = ours.Metadata;
        Assert.Equal("llama", m.GetString("general.architecture"));
        Assert.Equal("stories260K", m.GetString("general.name"));
        Assert.Equal(512, m.GetInteger("llama.context_length"));
        Assert.Equal(64, m.GetInteger("llama.embedding_length"));
        Assert.Equal(5, m.GetInteger("llama.block_count"));
        Assert.Equal(172, m.GetInteger("llama.feed_forward_length"));
        Assert.Equal(8, m.GetInteger("llama.attention.head_count"));
        Assert.Equal(4, m.GetInteger("llama.attention.head_count_kv"));
        Assert.Equal(8, m.GetInteger("llama.rope.dimension_count"));
        Assert.Equal(512, m.GetInteger("llama.vocab_size"));
        Assert.Equal(1e-5f, (float)m.GetFloat("llama.attention.layer_norm_rms_epsilon"));
        Assert.Equal(10000.0, m.GetFloat("llama.rope.freq_base"));
        Assert.Equal("llama", m.GetString("tokenizer.ggml.model"));
        Assert.Equal(0, m.GetInteger("tokenizer.ggml.unknown_token_id"));
        Assert.Equal(1, m.GetInteger("tokenizer.ggml.bos_token_id"));
        Assert.Equal(2, m.GetInteger("tokenizer.ggml.eos_token_id"));
        foreach (var key in new[] { "llama.embedding_length", "llama.block_count", "llama.feed_forward_length", "llama.attention.head_count",
                     "llama.attention.head_count_kv", "llama.rope.dimension_count", "tokenizer.ggml.model", "tokenizer.ggml.bos_token_id" })
            Assert.Equal(theirs.Metadata.GetValue(key).ToString(), m.GetValue(key).ToString());

        var tokens = m.GetStringArray("tokenizer.ggml.tokens");
        var types = m.GetIntArray("tokenizer.ggml.token_type");
        Assert.Equal(theirs.Metadata.GetStringArray("tokenizer.ggml.tokens"), tokens);
        Assert.Equal(theirs.Metadata.GetFloatArray("tokenizer.ggml.scores"), m.GetFloatArray("tokenizer.ggml.scores"));
        Assert.Equal(theirs.Metadata.GetIntArray("tokenizer.ggml.token_type"), types);
        Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], tokens[..4]);
        Assert.Equal([2, 3, 3, 6], types[..4]);
        Assert.Equal("<0xFF>", tokens[258]);
        Assert.Equal(6, types[258]);
        Assert.Equal("\u2581t", tokens[259]);
        Assert.Equal(1, types[259]);
        Assert.Equal(-1f, m.GetFloatArray("tokenizer.ggml.scores")[260]);
    }

    [Fact]
    public void SeparateClassifierBecomesOutputWeight()
    {
        // stories260K rewritten with a separate classifier equal to twice the embeddings: llama.cpp must then give
        // exactly twice the shared model's logits, which proves output.weight is written and used.
        string dir = TestPaths.NewTempDirectory();
        try
        {
            byte[] original = File.ReadAllBytes(Checkpoint);
            var embedding = MemoryMarshal.Cast<byte, float>(original.AsSpan(Llama2cCheckpoint.HeaderBytes, 512 * 64 * 4)).ToArray();
            var classifier = embedding.Select(x => x * 2).ToArray();
            byte[] unshared = [.. original, .. MemoryMarshal.AsBytes(classifier.AsSpan()).ToArray()];
            BitConverter.TryWriteBytes(unshared.AsSpan(20), -512);
            string checkpoint = Path.Combine(dir, "unshared.bin"), output = Path.Combine(dir, "unshared.gguf");
            File.WriteAllBytes(checkpoint, unshared);

            var result = Llama2cConverter.Convert(checkpoint, Tokenizer, output);
            Assert.False(result.Config.SharedClassifier);
            using (var f = GgufFile.Open(output))
            {
                Assert.Equal(MemoryMarshal.AsBytes(classifier.AsSpan()).ToArray(), f.GetTensorData("output.weight").ToArray());
                Assert.Equal(48, f.Tensors.Count);
            }
            using var shared = LlamaCppModel.Load(ConvertedModels.Stories260KGguf);
            using var separate = LlamaCppModel.Load(output);
            var prompt = shared.Tokenize(Prompt);
            var expected = shared.LastLogits(prompt).Select(x => x * 2).ToArray();
            Assert.Equal(expected, separate.LastLogits(prompt));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public static readonly Dictionary<string, (Func<byte[], byte[]> Damage, string Problem, long Offset)> BrokenCheckpoints = new()
    {
        ["empty"] = (_ => [], "the file is empty", 0),
        ["shorter than the header"] = (b => b[..20], "less than the 28-byte llama2.c header", 20),
        ["truncated weights"] = (b => b[..^100], "the file is truncated", 1056440),
        ["extra bytes"] = (b => [.. b, 0, 0, 0, 0], "implies 1056540 bytes, the file has 1056544", 1056540),
        ["zero heads"] = (b => Patch(b, 12, 0), "header field n_heads = 0 is not a positive number", 12),
        ["negative layers"] = (b => Patch(b, 8, -5), "header field n_layers = -5 is not a positive number", 8),
        ["int.MinValue vocab"] = (b => Patch(b, 20, int.MinValue), "header field vocab_size = -2147483648", 20),
        ["kv heads not dividing heads"] = (b => Patch(b, 16, 3), "n_kv_heads 3 does not divide n_heads 8", 16),
        ["dim not a multiple of heads"] = (b => Patch(b, 0, 65), "dim 65 is not a multiple of n_heads 8", 0),
        ["odd head size"] = (b => Patch(Patch(b, 0, 72), 12, 8), "the head size 9 (dim / n_heads) is odd", 12),
        ["sizes overflow"] = (b => Patch(Patch(b, 0, 1 << 30), 4, int.MaxValue), "the header's sizes overflow", 0),
        ["newer llama2.c export"] = (b => Patch(Patch(b, 0, 0x616b3432), 4, 2), "this is a llama2.c version 2 export (magic \"ak42\")", 0),
        ["huge but consistent header"] = (b => Patch(b, 4, 1 << 30), "the file is truncated", 1056540),
    };

    private static byte[] Patch(byte[] b, int at, int value)
    {
        var copy = (byte[])b.Clone();
        BitConverter.TryWriteBytes(copy.AsSpan(at), value);
        return copy;
    }

    public static IEnumerable<object[]> BrokenCheckpointNames() => BrokenCheckpoints.Keys.Select(k => new object[] { k });

    [Theory]
    [MemberData(nameof(BrokenCheckpointNames))]
    public void DamagedCheckpointIsRejectedWithAFormatError(string caseName)
    {
        var (damage, problem, offset) = BrokenCheckpoints[caseName];
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = Path.Combine(dir, "broken.bin");
            File.WriteAllBytes(path, damage(File.ReadAllBytes(Checkpoint)));
            var e = Assert.Throws<GgufFormatException>(() => Llama2cCheckpoint.Open(path).Dispose());
            Assert.Contains(problem, e.Problem);
            Assert.Equal(offset, e.Offset);
            Assert.Equal(path, e.FileName);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void DamagedTokenizersAreRejectedWithAFormatError()
    {
        byte[] good = File.ReadAllBytes(Tokenizer);
        Assert.Equal(512, Llama2cTokenizer.Parse(good, 512).Pieces.Count);

        var e = Assert.Throws<GgufFormatException>(() => Llama2cTokenizer.Parse(good[..^3], 512));
        Assert.Contains("token 511 has length 3, but 0 bytes are left; the file is truncated", e.Problem);
        e = Assert.Throws<GgufFormatException>(() => Llama2cTokenizer.Parse(good, 500));
        Assert.Contains("follow the 500 tokens; the tokenizer does not match", e.Problem);
        e = Assert.Throws<GgufFormatException>(() => Llama2cTokenizer.Parse(good, 513));
        Assert.Contains("the file ends while reading the score of token 512", e.Problem);
        var negative = (byte[])good.Clone();
        BitConverter.TryWriteBytes(negative.AsSpan(8), -1); // token 0's length
        e = Assert.Throws<GgufFormatException>(() => Llama2cTokenizer.Parse(negative, 512));
        Assert.Equal(8, e.Offset);
        Assert.Contains("token 0 has length -1", e.Problem);
        var huge = (byte[])good.Clone();
        BitConverter.TryWriteBytes(huge.AsSpan(8), int.MaxValue);
        Assert.Contains("token 0 has length 2147483647", Assert.Throws<GgufFormatException>(() => Llama2cTokenizer.Parse(huge, 512)).Problem);
        Assert.Contains("max_token_length 0 is not positive", Assert.Throws<GgufFormatException>(() => Llama2cTokenizer.Parse(new byte[4], 1)).Problem);

        // A vocabulary far larger than the file fails before anything is allocated for it.
        e = Assert.Throws<GgufFormatException>(() => Llama2cTokenizer.Read(Tokenizer, 1 << 30));
        Assert.Contains("too few for 1073741824 tokens", e.Problem);
    }

    [Fact]
    public void CliConvertsAndReportsTheModel()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string output = Path.Combine(dir, "out.gguf");
            var r = CliRunner.Run(["convert-llama2c", "--checkpoint", Checkpoint, "--tokenizer", Tokenizer, "--output", output]);
            Assert.True(r.ExitCode == 0, r.StdErr);
            Assert.Contains("wrote " + output + ": 47 tensors", r.StdOut);
            Assert.Contains("dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512, context 512, shared classifier", r.StdOut);
            Assert.Equal(File.ReadAllBytes(ConvertedModels.Stories260KGguf), File.ReadAllBytes(output));
            Assert.False(File.Exists(output + ".tmp"));

            var bad = CliRunner.Run(["convert-llama2c", "--checkpoint", Tokenizer, "--tokenizer", Tokenizer, "--output", Path.Combine(dir, "bad.gguf")]);
            Assert.Equal(1, bad.ExitCode);
            Assert.StartsWith("error: " + Tokenizer + ": invalid model file at byte 4: header field hidden_dim = 0 is not a positive number", bad.StdErr);
            Assert.Single(bad.StdErr.Trim().Split('\n'));
            Assert.False(File.Exists(Path.Combine(dir, "bad.gguf")));

            var missing = CliRunner.Run(["convert-llama2c", "--checkpoint", Path.Combine(dir, "none.bin"), "--tokenizer", Tokenizer, "--output", output]);
            Assert.Equal(1, missing.ExitCode);
            Assert.Contains("none.bin: no such file", missing.StdErr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

public class Llama2cSymlinkTests
{
    [Fact]
    public void SymlinkedInputsConvert()
    {
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string checkpoint = Path.Combine(dir, "model.bin"), tokenizer = Path.Combine(dir, "tok.bin"), output = Path.Combine(dir, "out.gguf");
            File.CreateSymbolicLink(checkpoint, TestPaths.SharedFile("models", "stories260K.bin"));
            File.CreateSymbolicLink(tokenizer, TestPaths.SharedFile("models", "tok512.bin"));
            var result = Llama2cConverter.Convert(checkpoint, tokenizer, output, "stories260K");
            Assert.Equal(47, result.TensorCount);
            Assert.Equal(File.ReadAllBytes(ConvertedModels.Stories260KGguf), File.ReadAllBytes(output));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

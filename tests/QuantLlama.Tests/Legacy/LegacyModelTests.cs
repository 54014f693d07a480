using System.Runtime.InteropServices;
using System.Text;
using QuantLlama.Gguf;
using QuantLlama.Gguf.Legacy;
using QuantLlama.Models;
using QuantLlama.Quants;
using QuantLlama.Tensors;
using QuantLlama.Tokenizers;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Legacy;

/// <summary>Legacy files run through the engine exactly as the GGUF they were written from.</summary>
public sealed class LegacyModelTests : LegacyFileTestBase
{
    private const string Prompt = "Once upon a time";

    private static (int[] Ids, float[] PromptLogits, string Text) Greedy(string path, int gqa, int steps)
    {
        using var model = InferenceContext.Load(path, new ContextOptions { ContextSize = 128 }, gqa);
        var tokenizer = TokenizerFactory.FromMetadata(model.Model.File.Metadata);
        var prompt = tokenizer.Encode(Prompt, addSpecial: true, parseSpecial: false);
        var logits = model.Forward(prompt.ToArray(), 0).ToArray();
        var promptLogits = logits;
        var ids = new List<int>();
        var bytes = new List<byte>();
        int position = prompt.Count;
        for (int i = 0; i < steps; i++)
        {
            int next = ArgMax(logits);
            ids.Add(next);
            bytes.AddRange(tokenizer.TokenToBytes(next));
            logits = model.Forward([next], position++).ToArray();
        }
        return (ids.ToArray(), promptLogits, Prompt + Encoding.UTF8.GetString(bytes.ToArray()));
    }

    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    [Theory]
    [InlineData("", GgmlLegacyFormat.Ggml, 0u, VocabSpelling.ConvertPy, 1)] // unaligned F32 tensors, no scores
    [InlineData("", GgmlLegacyFormat.Ggmf, 1u, VocabSpelling.SentencePiece, 2)]
    [InlineData("", GgmlLegacyFormat.Ggjt, 1u, VocabSpelling.ConvertPy, 1)]
    [InlineData("-Q8_0", GgmlLegacyFormat.Ggjt, 3u, VocabSpelling.ConvertPy, 2)]
    [InlineData("-Q4_0", GgmlLegacyFormat.Ggjt, 3u, VocabSpelling.SentencePiece, 1)]
    public void LegacyFile_GeneratesTheSameGreedyTextAsTheGguf(string suffix, GgmlLegacyFormat format, uint version, VocabSpelling spelling, int gqa)
    {
        string legacy = WriteLegacy(Stories(suffix), format, version, spelling);
        var expected = Greedy(Stories(suffix), 1, 40);
        var actual = Greedy(legacy, gqa, 40);
        Assert.Equal(expected.PromptLogits, actual.PromptLogits);
        Assert.Equal(expected.Ids, actual.Ids);
        Assert.Equal(expected.Text, actual.Text);
        if (suffix != "-Q4_0")
            Assert.StartsWith("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.", actual.Text);
    }

    /// <summary>stories260K with its matrices re-encoded by our quantizer (rows of 172 stay F16), as a GGUF.</summary>
    private string QuantizedGguf(GgmlType matrixType)
    {
        using var source = GgufFile.Open(Stories());
        var writer = new GgufWriter().CopyMetadataFrom(source);
        foreach (var t in source.Tensors)
        {
            var floats = MemoryMarshal.Cast<byte, float>(source.GetTensorData(t));
            var type = t.Dimensions.Length < 2 ? GgmlType.F32
                : t.Columns % GgmlTypeInfo.BlockSize(matrixType) == 0 ? matrixType : GgmlType.F16;
            int cols = (int)t.Columns, rowBytes = (int)GgmlTypeInfo.RowBytes(type, cols);
            var data = new byte[rowBytes * t.Rows];
            for (int r = 0; r < t.Rows; r++)
                Quantizer.QuantizeRow(type, floats.Slice(r * cols, cols), data.AsSpan(r * rowBytes, rowBytes));
            writer.AddTensor(t.Name, type, t.Dimensions, data);
        }
        string path = Path.Combine(Dir, $"stories260K-{matrixType}.gguf");
        writer.Write(path);
        return path;
    }

    [Theory]
    [InlineData(GgmlType.F16, GgmlLegacyFormat.Ggml, 0u)] // unaligned F16 rows
    [InlineData(GgmlType.Q5_0, GgmlLegacyFormat.Ggjt, 2u)] // ggjt v2 Q5 blocks are GGUF's
    [InlineData(GgmlType.Q5_1, GgmlLegacyFormat.Ggjt, 2u)]
    [InlineData(GgmlType.Q4_1, GgmlLegacyFormat.Ggjt, 3u)]
    public void OtherBlockTypes_GiveTheSameLogitsAsTheGguf(GgmlType matrixType, GgmlLegacyFormat format, uint version)
    {
        string gguf = QuantizedGguf(matrixType);
        string legacy = WriteLegacy(gguf, format, version, VocabSpelling.ConvertPy);
        using (var file = GgmlLegacyFile.Open(legacy)) Assert.Equal(matrixType, file.GetTensor("blk.0.attn_q.weight").Type);
        var expected = Greedy(gguf, 1, 16);
        var actual = Greedy(legacy, 1, 16);
        Assert.Equal(expected.PromptLogits, actual.PromptLogits);
        Assert.Equal(expected.Ids, actual.Ids);
    }

    [Fact]
    public void Cli_RunsALegacyFile()
    {
        string legacy = WriteLegacy(Stories("-Q8_0"), GgmlLegacyFormat.Ggjt, 3, VocabSpelling.ConvertPy);
        var r = CliRunner.Run(["--model", legacy, "--prompt", Prompt, "-n", "20", "--temperature", "0", "--repeat-penalty", "1"]);
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", r.StdOut);
    }
}

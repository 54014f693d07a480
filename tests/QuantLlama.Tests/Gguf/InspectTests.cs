using System.Text.Json;
using QuantLlama.Gguf;
using QuantLlama.Tests.Models;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Gguf;

public class InspectTests
{
    public static IEnumerable<object[]> AllSharedModelFiles() =>
        Directory.GetFiles(TestPaths.SharedFile("vocab"), "*.gguf").Concat(Directory.GetFiles(TestPaths.SharedFile("llamacpp"), "*.gguf"))
            .Append(TestPaths.SharedFile("vocab", "ggml-vocab-llama-ggjt-v1.bin"))
            .Where(p => Path.GetFileName(p) != "test_writer.gguf").Order().Select(p => new object[] { p });

    [Theory]
    [MemberData(nameof(AllSharedModelFiles))]
    public void EverySharedFileIsDescribedInTextAndJson(string path)
    {
        using var file = ModelFileLoader.Open(path);
        string text = ModelInspector.FormatText(file);
        Assert.Contains("format:   " + file.FormatDescription, text);
        Assert.Contains($"metadata: {file.Metadata.Count} entries", text);
        Assert.Contains($"total:    {file.Tensors.Count} tensors", text);
        int tokens = file.Metadata.GetStringArray("tokenizer.ggml.tokens").Length;
        Assert.Matches(@$"tokenizer\.ggml\.tokens +\[string x {tokens}\] +\[""[^\n]*\.\.\. \({tokens - 8:N0} more\)\]", text);
        // One line per metadata entry, however long or multi-line its value.
        // file, format, chat, metadata, entries, tensors, table (with its heading), total, one line per tensor type.
        int expectedLines = 4 + file.Metadata.Count + 1 + (file.Tensors.Count > 0 ? file.Tensors.Count + 1 : 0) + 1 + ByTypeLines(file);
        Assert.Equal(expectedLines, text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        using var json = JsonDocument.Parse(ModelInspector.FormatJson(file));
        var root = json.RootElement;
        Assert.Equal(file.FormatDescription, root.GetProperty("format").GetString());
        Assert.Equal(file.Metadata.Count, root.GetProperty("metadata").GetArrayLength());
        var tokenEntry = root.GetProperty("metadata").EnumerateArray().Single(e => e.GetProperty("key").GetString() == "tokenizer.ggml.tokens");
        Assert.Equal(tokens, tokenEntry.GetProperty("count").GetInt32());
        Assert.Equal(8, tokenEntry.GetProperty("items").GetArrayLength());
        Assert.True(tokenEntry.GetProperty("truncated").GetBoolean());
        Assert.Equal(file.Metadata.GetStringArray("tokenizer.ggml.tokens")[..8], tokenEntry.GetProperty("items").EnumerateArray().Select(e => e.GetString()!));
    }

    private static int ByTypeLines(IModelFile file) => file.Tensors.Select(t => t.Type).Distinct().Count();

    [Fact]
    public void TensorTableAndTotalsAreExact()
    {
        using var file = GgufFile.Open(TestPaths.SharedFile("llamacpp", "stories260K-Q8_0.gguf"));
        string text = ModelInspector.FormatText(file);
        Assert.Matches(@"\n  token_embd\.weight +Q8_0 +\[64, 512\] +34,816\n", text);
        Assert.Matches(@"\n  blk\.0\.ffn_down\.weight +F16 +\[172, 64\] +22,016\n", text);
        Assert.Contains("total:    48 tensors, 292,800 elements, 364,768 bytes (0.35 MiB)", text);
        Assert.Matches(@"\n  Q8_0 +32 tensors +237,056 elements +251,872 bytes\n", text);
        Assert.Contains("llama.attention.layer_norm_rms_epsilon  f32              1E-05", text);
        Assert.Contains("format:   GGUF v3 (alignment 32, tensor data at byte 14,240, file 379,168 bytes)", text);

        using var json = JsonDocument.Parse(ModelInspector.FormatJson(file, arrayItems: -1));
        var root = json.RootElement;
        var tensors = root.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(48, tensors.Count);
        Assert.Equal(364768, tensors.Sum(t => t.GetProperty("bytes").GetInt64()));
        Assert.Equal(364768, root.GetProperty("totals").GetProperty("bytes").GetInt64());
        Assert.Equal(32, root.GetProperty("totals").GetProperty("byType").GetProperty("Q8_0").GetProperty("tensors").GetInt32());
        var embd = tensors.Single(t => t.GetProperty("name").GetString() == "token_embd.weight");
        Assert.Equal([64, 512], embd.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal("Q8_0", embd.GetProperty("type").GetString());
        Assert.Equal(file.GetTensor("token_embd.weight").Offset, embd.GetProperty("offset").GetInt64());
        var scores = root.GetProperty("metadata").EnumerateArray().Single(e => e.GetProperty("key").GetString() == "tokenizer.ggml.scores");
        Assert.Equal(512, scores.GetProperty("items").GetArrayLength());
        Assert.False(scores.GetProperty("truncated").GetBoolean());
        Assert.Equal(18, root.GetProperty("metadata").EnumerateArray().Single(e => e.GetProperty("key").GetString() == "general.file_type").GetProperty("value").GetInt32());
    }

    [Fact]
    public void UnusualValuesStayOnOneLineAndValidJson()
    {
        string dir = TestPaths.NewTempDirectory();
        string path = Path.Combine(dir, "odd.gguf");
        new GgufWriter()
            .Set("multi.line", "a\nb\t\"c\"\\")
            .Set("long", new string('x', 500))
            .Set("nan", float.NaN)
            .Set("inf", GgufValue.From(double.PositiveInfinity))
            .Set("big", GgufValue.From(ulong.MaxValue))
            .Set("nested", GgufValue.From(new GgufArray(GgufValueType.Array, new[] { new GgufArray(GgufValueType.Bool, new[] { true, false }) })))
            .Write(path);
        string text, jsonText;
        using (var file = GgufFile.Open(path))
        {
            text = ModelInspector.FormatText(file);
            jsonText = ModelInspector.FormatJson(file);
        }
        Directory.Delete(dir, recursive: true);
        Assert.Contains("multi.line  string           \"a\\nb\\t\\\"c\\\"\\\\\"", text);
        Assert.Contains("\"" + new string('x', 120) + "\"... (500 chars)", text);
        Assert.Contains("nested      [array x 1]      [[bool x 2]]", text);
        Assert.Contains("big         u64              18446744073709551615", text);
        using var json = JsonDocument.Parse(jsonText);
        var m = json.RootElement.GetProperty("metadata").EnumerateArray().ToDictionary(e => e.GetProperty("key").GetString()!);
        Assert.Equal("a\nb\t\"c\"\\", m["multi.line"].GetProperty("value").GetString());
        Assert.Equal(500, m["long"].GetProperty("value").GetString()!.Length);
        Assert.Equal("NaN", m["nan"].GetProperty("value").GetString());
        Assert.Equal("Infinity", m["inf"].GetProperty("value").GetString());
        Assert.Equal(ulong.MaxValue, m["big"].GetProperty("value").GetUInt64());
        Assert.False(m["nested"].GetProperty("items")[0].GetProperty("items")[1].GetBoolean());
    }

    [Fact]
    public void CliInspectsAConvertedModelAsTextAndJson()
    {
        var r = CliRunner.Run(["inspect", ConvertedModels.Stories260KGguf]);
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.Contains("format:   GGUF v3", r.StdOut);
        Assert.Contains("general.source.format", r.StdOut);
        Assert.Matches(@"\n  llama\.context_length +u32 +512\n", r.StdOut);
        Assert.Contains("total:    47 tensors", r.StdOut);

        var j = CliRunner.Run(["inspect", "--json", ConvertedModels.Stories260KGguf]);
        Assert.Equal(0, j.ExitCode);
        using var json = JsonDocument.Parse(j.StdOut);
        Assert.Equal(47, json.RootElement.GetProperty("tensors").GetArrayLength());
        Assert.Equal(3, json.RootElement.GetProperty("version").GetInt32());
    }

    [Fact]
    public void CliSaysWhetherWeRunTheFileAndWhyNot()
    {
        var yes = CliRunner.Run(["inspect", ConvertedModels.Stories260KGguf]);
        Assert.Contains("\nruns:     yes\n", yes.StdOut);
        string dir = TestPaths.NewTempDirectory();
        try
        {
            string path = SyntheticLlama.Write(dir, QuantLlama.Tensors.GgmlType.Q8_0, new SyntheticLlama.Shape { Architecture = "falcon", Layers = 1 });
            var no = CliRunner.Run(["inspect", path]);
            Assert.True(no.ExitCode == 0, no.StdErr);
            Assert.Matches(@"\nruns:     no: .*synthetic-Q8_0-1234-falcon-l1\.gguf: architecture 'falcon' is not supported \(llama, qwen2, qwen3, gemma2, gemma3, phi3\)\n", no.StdOut);
            var json = CliRunner.Run(["inspect", "--json", path]);
            using var doc = JsonDocument.Parse(json.StdOut);
            Assert.False(doc.RootElement.GetProperty("runnable").GetBoolean());
            Assert.Contains("architecture 'falcon'", doc.RootElement.GetProperty("notRunnableBecause").GetString());

            string gemma = SyntheticLlama.Write(dir, QuantLlama.Tensors.GgmlType.Q8_0, new SyntheticLlama.Shape
            {
                Architecture = "gemma3", PostNorms = true, QkNorm = true, TiedOutput = true, SlidingWindow = 4, Layers = 1,
            });
            var gemmaInfo = CliRunner.Run(["inspect", gemma]);
            Assert.True(gemmaInfo.ExitCode == 0, gemmaInfo.StdErr);
            Assert.Contains("\nruns:     yes\n", gemmaInfo.StdOut);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void CliInspectsALegacyFile()
    {
        var r = CliRunner.Run(["inspect", TestPaths.SharedFile("vocab", "ggml-vocab-llama-ggjt-v1.bin"), "--array-items", "3"]);
        Assert.True(r.ExitCode == 0, r.StdErr);
        Assert.Contains("format:   ggjt v1", r.StdOut);
        Assert.Contains("[string x 32000]", r.StdOut);
        Assert.Contains("... (31,997 more)]", r.StdOut);
    }

    [Fact]
    public void CliRejectsTheUndefinedMetadataTypeOnOneLine()
    {
        string path = TestPaths.SharedFile("vocab", "test_writer.gguf");
        var r = CliRunner.Run(["inspect", path]);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.StdOut);
        Assert.Equal($"error: {path}: invalid model file at byte 204: invalid GGUF type 13 for 'dict1'", r.StdErr.TrimEnd());

        var missing = CliRunner.Run(["inspect", "/nonexistent/model.gguf"]);
        Assert.Equal(1, missing.ExitCode);
        Assert.StartsWith("error: ", missing.StdErr);
        Assert.Single(missing.StdErr.TrimEnd().Split('\n'));
    }
}

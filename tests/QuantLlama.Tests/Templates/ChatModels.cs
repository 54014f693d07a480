using QuantLlama.Gguf;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Templates;

/// <summary>
/// Chat models for tests: stories260K's weights (llama.cpp's F32 conversion) with a real chat template from
/// ../shared/chat-templates and the template's special tokens added to the vocabulary as control tokens (their
/// embedding and output rows small random values), written by our GGUF writer.
/// </summary>
internal static class ChatModels
{
    public static readonly string[] Llama3Tokens = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"];
    public static readonly string[] ChatMLTokens = ["<|im_start|>", "<|im_end|>"];

    public static string Llama3(string directory) => Write(directory, "meta-llama-Llama-3.1-8B-Instruct", Llama3Tokens);

    public static string ChatML(string directory) => Write(directory, "Qwen-Qwen2.5-7B-Instruct", ChatMLTokens);

    public static string Template(string name) => File.ReadAllText(TestPaths.SharedFile("chat-templates", "templates", name + ".jinja"));

    public static string Write(string directory, string templateName, string[] specialTokens)
    {
        string path = Path.Combine(directory, $"stories260K-{templateName}.gguf");
        using var source = GgufFile.Open(TestPaths.SharedFile("llamacpp", "stories260K.gguf"));
        var m = source.Metadata;
        var writer = new GgufWriter().CopyMetadataFrom(source);
        writer.Set("tokenizer.ggml.tokens", [.. m.GetStringArray("tokenizer.ggml.tokens"), .. specialTokens]);
        writer.Set("tokenizer.ggml.scores", [.. m.GetFloatArray("tokenizer.ggml.scores"), .. specialTokens.Select(_ => 0f)]);
        writer.Set("tokenizer.ggml.token_type", [.. m.GetIntArray("tokenizer.ggml.token_type"), .. specialTokens.Select(_ => GgufTokenTypeControl)]);
        writer.Set("tokenizer.chat_template", Template(templateName));
        var rng = new Random(7);
        foreach (var t in source.Tensors)
        {
            byte[] bytes = source.GetTensorData(t).ToArray();
            if (t.Name is "token_embd.weight" or "output.weight")
            {
                if (t.Type != GgmlType.F32) throw new InvalidOperationException($"{t.Name} is {t.Type}, expected F32");
                int dim = (int)t.Dimensions[0];
                var extra = new float[dim * specialTokens.Length];
                for (int i = 0; i < extra.Length; i++) extra[i] = (rng.NextSingle() - 0.5f) * 0.1f;
                bytes = [.. bytes, .. System.Runtime.InteropServices.MemoryMarshal.AsBytes(extra.AsSpan()).ToArray()];
                writer.AddTensor(t.Name, t.Type, [dim, t.Dimensions[1] + specialTokens.Length], bytes);
            }
            else
            {
                writer.AddTensor(t.Name, t.Type, t.Dimensions, bytes);
            }
        }
        writer.Write(path);
        return path;
    }

    private const int GgufTokenTypeControl = 3;
}

using System.CommandLine;
using QuantLlama.Generation;
using QuantLlama.Gguf;
using QuantLlama.Hub;
using QuantLlama.Models;

namespace QuantLlama.Cli.Commands;

/// <summary>`quantllama inspect FILE`: format, whether we run it, metadata and tensor table of a GGUF or legacy GGML file.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var file = new Argument<FileInfo>("FILE") { Description = "a GGUF file or a legacy ggml/ggmf/ggjt file" };
        var json = new Option<bool>("--json") { Description = "print machine-readable JSON instead of text" };
        var arrayItems = new Option<int>("--array-items")
        {
            Description = "leading items shown of each metadata array (-1: all)",
            DefaultValueFactory = _ => ModelInspector.DefaultArrayItems,
        };
        var command = new Command("inspect", "Show a model file's format, metadata and tensors.");
        command.Arguments.Add(file);
        command.Options.Add(json);
        command.Options.Add(arrayItems);
        command.SetAction(parseResult =>
        {
            string path = parseResult.GetValue(file)!.FullName;
            using var model = ModelFileLoader.Open(path);
            int items = parseResult.GetValue(arrayItems);
            var family = ChatTemplate.Detect(model.Metadata.ContainsKey("tokenizer.chat_template")
                && model.Metadata.GetValue("tokenizer.chat_template").Value is string template ? template : null);
            string? familyName = family == ChatTemplateFamily.None ? null : family.ToString();
            string? whyNot = LlamaModel.WhyNotRunnable(model);
            Console.Out.Write(parseResult.GetValue(json)
                ? ModelInspector.FormatJson(model, items, familyName, verdictKnown: true, whyNot) + "\n"
                : ModelInspector.FormatText(model, items, familyName, verdictKnown: true, whyNot));
            return 0;
        });
        return command;
    }
}

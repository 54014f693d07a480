using System.CommandLine;
using System.Text;
using System.Text.Json;
using QuantLlama.Gguf;
using QuantLlama.Templates;
using QuantLlama.Tokenizers;

namespace QuantLlama.Cli.Commands;

/// <summary>
/// `quantllama chat-template`: renders a chat template (a .jinja file, or a model's tokenizer.chat_template) for the
/// conversation in a JSON file and prints the prompt text exactly, as Hugging Face's apply_chat_template would.
/// </summary>
public static class ChatTemplateCommand
{
    public static Command Create()
    {
        var template = new Argument<FileInfo?>("TEMPLATE") { Description = "a Jinja chat template file", Arity = ArgumentArity.ZeroOrOne };
        var model = new Option<FileInfo?>("--model", "-m") { Description = "take the template (and BOS/EOS) from this GGUF file instead" };
        var context = new Option<FileInfo>("--context")
        {
            Description = "JSON with messages, add_generation_prompt, bos_token, eos_token and optionally tools",
            Required = true,
        };
        var command = new Command("chat-template", "Render a chat template for a conversation and print the prompt text.");
        command.Arguments.Add(template);
        command.Options.Add(model);
        command.Options.Add(context);
        command.SetAction(parseResult => CliErrors.Run(() =>
            Run(parseResult.GetValue(template), parseResult.GetValue(model), parseResult.GetValue(context)!)));
        return command;
    }

    private static int Run(FileInfo? templateFile, FileInfo? modelFile, FileInfo contextFile)
    {
        if ((templateFile == null) == (modelFile == null))
            throw new CliUsageException("give either a TEMPLATE file or --model FILE");
        JsonElement context;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(contextFile.FullName, Encoding.UTF8));
            context = document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{contextFile.Name}: not valid JSON ({e.Message})");
        }

        string source;
        string? bos = null, eos = null;
        if (templateFile != null)
        {
            source = File.ReadAllText(templateFile.FullName, Encoding.UTF8);
        }
        else
        {
            using var file = ModelFileLoader.Open(modelFile!.FullName);
            source = file.Metadata.GetStringOrNull("tokenizer.chat_template")
                ?? throw new CliUsageException($"{modelFile.Name} has no tokenizer.chat_template");
            var tokenizer = TokenizerFactory.FromMetadata(file.Metadata);
            if (tokenizer.BosId >= 0) bos = tokenizer.TokenToPiece(tokenizer.BosId);
            if (tokenizer.EosId >= 0) eos = tokenizer.TokenToPiece(tokenizer.EosId);
        }

        string text = ChatTemplateRenderer.RenderJson(source, context, bos, eos);
        // The exact text: no newline added, UTF-8 whatever the console's encoding.
        using var stdout = Console.OpenStandardOutput();
        stdout.Write(new UTF8Encoding(false).GetBytes(text));
        return 0;
    }
}

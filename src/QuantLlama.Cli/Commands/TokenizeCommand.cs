using System.CommandLine;
using System.Text;
using QuantLlama.Gguf;
using QuantLlama.Tokenizers;

namespace QuantLlama.Cli.Commands;

/// <summary>`quantllama tokenize`: text in, token ids (and pieces) out, with the model's own vocabulary.</summary>
public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "Model file (GGUF or legacy GGML) whose vocabulary to use" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "A Hugging Face tokenizer.json to use instead of the model's vocabulary" };
        var pieces = new Option<bool>("--pieces") { Description = "Print one token per line: id and the text it stands for" };
        var noBos = new Option<bool>("--no-bos") { Description = "Do not add BOS/EOS even when the vocabulary asks for them" };
        var parseSpecial = new Option<bool>("--parse-special") { Description = "Recognise special tokens (<s>, <|eot_id|>, ...) written in the text" };
        var text = new Argument<string?>("text") { Description = "The text to tokenize (read from standard input when absent)", Arity = ArgumentArity.ZeroOrOne };

        var command = new Command("tokenize", "Print the token ids of a text");
        command.Options.Add(model);
        command.Options.Add(tokenizer);
        command.Options.Add(pieces);
        command.Options.Add(noBos);
        command.Options.Add(parseSpecial);
        command.Arguments.Add(text);
        command.SetAction(parseResult => CliErrors.Run(() => Run(
            parseResult.GetValue(model), parseResult.GetValue(tokenizer), parseResult.GetValue(text),
            parseResult.GetValue(pieces), parseResult.GetValue(noBos), parseResult.GetValue(parseSpecial))));
        return command;
    }

    private static int Run(string? modelPath, string? tokenizerPath, string? text, bool pieces, bool noBos, bool parseSpecial)
    {
        if (modelPath == null && tokenizerPath == null)
            throw new CliUsageException("give --model FILE (or --tokenizer tokenizer.json)");
        ITokenizer tok;
        if (tokenizerPath != null)
        {
            tok = TokenizerFactory.FromHuggingFaceJson(tokenizerPath);
        }
        else
        {
            using var file = ModelFileLoader.Open(modelPath!);
            tok = TokenizerFactory.FromMetadata(file.Metadata);
        }
        text ??= Console.In.ReadToEnd();

        var ids = tok.Encode(text, addSpecial: !noBos, parseSpecial: parseSpecial);
        var output = new StringBuilder();
        if (!pieces)
        {
            output.AppendJoin(' ', ids).Append('\n');
        }
        else
        {
            foreach (int id in ids) output.Append($"{id,6} -> '{Show(tok, id)}'\n");
        }
        Console.Out.Write(output.ToString());
        Console.Out.Flush();
        return 0;
    }

    /// <summary>The text a token stands for; its vocabulary piece when that is nothing or not whole UTF-8 (control and byte tokens).</summary>
    private static string Show(ITokenizer tok, int id)
    {
        var bytes = tok.TokenToBytes(id);
        if (bytes.Length == 0) return tok.TokenToPiece(id);
        try
        {
            return new UTF8Encoding(false, true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return tok.TokenToPiece(id);
        }
    }
}

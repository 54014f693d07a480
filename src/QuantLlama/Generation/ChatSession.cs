using System.Runtime.CompilerServices;
using QuantLlama.Models;
using QuantLlama.Sampling;
using QuantLlama.Tokenizers;

namespace QuantLlama.Generation;

/// <summary>
/// A conversation with a chat model over one <see cref="InferenceContext"/>: the messages so far, rendered with the
/// model's chat format at every turn and tokenized with special tokens parsed. The context keeps what it already
/// computed, so each turn computes only its new tokens. Generation stops at EOS/EOT and the format's end-of-turn
/// tokens. One turn at a time.
/// </summary>
public sealed class ChatSession
{
    private readonly ITokenizer _tokenizer;
    private readonly IChatFormatter _formatter;
    private readonly TextGenerator _generator;
    private readonly List<ChatTurn> _messages = [];

    public ChatSession(InferenceContext context, ITokenizer tokenizer, IChatFormatter formatter, string? systemPrompt = null)
    {
        _tokenizer = tokenizer;
        _formatter = formatter;
        _generator = new TextGenerator(context, tokenizer, EndOfTurnIds(tokenizer, formatter));
        if (!string.IsNullOrEmpty(systemPrompt)) _messages.Add(ChatTurn.System(systemPrompt));
    }

    /// <summary>The conversation so far, the system prompt included.</summary>
    public IReadOnlyList<ChatTurn> Messages => _messages;

    public InferenceContext Context => _generator.Context;

    /// <summary>The generator over <see cref="Context"/> that stops at the chat format's end-of-turn tokens too.</summary>
    public TextGenerator Generator => _generator;

    /// <summary>The token ids a conversation is fed to the model as (its rendered text, BOS added unless written).</summary>
    public IReadOnlyList<int> Tokenize(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true)
        => TokenizePrompt(_tokenizer, _formatter.Render(messages, addGenerationPrompt));

    /// <summary>
    /// Tokenizes rendered chat text with special tokens parsed; a BOS the template already wrote is not doubled
    /// (llama.cpp's rule).
    /// </summary>
    public static List<int> TokenizePrompt(ITokenizer tokenizer, string text)
    {
        var ids = tokenizer.Encode(text, addSpecial: true, parseSpecial: true);
        if (ids.Count >= 2 && tokenizer.BosId >= 0 && ids[0] == tokenizer.BosId && ids[1] == tokenizer.BosId) ids.RemoveAt(0);
        return ids;
    }

    /// <summary>Ends the conversation: the messages are forgotten except the system prompt.</summary>
    public void Clear() => _messages.RemoveAll(m => m.Role != "system");

    /// <summary>Adds the user's message and streams the reply, which joins the conversation when it ends.</summary>
    public async IAsyncEnumerable<GenerationUpdate> SendAsync(string userMessage, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancel = default)
    {
        var prompt = BeginTurn(userMessage);
        await foreach (var update in _generator.GenerateAsync(prompt, options ?? new GenerationOptions(), cancel))
        {
            if (update.Result != null) _messages.Add(ChatTurn.Assistant(update.Result.Text));
            yield return update;
        }
    }

    /// <summary>
    /// <see cref="SendAsync"/> for a console: the reply is written to <paramref name="output"/> as it comes.
    /// <paramref name="sampler"/> (optional) is kept across turns by the caller.
    /// </summary>
    public GenerationResult Send(string userMessage, GenerationOptions options, TextWriter output, CancellationToken cancel = default,
        LogitsProcessor? sampler = null)
    {
        var prompt = BeginTurn(userMessage);
        var result = _generator.Generate(prompt, options, output, cancel, sampler);
        _messages.Add(ChatTurn.Assistant(result.Text));
        return result;
    }

    /// <summary>
    /// Streams a reply to <paramref name="messages"/> (a whole conversation, as OpenAI-style clients send it) without
    /// keeping it: the session's own messages are unchanged, but the context's cache still serves the next call.
    /// </summary>
    public IAsyncEnumerable<GenerationUpdate> ReplyAsync(IReadOnlyList<ChatTurn> messages, GenerationOptions options, CancellationToken cancel = default)
        => _generator.GenerateAsync(Tokenize(messages), options, cancel);

    private IReadOnlyList<int> BeginTurn(string userMessage)
    {
        var messages = new List<ChatTurn>(_messages) { ChatTurn.User(userMessage) };
        var prompt = Tokenize(messages);
        if (prompt.Count > Context.ContextSize) throw new ContextFullException(Context.ContextSize, prompt.Count);
        _messages.Add(messages[^1]);
        return prompt;
    }

    /// <summary>The ids of the format's end-of-turn tokens that are single tokens in this vocabulary.</summary>
    public static IEnumerable<int> EndOfTurnIds(ITokenizer tokenizer, IChatFormatter formatter)
    {
        foreach (string piece in formatter.EndOfTurnTokens)
        {
            var ids = tokenizer.Encode(piece, addSpecial: false, parseSpecial: true);
            if (ids.Count == 1) yield return ids[0];
        }
    }
}

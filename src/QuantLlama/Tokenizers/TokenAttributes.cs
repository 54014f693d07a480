namespace QuantLlama.Tokenizers;

/// <summary>Token attributes as llama.cpp keeps them (from tokenizer.ggml.token_type, plus its name-based fixes).</summary>
[Flags]
public enum TokenAttributes
{
    Undefined = 0,
    Unknown = 1 << 0,
    Unused = 1 << 1,
    Normal = 1 << 2,
    Control = 1 << 3,
    UserDefined = 1 << 4,
    Byte = 1 << 5,
    LStrip = 1 << 7,
    RStrip = 1 << 8,
}

/// <summary>The values of tokenizer.ggml.token_type (llama.cpp's llama_token_type).</summary>
public static class GgufTokenType
{
    public const int Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;

    public static TokenAttributes ToAttributes(int type) => type switch
    {
        Unknown => TokenAttributes.Unknown,
        Unused => TokenAttributes.Unused,
        Normal => TokenAttributes.Normal,
        Control => TokenAttributes.Control,
        UserDefined => TokenAttributes.UserDefined,
        Byte => TokenAttributes.Byte,
        _ => TokenAttributes.Undefined,
    };
}

using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace QuantLlama.Server;

/// <summary>Request bodies read as JSON, with every way they can be wrong turned into a 4xx.</summary>
internal static class HttpJson
{
    public static async Task<JsonElement> ReadBodyAsync(HttpContext http, long limit)
    {
        if (http.Request.ContentLength > limit) throw TooLarge(limit);
        try
        {
            using var document = await JsonDocument.ParseAsync(http.Request.Body, default, http.RequestAborted);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest("the request body is not valid JSON: " + e.Message);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(limit);
        }
    }

    /// <summary>
    /// Runs a request reader. Text that is not valid UTF-8 passes the JSON parser and surfaces here, when the string
    /// is read (the readers check each member's kind first, so this is the one way to get there).
    /// </summary>
    public static T Parse<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (InvalidOperationException e)
        {
            throw ApiException.BadRequest("the request body is not valid UTF-8: " + e.Message);
        }
    }

    private static ApiException TooLarge(long limit)
        => new(StatusCodes.Status413PayloadTooLarge, $"the request body is larger than {limit} bytes", "invalid_request_error", code: "request_too_large");
}

/// <summary>Typed reads of a request's JSON members, a wrong type becoming a 400 that names the member.</summary>
internal static class JsonMembers
{
    internal static void RequireObject(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("the request body must be a JSON object");
    }

    /// <summary>A member of an object; a JSON null counts as absent.</summary>
    internal static JsonElement? Optional(JsonElement obj, string name)
        => obj.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    internal static string String(JsonElement e, string param)
        => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw ApiException.BadRequest($"'{param}' must be a string", param);

    internal static bool Bool(JsonElement e, string param) => e.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw ApiException.BadRequest($"'{param}' must be a boolean", param),
    };

    internal static long Integer(JsonElement e, string param)
        => e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out long n) ? n : throw ApiException.BadRequest($"'{param}' must be an integer", param);
}

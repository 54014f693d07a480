using System.Net;

namespace QuantLlama.Server;

/// <summary>A request the server refuses, with the status and the fields of OpenAI's error body.</summary>
public sealed class ApiException(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public static ApiException BadRequest(string message, string? param = null, string? code = null)
        => new((int)HttpStatusCode.BadRequest, message, "invalid_request_error", param, code);

    public static ApiException Unsupported(string param, string what)
        => new((int)HttpStatusCode.BadRequest, $"{what} is not supported by this server", "invalid_request_error", param, "unsupported_parameter");
}

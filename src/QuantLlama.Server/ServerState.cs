using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace QuantLlama.Server;

/// <summary>What the endpoints share: the options, the model once loaded, and the metrics.</summary>
internal sealed class ServerState(ServerOptions options)
{
    private volatile LoadedModel? _model;
    private volatile string? _loadError;

    public ServerOptions Options { get; } = options;

    public string ModelId { get; } = options.EffectiveModelId;

    public ServerMetrics Metrics { get; } = new();

    public DateTimeOffset Started { get; } = DateTimeOffset.UtcNow;

    /// <summary>The model, or null while it loads.</summary>
    public LoadedModel? Model
    {
        get => _model;
        set => _model = value;
    }

    /// <summary>Why the model could not be loaded; null while it loads or once it has.</summary>
    public string? LoadError
    {
        get => _loadError;
        set => _loadError = value;
    }

    /// <summary>The model; a request that arrives while it loads (or after loading failed) gets 503.</summary>
    public LoadedModel RequireModel() => _model ?? throw NotReady();

    /// <summary>503: llama-server's "Loading model", or why loading failed.</summary>
    public ApiException NotReady() => _loadError is { } error
        ? new ApiException(StatusCodes.Status503ServiceUnavailable, "the model could not be loaded: " + error, "unavailable_error", code: "model_load_failed")
        : new ApiException(StatusCodes.Status503ServiceUnavailable, "Loading model", "unavailable_error", code: "model_loading");

    /// <summary>
    /// Reads a request for the loaded model: 503 while it loads, then the body as a JSON object handed to
    /// <paramref name="read"/>, every way the body can be wrong becoming a 4xx.
    /// </summary>
    public async Task<(LoadedModel Model, T Request)> ReadRequestAsync<T>(HttpContext http, Func<LoadedModel, JsonElement, T> read)
    {
        var model = RequireModel();
        var body = await HttpJson.ReadBodyAsync(http, Options.MaxRequestBodyBytes);
        return (model, HttpJson.Parse(() =>
        {
            JsonMembers.RequireObject(body);
            return read(model, body);
        }));
    }
}

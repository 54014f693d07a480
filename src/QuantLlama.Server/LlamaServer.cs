using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace QuantLlama.Server;

/// <summary>
/// An OpenAI-compatible HTTP server on Kestrel. <see cref="StartAsync"/> listens at once and loads the model in the
/// background: <c>/health</c> answers 503 until the model is loaded, then 200. Stopping (Ctrl-C under the console
/// host) lets in-flight requests finish within <see cref="ServerOptions.ShutdownTimeout"/>.
/// </summary>
public sealed class LlamaServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ServerState _state;
    private readonly Task<LoadedModel> _loading;

    private LlamaServer(WebApplication app, ServerState state, Task<LoadedModel> loading, Uri baseAddress)
    {
        _app = app;
        _state = state;
        _loading = loading;
        BaseAddress = baseAddress;
    }

    /// <summary>Where the server listens, e.g. http://127.0.0.1:8080/.</summary>
    public Uri BaseAddress { get; }

    /// <summary>Completes when the model is loaded; faults with the reason when it cannot be.</summary>
    public Task ModelLoaded => _loading;

    /// <summary>The slots, once the model is loaded.</summary>
    public SlotPool? Slots => _state.Model?.Slots;

    public ServerMetrics Metrics => _state.Metrics;

    /// <summary>
    /// Starts listening and begins loading the model (see <see cref="ModelLoaded"/>). Logs go to the console unless
    /// <paramref name="configureLogging"/> says otherwise (tests clear the providers).
    /// </summary>
    public static async Task<LlamaServer> StartAsync(ServerOptions options, Action<ILoggingBuilder>? configureLogging = null,
        CancellationToken cancel = default)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        // Per-request framework logs would drown the server's own; warnings and errors still come through.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        configureLogging?.Invoke(builder.Logging);
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.ShutdownTimeout);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            kestrel.Listen(ParseHost(options.Host), options.Port);
        });
        var state = new ServerState(options);
        builder.Services.AddSingleton(state);
        builder.Services.AddSingleton<CompletionEndpoints>();
        builder.Services.AddSingleton<ApiEndpoints>();

        var app = builder.Build();
        var logger = app.Services.GetRequiredService<ILogger<LlamaServer>>();
        app.Use((http, next) => HandleErrorsAsync(http, next, logger));
        if (options.ApiKey != null) app.Use((http, next) => RequireApiKeyAsync(http, next, options.ApiKey));
        MapEndpoints(app);

        try
        {
            await app.StartAsync(cancel);
        }
        catch
        {
            await app.DisposeAsync(); // e.g. the port is taken: nothing was loaded yet
            throw;
        }
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        logger.LogInformation("listening on {Address}; loading {Model} ({Slots} slots)", address, options.ModelPath, options.Parallel);
        var loading = Task.Run(() =>
        {
            try
            {
                var model = LoadedModel.Load(options);
                state.Model = model;
                logger.LogInformation("model loaded: {Config}, {Slots} slots of {Context} positions", model.Model.Config, model.Slots.Count, model.ContextSize);
                return model;
            }
            catch (Exception e)
            {
                state.LoadError = e.Message;
                logger.LogError(e, "cannot load {Model}", options.ModelPath);
                throw;
            }
        }, CancellationToken.None);
        return new LlamaServer(app, state, loading, new Uri(address.EndsWith('/') ? address : address + "/"));
    }

    /// <summary>Completes when the host stops: Ctrl-C or SIGTERM under a console, or <see cref="StopAsync"/>.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancel = default) => _app.WaitForShutdownAsync(cancel);

    /// <summary>Stops accepting requests and waits for the ones in flight (up to the shutdown timeout).</summary>
    public Task StopAsync(CancellationToken cancel = default) => _app.StopAsync(cancel);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        try
        {
            (await _loading).Dispose();
        }
        catch
        {
            // Loading failed: there is nothing to free, and the failure was logged and reported by ModelLoaded.
        }
    }

    private static void MapEndpoints(WebApplication app)
    {
        var completions = app.Services.GetRequiredService<CompletionEndpoints>();
        var api = app.Services.GetRequiredService<ApiEndpoints>();
        app.MapPost("/v1/chat/completions", completions.ChatAsync);
        app.MapPost("/v1/completions", completions.TextAsync);
        app.MapGet("/v1/models", api.Models);
        app.MapGet("/health", api.Health);
        app.MapPost("/tokenize", (Delegate)api.TokenizeAsync);
        app.MapPost("/detokenize", (Delegate)api.DetokenizeAsync);
        app.MapGet("/metrics", api.Metrics);
        app.MapFallback(http => throw new ApiException(StatusCodes.Status404NotFound, $"no endpoint {http.Request.Method} {http.Request.Path}",
            "invalid_request_error", code: "not_found"));
    }

    private static IPAddress ParseHost(string host)
    {
        if (host == "localhost") return IPAddress.Loopback;
        return IPAddress.TryParse(host, out var address) ? address : throw new ArgumentException($"the host must be an IP address or localhost, got '{host}'");
    }

    private static async Task RequireApiKeyAsync(HttpContext http, RequestDelegate next, string apiKey)
    {
        if (http.Request.Path.StartsWithSegments("/health"))
        {
            await next(http);
            return;
        }
        string header = http.Request.Headers.Authorization.ToString();
        const string scheme = "Bearer ";
        bool valid = header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)
            && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header[scheme.Length..].Trim()), Encoding.UTF8.GetBytes(apiKey));
        if (!valid)
        {
            http.Response.Headers.WWWAuthenticate = "Bearer";
            throw new ApiException(StatusCodes.Status401Unauthorized, header.Length == 0 ? "an API key is required (Authorization: Bearer KEY)" : "the API key is not valid",
                "invalid_request_error", code: "invalid_api_key");
        }
        await next(http);
    }

    /// <summary>Every failure becomes OpenAI's error body; a stream already under way gets it as a last event.</summary>
    private static async Task HandleErrorsAsync(HttpContext http, RequestDelegate next, ILogger logger)
    {
        ApiException error;
        try
        {
            await next(http);
            return;
        }
        catch (Exception) when (http.RequestAborted.IsCancellationRequested)
        {
            return; // the client went away (a cancelled wait or a failed write); there is no one to answer
        }
        catch (ApiException e)
        {
            error = e;
        }
        catch (BadHttpRequestException e)
        {
            error = new ApiException(e.StatusCode, e.Message);
        }
        catch (Exception e)
        {
            logger.LogError(e, "{Method} {Path} failed", http.Request.Method, http.Request.Path);
            error = new ApiException(StatusCodes.Status500InternalServerError, "internal error: " + e.Message, "server_error");
        }
        var body = new ErrorBody(new ErrorDetail(error.Message, error.Type, error.Param, error.Code));
        try
        {
            if (!http.Response.HasStarted)
            {
                http.Response.StatusCode = error.Status;
                await http.Response.WriteAsJsonAsync(body, OpenAiJson.Options);
            }
            else if (http.Response.ContentType == "text/event-stream")
            {
                await new ServerSentEvents(http.Response).WriteAsync(body, http.RequestAborted);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // The connection is gone.
        }
    }
}

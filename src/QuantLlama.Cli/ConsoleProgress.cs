using QuantLlama.Hub;

namespace QuantLlama.Cli;

/// <summary>The CLI's Hub settings: the environment's, with download progress drawn on stderr.</summary>
internal static class ConsoleProgress
{
    public static HubOptions HubOptions() => QuantLlama.Hub.HubOptions.FromEnvironment(
        new ConsoleDownloadProgress(Console.Error, interactive: !Console.IsErrorRedirected, TerminalWidth()));

    private static int TerminalWidth()
    {
        try
        {
            return Console.IsErrorRedirected ? 0 : Console.WindowWidth;
        }
        catch (Exception e) when (e is IOException or PlatformNotSupportedException or InvalidOperationException)
        {
            return 0;
        }
    }
}

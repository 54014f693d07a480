using QuantLlama.Gguf;
using QuantLlama.Templates.Jinja;

namespace QuantLlama.Cli;

/// <summary>Turns the errors a user can cause (bad files, bad values) into one line on stderr and exit code 1.</summary>
public static class CliErrors
{
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    public static bool IsUserError(Exception e) => e is GgufFormatException or FileNotFoundException
        or DirectoryNotFoundException or UnauthorizedAccessException or IOException or FormatException
        or ArgumentException or NotSupportedException or KeyNotFoundException or InvalidDataException
        or CliUsageException or JinjaException;
}

/// <summary>A command-line value that parses but makes no sense (an unknown model name, a bad combination).</summary>
public sealed class CliUsageException(string message) : Exception(message);

using System.Diagnostics;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Server;

/// <summary>`quantllama serve` as a user runs it: it listens, serves, and a termination signal ends it cleanly.</summary>
public sealed partial class ServeCommandTests
{
    [Fact]
    public async Task Serve_AnswersAChat_AndExitsCleanlyOnSigterm()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "sends a POSIX signal");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in (string[])[CliRunner.CliDll, "serve", "--model", LiveServer.ModelPath, "--port", "0", "--ctx", "256", "--parallel", "2"])
            psi.ArgumentList.Add(arg);
        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            // The address (port 0: chosen by the OS) is in the log; the model is ready once it says so.
            Uri? address = null;
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                if (ListeningLine().Match(line) is { Success: true } m) address = new Uri(m.Groups[1].Value);
                if (line.Contains("model loaded")) break;
            }
            Assert.NotNull(address);
            var output = process.StandardOutput.ReadToEndAsync();

            using var http = new HttpClient { BaseAddress = address };
            using var response = await http.PostAsJsonAsync("v1/chat/completions",
                new { messages = new[] { new { role = "user", content = "Once upon a time" } }, max_tokens = 8, temperature = 0 });
            string body = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, body);
            Assert.Equal(8, JsonDocument.Parse(body).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

            Assert.Equal(0, Kill(process.Id, Sigterm));
            await process.WaitForExitAsync();
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {await stderr}{await output}");
        }
        finally
        {
            if (!process.HasExited) process.Kill();
        }
    }

    [Fact]
    public void Serve_RefusesBadSettingsInOneLine()
    {
        var r = CliRunner.Run(["serve", "--model", LiveServer.ModelPath, "--parallel", "0"]);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("slot count must be positive", r.StdErr);
        Assert.DoesNotContain("   at ", r.StdErr);
    }

    private const int Sigterm = 15;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    [GeneratedRegex(@"listening on (http://\S+);")]
    private static partial Regex ListeningLine();
}

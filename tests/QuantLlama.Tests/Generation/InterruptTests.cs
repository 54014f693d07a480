using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using QuantLlama.Tests.Cli;

namespace QuantLlama.Tests.Generation;

/// <summary>
/// Ctrl-C (SIGINT) in chat mode, as llama.cpp users expect: during a reply it ends the reply and returns to the
/// prompt; the next turn is not affected; at the idle prompt it ends the program.
/// </summary>
public partial class InterruptTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task CtrlCEndsTheReplyThenAtTheIdlePromptEndsTheProgram()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "sends SIGINT with kill(2)");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        // A reply of up to 32768 tokens: far longer than the signal takes to arrive, even on a busy machine.
        foreach (var a in new[] { CliRunner.CliDll, "--model", TestPaths.SharedFile("llamacpp", "stories260K.gguf"), "--prompt", "chat",
                     "--ctx", "32768", "-n", "100000", "--temperature", "1" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = new Capture(p.StandardOutput.BaseStream);
        var stderr = new Capture(p.StandardError.BaseStream);
        try
        {
            await stderr.WaitFor(s => s.EndsWith("> ", StringComparison.Ordinal), Patience);
            for (int turn = 1; turn <= 2; turn++)
            {
                int outBefore = stdout.Text.Length;
                p.StandardInput.WriteLine("Once upon a time");
                p.StandardInput.Flush();
                // Some of the reply is out (beyond the echoed line), and the turn has not stopped by itself.
                await stdout.WaitFor(s => s.Length > outBefore + "Once upon a time".Length + 20, Patience);
                Assert.Equal(turn - 1, Count(stderr.Text, "stopped: interrupted"));
                Assert.Equal(0, Kill(p.Id, 2));
                await stderr.WaitFor(s => Count(s, "stopped: interrupted") == turn && s.EndsWith("> ", StringComparison.Ordinal), Patience);
                var generated = GeneratedLine().Matches(stderr.Text);
                Assert.True(int.Parse(generated[^1].Groups[1].Value) > 0, stderr.Text);
            }
            Assert.False(p.HasExited);
            Assert.Equal(0, Kill(p.Id, 2)); // at the idle prompt
            using var wait = new CancellationTokenSource(Patience);
            await p.WaitForExitAsync(wait.Token);
            Assert.DoesNotContain("Unhandled", stderr.Text);
        }
        finally
        {
            if (!p.HasExited) p.Kill();
        }
    }

    private static int Count(string text, string what) => (text.Length - text.Replace(what, "").Length) / what.Length;

    [System.Text.RegularExpressions.GeneratedRegex(@"(\d+) tokens generated")]
    private static partial System.Text.RegularExpressions.Regex GeneratedLine();

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    /// <summary>Everything a stream has written so far, readable while the process runs.</summary>
    private sealed class Capture
    {
        private readonly StringBuilder _text = new();
        private readonly SemaphoreSlim _changed = new(0);

        public Capture(Stream stream) => _ = Pump(stream);

        public string Text
        {
            get { lock (_text) return _text.ToString(); }
        }

        private async Task Pump(Stream stream)
        {
            var decoder = Encoding.UTF8.GetDecoder();
            var bytes = new byte[4096];
            var chars = new char[4096];
            int n;
            while ((n = await stream.ReadAsync(bytes)) > 0)
            {
                int c = decoder.GetChars(bytes, 0, n, chars, 0);
                lock (_text) _text.Append(chars, 0, c);
                _changed.Release();
            }
            _changed.Release();
        }

        public async Task WaitFor(Func<string, bool> condition, TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            while (!condition(Text))
            {
                try { await _changed.WaitAsync(cts.Token); }
                catch (OperationCanceledException) { Assert.Fail($"timed out waiting; the output so far:\n{Text}"); }
            }
        }
    }
}

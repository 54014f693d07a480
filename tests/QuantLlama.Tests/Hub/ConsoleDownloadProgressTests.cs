using QuantLlama.Hub;

namespace QuantLlama.Tests.Hub;

public class ConsoleDownloadProgressTests
{
    [Fact]
    public void RedirectedStderrGetsOneLineAtStartAndOneAtTheEnd()
    {
        var output = new StringWriter();
        var progress = new ConsoleDownloadProgress(output, interactive: false);

        progress.Start("owner/name/model.gguf", 2_500_000, 0);
        for (int i = 1; i <= 100; i++) progress.Report(i * 25_000);
        progress.Finish(true);

        string[] lines = output.ToString().TrimEnd('\n').Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.Equal("downloading owner/name/model.gguf (2.5 MB)", lines[0]);
        Assert.StartsWith("downloaded owner/name/model.gguf: 2.5 MB in ", lines[1]);
        Assert.DoesNotContain('\r', output.ToString());
    }

    [Fact]
    public void TerminalGetsABarRedrawnInPlaceWithSizeRateAndTimeLeft()
    {
        var output = new StringWriter();
        var progress = new ConsoleDownloadProgress(output, interactive: true);

        progress.Start("model.gguf", 1_000_000, 250_000);
        progress.Finish(true);

        string text = output.ToString();
        Assert.StartsWith("\rmodel.gguf [######------------------]  25.0% 250.0 kB/1.0 MB ", text);
        Assert.Contains("/s eta ", text);
        Assert.EndsWith("\n", text);
    }

    [Fact]
    public void BarLineIsShortenedToTheTerminalWidthFromTheLabelsStart()
    {
        var output = new StringWriter();
        var progress = new ConsoleDownloadProgress(output, interactive: true, width: 60);

        progress.Start("TheBloke/Llama-2-7B-Chat-GGML/llama-2-7b-chat.ggmlv3.q4_0.bin", 4_000_000_000, 0);

        string line = output.ToString().TrimStart('\r');
        Assert.Equal(59, line.Length);
        Assert.StartsWith("…", line);
        Assert.Contains("0.0% 0 B/4.00 GB", line);
    }
}

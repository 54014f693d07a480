namespace QuantLlama.Tests.Generation;

/// <summary>The README's library example (samples/QuantLlama.Samples) runs on stories260K.</summary>
public class SampleTests
{
    [Fact]
    public async Task TheLibraryExampleChatsAndStreams()
    {
        var output = new StringWriter();
        await QuantLlama.Samples.Program.RunAsync(TestPaths.SharedFile("llamacpp", "stories260K.gguf"), output);
        var lines = output.ToString().Split('\n');
        // stories260K has no chat template: the session continues the text, 32 greedy tokens, then the IChatClient answers.
        Assert.StartsWith(", there was a little girl named Lily.", lines[0]);
        Assert.Equal("[Length, 32 tokens]", lines[1]);
        Assert.StartsWith(" were playing in the park.", lines[2]);
    }
}

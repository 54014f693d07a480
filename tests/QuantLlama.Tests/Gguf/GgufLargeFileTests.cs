using System.Diagnostics;
using QuantLlama.Gguf;
using QuantLlama.Tensors;

namespace QuantLlama.Tests.Gguf;

public class GgufLargeFileTests
{
    /// <summary>
    /// A 3 GiB GGUF (a sparse file: the header is written, the data is a hole) opens without reading or copying its
    /// tensors: private memory grows by far less than the file, and tensor bytes are reachable through the mapping.
    /// </summary>
    [Fact]
    public unsafe void MultiGigabyteFileIsMappedNotCopied()
    {
        string dir = TestPaths.NewTempDirectory();
        string path = Path.Combine(dir, "big.gguf");
        try
        {
            const long Cols = 8192, Rows = 4096, TensorBytes = Cols * Rows * 4;
            var header = new RawGguf().Counts(24, 1).KvString("general.architecture", "llama");
            for (int i = 0; i < 24; i++) header.Tensor($"blk.{i}.w", [Cols, Rows], (uint)GgmlType.F32, (ulong)(i * TensorBytes));
            header.Align();
            byte[] headerBytes = header.ToArray();
            using (var stream = new FileStream(path, FileMode.CreateNew))
            {
                stream.Write(headerBytes);
                stream.SetLength(headerBytes.Length + 24 * TensorBytes);
            }

            using var process = Process.GetCurrentProcess();
            GC.Collect();
            process.Refresh();
            long privateBefore = process.PrivateMemorySize64;
            using var f = GgufFile.Open(path);
            process.Refresh();
            long growth = process.PrivateMemorySize64 - privateBefore;

            Assert.Equal(24, f.Tensors.Count);
            Assert.Equal(24 * TensorBytes, f.Tensors.Sum(t => t.ByteSize));
            var last = f.Tensors[^1];
            Assert.Equal(0, f.GetTensorPointer(last)[last.ByteSize - 1]);
            Assert.True(growth < 64 << 20, $"private memory grew by {growth:N0} bytes opening a {f.FileSize:N0}-byte file");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

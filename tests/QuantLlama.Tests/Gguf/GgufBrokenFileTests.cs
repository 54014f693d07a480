using QuantLlama.Gguf;

namespace QuantLlama.Tests.Gguf;

/// <summary>
/// A corpus of damaged GGUF files, one per kind of damage, each written to disk and opened: the reader must answer
/// with a <see cref="GgufFormatException"/> naming the file, the byte offset of the damage and the problem.
/// </summary>
public class GgufBrokenFileTests
{
    public sealed record BrokenCase(byte[] Bytes, string Problem, long Offset);

    private const uint F32 = 0, Q8_0 = 8;

    /// <summary>A valid prefix: header with the given counts, then one u32 entry "a" = 1.</summary>
    private static RawGguf Start(ulong tensors, ulong metadata, uint version = 3)
        => new RawGguf(version).Counts(tensors, metadata);

    public static readonly Dictionary<string, Func<BrokenCase>> Cases = new()
    {
        ["empty file"] = () => new([], "the file is empty", 0),
        ["wrong magic"] = () => new(new RawGguf(magic: 0x67676A74).Counts(0, 0).ToArray(), "not a GGUF file (magic 0x67676A74", 0),
        ["unknown version"] = () => new(new RawGguf(version: 4).Counts(0, 0).ToArray(), "unsupported GGUF version 4", 4),
        ["version zero"] = () => new(new RawGguf(version: 0).Counts(0, 0).ToArray(), "unsupported GGUF version 0", 4),
        ["big-endian file"] = () => new(new RawGguf(version: 0x03000000).Counts(0, 0).ToArray(), "big-endian", 4),
        ["truncated magic"] = () => new([0x47, 0x47], "the file ends while reading magic", 0),
        ["truncated counts"] = () => new(new RawGguf().U32(0).ToArray(), "the file ends while reading tensor count", 8),
        ["tensor count larger than the file"] = () => new(Start(1UL << 40, 0).ToArray(), "tensor count 1099511627776 is larger than the file", 8),
        ["tensor count plausible for the file but not after the metadata"] = () =>
            new(Start(3, 2).KvU32("a", 1).KvU32("b", 2).Zeros(40).ToArray(), "tensor count 3 is larger than the file can hold", 8),
        ["metadata count larger than the file"] = () => new(Start(0, 20).Zeros(200).ToArray(), "metadata count 20 is larger than the file can hold", 16),
        ["metadata count in v1 larger than the file"] = () => new(Start(0, 30, version: 1).Zeros(200).ToArray(), "metadata count 30 is larger than the file can hold", 12),
        ["key length larger than the file"] = () => new(Start(0, 1).U64(1UL << 50).U32(4).U8(0).ToArray(), "metadata key length 1125899906842624 is larger than the file", 24),
        ["key length past the end"] = () => new(Start(0, 1).U64(40).Bytes("abc"u8).U32(4).U32(0).ToArray(), "metadata key length 40 runs past the end of the file", 24),
        ["string value longer than the file"] = () => new(Start(0, 1).Str("s").U32(8).U64(ulong.MaxValue).Zeros(8).ToArray(), "'s' length 18446744073709551615 is larger than the file", 37),
        ["string value past the end"] = () => new(Start(0, 1).Str("s").U32(8).U64(30).Bytes("short"u8).ToArray(), "'s' length 30 runs past the end of the file", 37),
        ["undefined value type"] = () => new(Start(0, 1).Str("dict1").U32(13).U32(0).ToArray(), "invalid GGUF type 13", 37),
        ["undefined array element type"] = () => new(Start(0, 1).Str("arr").U32(9).U32(42).U64(0).ToArray(), "invalid GGUF type 42", 39),
        ["array count larger than the data left"] = () => new(Start(0, 1).Str("arr").U32(9).U32(4).U64(2000).Zeros(4000).ToArray(), "array 'arr' claims 2000 UInt32 elements", 43),
        ["string array count larger than the data left"] = () => new(Start(0, 1).Str("arr").U32(9).U32(8).U64(100).Zeros(64).ToArray(), "array 'arr' claims 100 String elements", 43),
        ["array of arrays nested too deep"] = () =>
        {
            var r = Start(0, 1).Str("deep").U32(9);
            for (int i = 0; i < 20; i++) r.U32(9).U64(1);
            return new(r.U32(4).U64(0).ToArray(), "'deep' nests arrays more than 8 deep", 40 + 8 * 12);
        },
        ["bool other than 0 or 1"] = () => new(Start(0, 1).Str("flag").U32(7).U8(2).ToArray(), "'flag' is a bool with value 2 (only 0 and 1 are valid)", 40),
        ["bool array with an invalid element"] = () => new(Start(0, 1).Str("flags").U32(9).U32(7).U64(3).U8(1).U8(0).U8(255).ToArray(), "element 2 of 'flags' is a bool with value 255", 55),
        ["value cut off by the end of the file"] = () => new(Start(0, 1).Str("big").U32(10).U32(7).ToArray(), "the file ends while reading 'big' (8 bytes needed, 4 left)", 39),
        ["duplicate metadata key"] = () => new(Start(0, 2).KvU32("k", 1).KvU32("k", 2).ToArray(), "duplicate metadata key 'k'", 41),
        ["alignment not a power of two"] = () => new(Start(0, 2).KvU32("a", 1).KvU32("general.alignment", 48).ToArray(), "general.alignment 48 is not a power of two", 41),
        ["alignment zero"] = () => new(Start(0, 1).KvU32("general.alignment", 0).ToArray(), "general.alignment 0 is not a power of two", 24),
        ["alignment huge"] = () => new(Start(0, 1).Str("general.alignment").U32(10).U64(ulong.MaxValue).ToArray(), "general.alignment 18446744073709551615 is not a power of two", 24),
        ["alignment not an integer"] = () => new(Start(0, 1).KvString("general.alignment", "32").ToArray(), "general.alignment has type String, expected an integer", 24),
        ["too many dimensions"] = () => new(Start(1, 0).Tensor("t", [1, 1, 1, 1, 1], F32, 0).Align().Zeros(32).ToArray(), "tensor 't' has 5 dimensions (at most 4)", 33),
        ["negative dimension"] = () => new(Start(1, 0).Tensor("t", [4, ulong.MaxValue], F32, 0).Align().Zeros(32).ToArray(), "dimension 1 = 18446744073709551615 is negative or too large", 45),
        ["dimension product overflows"] = () => new(Start(1, 0).Tensor("t", [1UL << 32, 1UL << 32], F32, 0).Align().Zeros(32).ToArray(), "tensor 't' has more elements than a 64-bit count can hold", 45),
        ["byte size overflows"] = () => new(Start(1, 0).Tensor("t", [1UL << 31, 1UL << 31], F32, 0).Align().Zeros(32).ToArray(), "tensor 't' byte size overflows", 33),
        ["unknown tensor type"] = () => new(Start(1, 0).Tensor("t", [32], 4, 0).Align().Zeros(32).ToArray(), "tensor 't' has unknown ggml type 4", 45),
        ["tensor type far out of range"] = () => new(Start(1, 0).Tensor("t", [32], 0xFFFFFFFF, 0).Align().Zeros(32).ToArray(), "tensor 't' has unknown ggml type 4294967295", 45),
        ["row not a whole number of blocks"] = () => new(Start(1, 0).Tensor("t", [33], Q8_0, 0).Align().Zeros(64).ToArray(), "tensor 't' row length 33 is not a multiple of the Q8_0 block size 32", 33),
        ["tensor offset past the end of the file"] = () => new(Start(1, 0).Tensor("t", [8], F32, 1UL << 60).Align().Zeros(32).ToArray(), "tensor 't' offset 1152921504606846976 lies past the end of the file", 49),
        ["tensor data past the end (truncated data)"] = () => new(Start(1, 0).Tensor("t", [64], F32, 0).Align().Zeros(100).ToArray(), "tensor 't' data (256 bytes at data offset 0) lies past the end of the file (100 data bytes); the file is truncated", 24),
        ["file ends before the data section"] = () => new(Start(1, 0).Tensor("t", [8], F32, 0).Zeros(3).ToArray(), "the file ends before its tensor data section", 57),
        ["misaligned tensor"] = () => new(Start(1, 0).Tensor("t", [8], F32, 4).Align().Zeros(64).ToArray(), "tensor 't' offset 4 is not aligned to 32 bytes", 24),
        ["misaligned under a custom alignment"] = () => new(Start(1, 1).KvU32("general.alignment", 64).Tensor("t", [8], F32, 32).Align(64).Zeros(128).ToArray(), "tensor 't' offset 32 is not aligned to 64 bytes", 57),
        ["overlapping tensors"] = () =>
        {
            var r = Start(2, 0).Mark("a").Tensor("a", [16], F32, 0).Mark("b").Tensor("b", [8], F32, 32).Align().Zeros(128);
            return new(r.ToArray(), "tensor 'b' overlaps tensor 'a'", r.At("b"));
        },
        ["duplicate tensor name"] = () =>
        {
            var r = Start(2, 0).Tensor("w", [8], F32, 0).Mark("dup").Tensor("w", [8], F32, 32).Align().Zeros(64);
            return new(r.ToArray(), "duplicate tensor name 'w'", r.At("dup"));
        },
        ["tensor info cut off"] = () => new(Start(1, 0).Str("tensor_name_long").U32(2).U64(8).ToArray(), "the file ends while reading dimension 1 of 'tensor_name_long'", 60),
    };

    public static IEnumerable<object[]> CaseNames() => Cases.Keys.Select(k => new object[] { k });

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void DamagedFileGivesAFormatErrorWithFileOffsetAndProblem(string caseName)
    {
        var c = Cases[caseName]();
        string path = Path.Combine(TestPaths.NewTempDirectory(), "broken.gguf");
        File.WriteAllBytes(path, c.Bytes);
        try
        {
            var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path).Dispose());
            Assert.Contains(c.Problem, e.Problem);
            Assert.Equal(c.Offset, e.Offset);
            Assert.Equal(path, e.FileName);
            Assert.StartsWith($"{path}: invalid model file at byte {c.Offset}: ", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public void ValidPrefixOfTheCorpusIsItselfValid()
    {
        // Guards the corpus: the shared prefix and a well-formed tensor parse, so each case fails for its own damage.
        var bytes = Start(1, 2).KvU32("a", 1).KvU32("general.alignment", 64).Tensor("t", [8], F32, 0).Align(64).Zeros(64).ToArray();
        unsafe
        {
            fixed (byte* p = bytes)
            {
                using var f = GgufFile.FromMemory(p, bytes.Length, "ok");
                Assert.Equal(64, f.Alignment);
                Assert.Equal(32, f.GetTensor("t").ByteSize);
            }
        }
    }

    [Fact]
    public void MissingFileIsNotAFormatError()
    {
        Assert.Throws<FileNotFoundException>(() => GgufFile.Open(Path.Combine(TestPaths.Shared, "no-such-dir", "absent.gguf")));
    }
}

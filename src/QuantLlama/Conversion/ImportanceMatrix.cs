using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using QuantLlama.Gguf;
using QuantLlama.Tensors;

namespace QuantLlama.Conversion;

/// <summary>
/// An importance matrix as llama-imatrix writes it and llama-quantize reads it: per weight matrix, the mean square
/// of the activations each input column met (one value per column, per expert for stacked experts), which the
/// quantizers use to weigh each column's rounding error.
/// Two files are read: the legacy binary one (int32 entry count; per entry int32 name length, name, int32 call count,
/// int32 value count, float sums; optionally int32 chunk count, int32 length and the dataset's name) and the GGUF one
/// (per matrix "NAME.in_sum2" sums and "NAME.counts" counts, F32; imatrix.datasets, imatrix.chunk_count).
/// Values are sums / count as llama-quantize computes them.
/// </summary>
public sealed class ImportanceMatrix
{
    private readonly Dictionary<string, float[]> _values;

    /// <summary>Per matrix name: [experts x columns] importance.</summary>
    public IReadOnlyDictionary<string, float[]> Values => _values;

    /// <summary>The text the matrix was computed on, as the file names it (the first, where it lists several).</summary>
    public string? Dataset { get; }

    /// <summary>Chunks of text the matrix was computed on (0 where the file does not say).</summary>
    public int ChunkCount { get; }

    private ImportanceMatrix(Dictionary<string, float[]> values, string? dataset, int chunkCount)
        => (_values, Dataset, ChunkCount) = (values, dataset, chunkCount);

    /// <summary>The importance of <paramref name="tensorName"/>'s columns, or null when the file has none.</summary>
    public float[]? Find(string tensorName) => _values.GetValueOrDefault(tensorName);

    /// <summary>The mixes llama-quantize refuses to make without an importance matrix.</summary>
    public static IReadOnlyList<string> RequiredBy { get; } = ["IQ1_S", "IQ1_M", "IQ2_S", "IQ2_XXS", "IQ2_XS", "Q2_K_S"];

    /// <summary>llama-quantize's refusal for those mixes.</summary>
    public const string RequiredMessage = "Please do not use IQ1_S, IQ1_M, IQ2_S, IQ2_XXS, IQ2_XS or Q2_K_S quantization without an importance matrix";

    /// <summary>
    /// llama_model_quantize's per-tensor rule: a tensor bound for one of these types cannot be quantized without an
    /// entry of the matrix (IQ1_M's token embeddings and output, and Q2_K outside the Q2_K_S mix or for the token
    /// embeddings, can).
    /// </summary>
    public static bool IsRequiredFor(GgmlType type, string tensorName, string mix) => type switch
    {
        GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ1_S => true,
        GgmlType.IQ1_M => tensorName != "token_embd.weight" && tensorName != "output.weight",
        GgmlType.Q2_K => mix == "Q2_K_S" && tensorName != "token_embd.weight",
        _ => false,
    };

    /// <summary>
    /// The importance [experts x columns] llama_model_quantize uses for <paramref name="tensor"/>: null when the file has
    /// no entry for it (said to <paramref name="log"/>); a size that is not the tensor's columns x experts is an
    /// error, except for token_embd.weight, which is then quantized without.
    /// </summary>
    public float[]? ForTensor(GgufTensorInfo tensor, Action<string> log)
    {
        var values = Find(tensor.Name);
        if (values == null)
        {
            log($"did not find weights for {tensor.Name}");
            return null;
        }
        long expected = tensor.Dimensions[0] * (tensor.Dimensions.Length > 2 ? tensor.Dimensions[2] : 1);
        if (values.Length == expected) return values;
        string message = $"imatrix size {values.Length} is different from tensor size {expected} for {tensor.Name}";
        if (tensor.Name != "token_embd.weight") throw new InvalidDataException(message);
        log(message);
        return null;
    }

    /// <summary>The keys llama-quantize adds to a file made with an importance matrix.</summary>
    public void WriteMetadata(GgufWriter writer, string path)
    {
        writer.Set("quantize.imatrix.file", path.Length > 127 ? path[..127] : path);
        if (Dataset != null) writer.Set("quantize.imatrix.dataset", Dataset.Length > 127 ? Dataset[..127] : Dataset);
        writer.Set("quantize.imatrix.entries_count", (uint)_values.Count);
        if (ChunkCount > 0) writer.Set("quantize.imatrix.chunks_count", (uint)ChunkCount);
    }

    /// <summary>Reads a GGUF or legacy importance matrix; <see cref="InvalidDataException"/> when it is neither.</summary>
    public static ImportanceMatrix Load(string path)
    {
        byte[] head = new byte[4];
        using (var probe = File.OpenRead(path))
            if (probe.ReadAtLeast(head, 4, throwOnEndOfStream: false) == 4 && BinaryPrimitives.ReadUInt32LittleEndian(head) == GgufFile.Magic)
                return LoadGguf(path);
        return LoadLegacy(File.ReadAllBytes(path), path);
    }

    /// <summary>The legacy .dat layout written by llama-imatrix before its GGUF files.</summary>
    public static ImportanceMatrix LoadLegacy(byte[] data, string name)
    {
        int offset = 0;
        int ReadInt(string what)
        {
            if (offset + 4 > data.Length) throw new InvalidDataException($"{name}: failed reading {what}");
            int v = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(offset));
            offset += 4;
            return v;
        }
        int entries = offset + 4 <= data.Length ? ReadInt("the entry count") : 0;
        if (entries < 1) throw new InvalidDataException($"{name}: no data in file");
        var values = new Dictionary<string, float[]>(StringComparer.Ordinal);
        for (int i = 0; i < entries; i++)
        {
            int length = ReadInt($"name for entry {i + 1}");
            if (length < 0 || offset + length > data.Length) throw new InvalidDataException($"{name}: failed reading name for entry {i + 1}");
            string entryName = Encoding.UTF8.GetString(data, offset, length).Split('\0')[0];
            offset += length;
            int calls = ReadInt($"number of values for entry {i}");
            int count = ReadInt($"number of values for entry {i}");
            if (count < 1 || (long)offset + 4L * count > data.Length) throw new InvalidDataException($"{name}: failed reading data for entry {i}");
            var sums = MemoryMarshal.Cast<byte, float>(data.AsSpan(offset, 4 * count)).ToArray();
            offset += 4 * count;
            // llama-quantize divides by the calls, as floats; a count of 0 leaves the sums as they are.
            if (calls > 0)
                for (int j = 0; j < sums.Length; j++) sums[j] /= calls;
            values[entryName] = sums;
        }
        int chunks = 0;
        string? dataset = null;
        if (offset + 4 <= data.Length)
        {
            chunks = ReadInt("the chunk count");
            if (offset + 4 <= data.Length)
            {
                int length = ReadInt("the dataset name");
                if (length > 0 && offset + length <= data.Length) dataset = Encoding.UTF8.GetString(data, offset, length).Split('\0')[0];
            }
        }
        return new ImportanceMatrix(values, dataset, chunks);
    }

    private static ImportanceMatrix LoadGguf(string path)
    {
        using var file = GgufFile.Open(path);
        var meta = file.Metadata;
        string? dataset = meta.GetArrayOrNull("imatrix.datasets") is { } datasets && datasets.ElementType == GgufValueType.String && datasets.Count > 0
            ? meta.GetStringArray("imatrix.datasets")[0] : null;
        int chunks = (int)meta.GetInteger("imatrix.chunk_count", 0);
        var values = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var sums in file.Tensors.Where(t => t.Name.EndsWith(".in_sum2", StringComparison.Ordinal)))
        {
            string matrix = sums.Name[..^".in_sum2".Length];
            var counts = file.FindTensor(matrix + ".counts");
            if (counts == null) throw new InvalidDataException($"{path}: mismatched sums and counts for {matrix}");
            if (sums.Type != GgmlType.F32 || counts.Type != GgmlType.F32)
                throw new InvalidDataException($"{path}: sums and counts for {matrix} must be F32");
            var s = MemoryMarshal.Cast<byte, float>(file.GetTensorData(sums)).ToArray();
            var c = MemoryMarshal.Cast<byte, float>(file.GetTensorData(counts));
            if (c.Length == 0) continue; // llama-quantize skips an entry without counts
            int perCount = s.Length / c.Length;
            for (int j = 0; j < c.Length; j++)
            {
                // Counts are whole numbers stored as floats (rounded as llama.cpp reads them); none means importance 1.
                float count = MathF.Round(c[j], MidpointRounding.AwayFromZero);
                for (int i = 0; i < perCount; i++)
                    s[j * perCount + i] = count > 0 ? s[j * perCount + i] / count : 1;
            }
            values[matrix] = s;
        }
        if (values.Count == 0) throw new InvalidDataException($"{path}: no data in file");
        return new ImportanceMatrix(values, dataset, chunks);
    }
}

using System.Runtime.InteropServices;
using QuantLlama.Gguf;
using QuantLlama.Quants;
using QuantLlama.Tensors;

namespace QuantLlama.Conversion;

/// <summary>A quantization target: one of llama.cpp's mixes (llama_ftype) or a single type for every tensor.</summary>
/// <param name="Name">As the user types it, e.g. "Q4_K_M".</param>
/// <param name="FileType">The llama_ftype number written to general.file_type.</param>
/// <param name="DefaultType">The type most weight matrices get.</param>
/// <param name="IsMix">False for a plain type chosen outside llama.cpp's list: every matrix gets it ("pure").</param>
public sealed record QuantizationTarget(string Name, int FileType, GgmlType DefaultType, bool IsMix);

/// <summary>One tensor's decision.</summary>
public sealed record TensorPlan(GgufTensorInfo Source, GgmlType Type, string? Warning);

/// <summary>
/// Quantizes a GGUF model the way llama-quantize does (llama_model_quantize): the same per-tensor type choices
/// (llama_tensor_get_type) and the same bytes (our quantizers are bit-exact with ggml_quantize_chunk), with an
/// importance matrix for the types whose quantizers here take one (IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS,
/// IQ2_S, IQ1_S, IQ1_M, Q2_K, Q4_K, Q5_K, Q6_K; F16 and Q8_0 ignore it). Where llama-quantize gives up on a tensor
/// whose rows do not divide into blocks of the fallback type, we keep that tensor in F16 and warn instead.
/// </summary>
public static class ModelQuantizer
{
    /// <summary>llama.cpp's mixes we offer, with their llama_ftype numbers.</summary>
    public static IReadOnlyList<QuantizationTarget> Mixes { get; } =
    [
        new("F32", 0, GgmlType.F32, true),
        new("F16", 1, GgmlType.F16, true),
        new("BF16", 32, GgmlType.BF16, true),
        new("Q4_0", 2, GgmlType.Q4_0, true),
        new("Q4_1", 3, GgmlType.Q4_1, true),
        new("Q8_0", 7, GgmlType.Q8_0, true),
        new("Q5_0", 8, GgmlType.Q5_0, true),
        new("Q5_1", 9, GgmlType.Q5_1, true),
        new("Q2_K", 10, GgmlType.Q2_K, true),
        new("Q3_K_S", 11, GgmlType.Q3_K, true),
        new("Q3_K_M", 12, GgmlType.Q3_K, true),
        new("Q3_K_L", 13, GgmlType.Q3_K, true),
        new("Q4_K_S", 14, GgmlType.Q4_K, true),
        new("Q4_K_M", 15, GgmlType.Q4_K, true),
        new("Q5_K_S", 16, GgmlType.Q5_K, true),
        new("Q5_K_M", 17, GgmlType.Q5_K, true),
        new("Q6_K", 18, GgmlType.Q6_K, true),
        new("IQ4_NL", 25, GgmlType.IQ4_NL, true),
        new("IQ4_XS", 30, GgmlType.IQ4_XS, true),
        new("IQ3_XS", 22, GgmlType.IQ3_S, true),
        new("IQ3_S", 26, GgmlType.IQ3_S, true),
        new("IQ3_M", 27, GgmlType.IQ3_S, true),
        new("IQ2_XXS", 19, GgmlType.IQ2_XXS, true),
        new("IQ2_XS", 20, GgmlType.IQ2_XS, true),
        new("IQ2_S", 28, GgmlType.IQ2_XS, true),
        new("IQ2_M", 29, GgmlType.IQ2_S, true),
        new("IQ1_S", 24, GgmlType.IQ1_S, true),
        new("IQ1_M", 31, GgmlType.IQ1_M, true),
    ];

    // Plain types accepted as targets besides the mixes (ggml types that are not llama.cpp file types).
    private static readonly GgmlType[] PlainTypes = [GgmlType.Q8_1, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q8_K];

    /// <summary>Parses a mix name (Q4_K_M, q8_0, ...) or a plain type name (Q8_1, Q4_K); false when neither.</summary>
    public static bool TryParseTarget(string name, out QuantizationTarget target)
    {
        var mix = Mixes.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase));
        if (mix != null)
        {
            target = mix;
            return true;
        }
        if (GgmlTypeInfo.TryParse(name, out var type) && PlainTypes.Contains(type))
        {
            // llama_ftype has no number for these; "mostly Q4_K" files say Q4_K_S (14) etc. Use the nearest mix's.
            int fileType = type switch { GgmlType.Q3_K => 11, GgmlType.Q4_K => 14, GgmlType.Q5_K => 16, _ => 7 };
            target = new QuantizationTarget(type.ToString(), fileType, type, false);
            return true;
        }
        target = null!;
        return false;
    }

    /// <summary>All names <see cref="TryParseTarget"/> accepts, for help and error messages.</summary>
    public static string TargetNames => string.Join(", ", Mixes.Select(m => m.Name).Concat(PlainTypes.Select(t => t.ToString())));

    /// <summary>llama.cpp's order: tensors outside layers first, then layer by layer, by name within each.</summary>
    public static IReadOnlyList<GgufTensorInfo> LlamaOrder(IEnumerable<GgufTensorInfo> tensors)
        => tensors.OrderBy(t => LayerOf(t.Name)).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();

    private static int LayerOf(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int end = name.IndexOf('.', 4);
        return end > 4 && int.TryParse(name.AsSpan(4, end - 4), out int layer) ? layer : -1;
    }

    /// <summary>Chooses every tensor's type (in llama.cpp's order), as llama_model_quantize does.</summary>
    /// <param name="hasImportance">An importance matrix will be used (llama.cpp then keeps a few tensors at the mix's type).</param>
    public static IReadOnlyList<TensorPlan> Plan(IModelFile model, QuantizationTarget target, bool hasImportance = false)
    {
        var meta = model.Metadata;
        string arch = meta.GetStringOrNull("general.architecture") ?? "llama";
        long nHead = meta.GetInteger($"{arch}.attention.head_count", 1);
        long nHeadKv = meta.GetInteger($"{arch}.attention.head_count_kv", nHead);
        long nLayer = meta.GetInteger($"{arch}.block_count", 0);
        var state = new PlanState
        {
            Target = target,
            IsFalcon = arch == "falcon",
            NGqa = nHeadKv > 0 ? nHead / nHeadKv : 1,
            NExpert = meta.GetInteger($"{arch}.expert_count", 0),
            Is70B = arch == "llama" && nLayer == 80,
            HasOutput = model.FindTensor("output.weight") != null,
            NFfnDown = (int)nLayer,
            HasImportance = hasImportance,
        };
        var ordered = LlamaOrder(model.Tensors);
        state.NAttentionWv = ordered.Count(t => t.Name.Contains("attn_v.weight") || t.Name.Contains("attn_qkv.weight") || t.Name.Contains("attn_kv_b.weight"));
        return ordered.Select(t => PlanTensor(t, state)).ToList();
    }

    private sealed class PlanState
    {
        public required QuantizationTarget Target;
        public bool IsFalcon;
        public long NGqa;
        public long NExpert;
        public bool Is70B;
        public bool HasOutput;
        public int NAttentionWv;
        public int IAttentionWv;
        public int NFfnDown;
        public int IFfnDown;
        public int IFfnGate;
        public int IFfnUp;
        public bool HasImportance;
    }

    private static bool ShouldQuantize(GgufTensorInfo t)
    {
        string name = t.Name;
        int dims = t.Dimensions.Length;
        while (dims > 1 && t.Dimensions[dims - 1] == 1) dims--; // ggml_n_dims ignores trailing 1s
        return name.EndsWith("weight", StringComparison.Ordinal) && dims >= 2
            && !name.Contains("_norm.weight") && !name.Contains("ffn_gate_inp.weight")
            && !name.Contains("altup") && !name.Contains("laurel") && !name.Contains("per_layer_model_proj")
            && name != "position_embd.weight" && name != "token_types.weight"
            && !name.Contains("ssm_conv1d.weight") && !name.Contains("shortconv.conv.weight")
            && !name.Contains("time_mix_first.weight") && !name.Contains("time_mix_w0.weight")
            && !name.Contains("time_mix_w1.weight") && !name.Contains("time_mix_w2.weight")
            && !name.Contains("time_mix_v0.weight") && !name.Contains("time_mix_v1.weight")
            && !name.Contains("time_mix_v2.weight") && !name.Contains("time_mix_a0.weight")
            && !name.Contains("time_mix_a1.weight") && !name.Contains("time_mix_a2.weight")
            && !name.Contains("time_mix_g1.weight") && !name.Contains("time_mix_g2.weight")
            && !name.Contains("time_mix_decay_w1.weight") && !name.Contains("time_mix_decay_w2.weight")
            && !name.Contains("time_mix_lerp_fused.weight") && !name.Contains("attn_rel_b.weight");
    }

    private static TensorPlan PlanTensor(GgufTensorInfo t, PlanState s)
    {
        if (!ShouldQuantize(t)) return new TensorPlan(t, t.Type, null);
        var target = s.Target;
        var type = target.DefaultType;
        if (target.IsMix && IsBlockQuantized(type)) type = MixType(t, type, s);
        else
        {
            // Counters advance for every matching tensor, as in llama.cpp; pure targets do not use them.
            if (t.Name.Contains("attn_v.weight")) s.IAttentionWv++;
            if (t.Name.Contains("ffn_down")) s.IFfnDown++;
            else if (t.Name.Contains("ffn_gate")) s.IFfnGate++;
            else if (t.Name.Contains("ffn_up")) s.IFfnUp++;
        }
        return Fallback(t, type);
    }

    private static bool IsBlockQuantized(GgmlType type) => GgmlTypeInfo.BlockSize(type) > 1;

    private static bool UseMoreBits(int i, int n) => i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;

    /// <summary>The very-low-bit mixes, which share a branch of llama_tensor_get_type.</summary>
    private static bool IsVeryLowBit(string ftype) => ftype is "IQ2_XXS" or "IQ2_XS" or "IQ2_S" or "IQ2_M" or "IQ1_S" or "IQ1_M";

    /// <summary>llama_tensor_get_type's rules for the mixes we offer (the branch for the IQ3_XXS mix left out).</summary>
    private static GgmlType MixType(GgufTensorInfo t, GgmlType type, PlanState s)
    {
        string name = t.Name;
        string ftype = s.Target.Name;
        if (name == "output.weight" || (!s.HasOutput && name == "token_embd.weight"))
        {
            long nx = t.Dimensions[0];
            if (s.IsFalcon || nx % GgmlTypeInfo.BlockSize(type) != 0) type = GgmlType.Q8_0;
            else if (IsVeryLowBit(ftype)) type = GgmlType.Q5_K;
            else if (type != GgmlType.Q8_0) type = GgmlType.Q6_K;
        }
        else if (name == "token_embd.weight" || name == "per_layer_token_embd.weight")
        {
            // Only the IQ and TQ mixes change the token embeddings.
            if (ftype is "IQ2_XXS" or "IQ2_XS" or "IQ1_S" or "IQ1_M") type = GgmlType.Q2_K;
            else if (ftype is "IQ2_S" or "IQ2_M") type = GgmlType.IQ3_S;
        }
        else if (IsVeryLowBit(ftype))
        {
            bool iq2sm = ftype is "IQ2_S" or "IQ2_M";
            if (name.Contains("attn_v.weight"))
            {
                type = s.NGqa >= 4 || s.NExpert >= 4 ? GgmlType.Q4_K : iq2sm ? GgmlType.IQ3_S : GgmlType.Q2_K;
                s.IAttentionWv++;
            }
            else if (s.NExpert == 8 && name.Contains("attn_k.weight")) type = GgmlType.Q4_K;
            else if (name.Contains("ffn_down"))
            {
                if (s.IFfnDown < s.NFfnDown / 8) type = iq2sm ? GgmlType.IQ3_S : GgmlType.Q2_K;
                s.IFfnDown++;
            }
            else if (name.Contains("attn_output.weight"))
            {
                if (s.NExpert == 8) type = GgmlType.Q5_K;
                else if (ftype is "IQ1_S" or "IQ1_M") type = GgmlType.IQ2_XXS;
                else if (iq2sm) type = GgmlType.IQ3_S;
            }
        }
        else if (name.Contains("attn_v.weight"))
        {
            if (ftype == "Q2_K") type = s.NGqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (ftype == "Q3_K_M") type = s.IAttentionWv < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (ftype == "Q3_K_L") type = GgmlType.Q5_K;
            else if (ftype is "IQ3_XS" or "IQ3_S" && s.NGqa >= 4) type = GgmlType.Q4_K;
            else if (ftype == "IQ3_M") type = GgmlType.Q4_K;
            else if (ftype is "IQ4_NL" or "IQ4_XS" && s.NGqa >= 4) type = GgmlType.Q5_K;
            else if ((ftype == "Q4_K_M" || ftype == "Q5_K_M") && UseMoreBits(s.IAttentionWv, s.NAttentionWv)) type = GgmlType.Q6_K;
            else if (ftype == "Q4_K_S" && s.IAttentionWv < 4) type = GgmlType.Q5_K;
            if (s.Is70B && type is GgmlType.Q3_K or GgmlType.Q4_K) type = GgmlType.Q5_K;
            if (s.NExpert == 8) type = GgmlType.Q8_0;
            s.IAttentionWv++;
        }
        else if (name.Contains("attn_k.weight"))
        {
            if (s.NExpert == 8) type = GgmlType.Q8_0;
            else if (ftype == "IQ3_XS") type = GgmlType.IQ3_XXS;
        }
        else if (name.Contains("attn_q.weight"))
        {
            if (ftype == "IQ3_XS") type = GgmlType.IQ3_XXS;
        }
        else if (name.Contains("ffn_down"))
        {
            int iLayer = s.IFfnDown, nLayer = s.NFfnDown;
            if (s.NExpert > 1) LayerFromName(name, ref iLayer);
            if (ftype == "Q2_K") type = GgmlType.Q3_K;
            else if (ftype == "Q3_K_M")
                type = iLayer < nLayer / 16 ? GgmlType.Q5_K
                    : !s.IsFalcon || UseMoreBits(iLayer, nLayer) ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (ftype == "IQ3_M" && (iLayer < nLayer / 8 || (s.NExpert == 8 && UseMoreBits(iLayer, nLayer)))) type = GgmlType.Q4_K;
            else if (ftype == "Q3_K_L") type = s.IsFalcon ? GgmlType.Q4_K : GgmlType.Q5_K;
            else if (ftype == "Q4_K_M")
            {
                if (s.IsFalcon)
                    type = iLayer < nLayer / 16 ? GgmlType.Q6_K : UseMoreBits(iLayer, nLayer) ? GgmlType.Q5_K : GgmlType.Q4_K;
                else if (UseMoreBits(iLayer, nLayer)) type = GgmlType.Q6_K;
            }
            else if (ftype is "IQ4_NL" or "IQ4_XS" && iLayer < nLayer / 8 && !s.HasImportance) type = GgmlType.Q5_K;
            else if (ftype == "Q5_K_M" && UseMoreBits(iLayer, nLayer)) type = GgmlType.Q6_K;
            else if (ftype == "Q4_K_S" && !s.IsFalcon && iLayer < nLayer / 8) type = GgmlType.Q5_K;
            else if (ftype is "Q4_0" or "Q5_0" && s.HasImportance && iLayer < nLayer / 8) type = ftype == "Q4_0" ? GgmlType.Q4_1 : GgmlType.Q5_1;
            s.IFfnDown++;
        }
        else if (name.Contains("attn_output.weight"))
        {
            if (!s.IsFalcon)
            {
                if (s.NExpert == 8)
                {
                    if (ftype is "Q2_K" or "Q3_K_S" or "Q3_K_M" or "Q4_K_S" or "Q4_K_M" or "IQ4_NL" or "IQ4_XS" or "IQ3_XS" or "IQ3_S" or "IQ3_M")
                        type = GgmlType.Q5_K;
                }
                else if (ftype == "Q2_K") type = GgmlType.Q3_K;
                else if (ftype is "Q3_K_M" or "IQ3_M") type = GgmlType.Q4_K;
                else if (ftype == "Q3_K_L") type = GgmlType.Q5_K;
            }
            else if (ftype is "Q3_K_L" or "Q4_K_M" or "Q5_K_M") type = GgmlType.Q5_K; // falcon: more bits for the output projection
        }
        else if (name.Contains("attn_qkv.weight"))
        {
            if (ftype is "Q3_K_M" or "Q3_K_L" or "IQ3_M") type = GgmlType.Q4_K;
            else if (ftype == "Q4_K_M") type = GgmlType.Q5_K;
            else if (ftype == "Q5_K_M") type = GgmlType.Q6_K;
        }
        else if (name.Contains("ffn_gate") || name.Contains("ffn_up"))
        {
            bool gate = name.Contains("ffn_gate");
            int iLayer = gate ? s.IFfnGate : s.IFfnUp, nLayer = s.NFfnDown;
            if (s.NExpert > 1) LayerFromName(name, ref iLayer);
            if (ftype == "IQ3_XS" && iLayer >= nLayer / 8 && iLayer < 7 * nLayer / 8) type = GgmlType.IQ3_XXS;
            if (gate) s.IFfnGate++; else s.IFfnUp++;
        }
        return type;
    }

    private static void LayerFromName(string name, ref int layer)
    {
        int start = name.IndexOf("blk.", StringComparison.Ordinal);
        if (start < 0) return;
        int end = name.IndexOf('.', start + 4);
        if (end > start + 4 && int.TryParse(name.AsSpan(start + 4, end - start - 4), out int l)) layer = l;
    }

    /// <summary>Rows that do not divide into the chosen type's blocks: llama.cpp's fallbacks, then F16 (where llama.cpp stops).</summary>
    private static TensorPlan Fallback(GgufTensorInfo t, GgmlType type)
    {
        long nx = t.Dimensions[0];
        if (nx % GgmlTypeInfo.BlockSize(type) == 0) return new TensorPlan(t, type, null);
        GgmlType fallback = type switch
        {
            GgmlType.IQ4_XS or GgmlType.IQ3_XXS or GgmlType.IQ3_S or GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S
                or GgmlType.IQ1_S or GgmlType.IQ1_M => GgmlType.IQ4_NL,
            // Q4_0 as current llama.cpp has it (earlier releases chose IQ4_NL).
            GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => GgmlType.F16,
        };
        if (nx % GgmlTypeInfo.BlockSize(fallback) != 0) fallback = GgmlType.F16;
        string warning = $"{t.Name}: rows of {nx} are not a multiple of {GgmlTypeInfo.BlockSize(type)} ({type}); using {fallback}"
            + (fallback == GgmlType.F16 && type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1 or GgmlType.IQ4_NL
                ? " (llama-quantize stops here)" : "");
        return new TensorPlan(t, fallback, warning);
    }

    /// <summary>
    /// Quantizes INPUT into OUTPUT. Messages (per-tensor progress and warnings) go to <paramref name="log"/>.
    /// The output is written to a temporary file and renamed at the end, so it is never left half written.
    /// </summary>
    /// <param name="importancePath">An importance matrix file (see <see cref="ImportanceMatrix"/>), or null.</param>
    public static void Quantize(string inputPath, string outputPath, string targetName, Action<string> log, string? importancePath = null)
    {
        var importance = importancePath != null ? ImportanceMatrix.Load(importancePath) : null;
        bool needsMatrix = ImportanceMatrix.RequiredBy.Contains(targetName.ToUpperInvariant());
        if (needsMatrix && importance == null) throw new ArgumentException(ImportanceMatrix.RequiredMessage);
        if (!TryParseTarget(targetName, out var target))
            throw needsMatrix ? new NotSupportedException($"quantizing to {targetName.ToUpperInvariant()} is not implemented")
                : new ArgumentException($"unknown quantization type '{targetName}'; expected one of {TargetNames}");
        if (Path.GetFullPath(inputPath) == Path.GetFullPath(outputPath))
            throw new ArgumentException("the output must not overwrite the input");
        using var model = GgufFile.Open(inputPath);
        var plan = Plan(model, target, importance != null);
        var weights = plan.ToDictionary(p => p.Source.Name, p => p.Type != p.Source.Type ? importance?.ForTensor(p.Source, log) : null);
        foreach (var p in plan)
        {
            bool weighted = weights[p.Source.Name] != null;
            if (p.Type != p.Source.Type && !weighted && ImportanceMatrix.IsRequiredFor(p.Type, p.Source.Name, target.Name))
                throw new ArgumentException($"Missing importance matrix for tensor {p.Source.Name} in a very low-bit quantization");
            if (weighted && !Quantizer.IsSupportedWithImportance(p.Type))
                throw new NotSupportedException($"quantizing to {p.Type} (for {p.Source.Name}) with an importance matrix is not implemented");
            if (p.Type != p.Source.Type && !weighted && !Quantizer.IsSupported(p.Type))
                throw new NotSupportedException($"quantizing to {p.Type} (for {p.Source.Name}) is not available in this build");
            if (p.Type != p.Source.Type && !Dequantizer.IsSupported(p.Source.Type))
                throw new NotSupportedException($"{p.Source.Name} is stored as {p.Source.Type}, which cannot be read back for requantizing");
        }
        if (plan.Any(p => p.Type != p.Source.Type && GgmlTypeInfo.BlockSize(p.Source.Type) > 1))
            log($"warning: {inputPath} is already quantized; dequantizing and requantizing loses precision");

        var writer = new GgufWriter();
        writer.CopyMetadataFrom(model);
        writer.Set("general.quantization_version", 2u);
        writer.Set("general.file_type", (uint)target.FileType);
        importance?.WriteMetadata(writer, importancePath!);
        int index = 0;
        foreach (var p in plan)
        {
            int position = ++index;
            var source = p.Source;
            writer.AddTensor(source.Name, p.Type, source.Dimensions, stream =>
            {
                if (p.Warning != null) log($"warning: {p.Warning}");
                log($"[{position,4}/{plan.Count}] {source.Name,-36} {source.ShapeText,-20} {source.Type,-5} -> {p.Type}");
                WriteTensor(model, source, p.Type, weights[source.Name], stream);
            });
        }
        writer.Write(outputPath);
        log($"wrote {outputPath} ({target.Name}, {plan.Count} tensors, {new FileInfo(outputPath).Length / 1048576.0:F1} MiB)");
    }

    /// <param name="importance">[experts x columns] column importance, or null.</param>
    private static unsafe void WriteTensor(GgufFile model, GgufTensorInfo source, GgmlType type, float[]? importance, Stream stream)
    {
        var data = model.GetTensorData(source);
        if (type == source.Type)
        {
            stream.Write(data);
            return;
        }
        int cols = checked((int)source.Dimensions[0]);
        long rows = source.Rows, rowsPerExpert = source.Dimensions.Length > 1 ? source.Dimensions[1] : 1;
        long srcRowBytes = GgmlTypeInfo.RowBytes(source.Type, cols);
        long dstRowBytes = GgmlTypeInfo.RowBytes(type, cols);
        // Batches of rows of about 4M values, quantized in parallel; rows are independent.
        int batch = (int)Math.Max(1, Math.Min(rows, (4 << 20) / cols));
        var floats = new float[(long)batch * cols];
        var output = new byte[batch * dstRowBytes];
        byte* basePtr = model.GetTensorPointer(source);
        for (long r0 = 0; r0 < rows; r0 += batch)
        {
            int count = (int)Math.Min(batch, rows - r0);
            long first = r0;
            Parallel.For(0, count, i =>
            {
                var src = new ReadOnlySpan<byte>(basePtr + (first + i) * srcRowBytes, (int)srcRowBytes);
                var f = floats.AsSpan(i * cols, cols);
                Dequantizer.DequantizeRow(source.Type, src, f);
                var dst = output.AsSpan((int)(i * dstRowBytes), (int)dstRowBytes);
                if (importance == null) Quantizer.QuantizeRow(type, f, dst);
                else Quantizer.QuantizeRowWeighted(type, f, dst, importance.AsSpan((int)((first + i) / rowsPerExpert) * cols, cols));
            });
            stream.Write(output, 0, (int)(count * dstRowBytes));
        }
    }
}

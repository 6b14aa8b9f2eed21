using System.Globalization;
using Ertas.Core;
using Ertas.Mistral;

namespace Ertas.Gguf.Mixes;

/// <summary>What llama.cpp's type choice reads from the model's hyperparameters (llama architecture).</summary>
public sealed record MixModel(int LayerCount, int HeadCount, int KvHeadCount, int ExpertCount = 0)
{
    /// <summary>llama.cpp's <c>n_gqa()</c>: query heads per KV head, integer division.</summary>
    public int QueryHeadsPerKvHead => KvHeadCount == 0 ? 0 : HeadCount / KvHeadCount;

    /// <summary>llama.cpp calls an 80-layer llama with GQA "70B" and gives its attn_v more bits.</summary>
    public bool Is70B => LayerCount == 80 && HeadCount != KvHeadCount;

    public static MixModel FromConfig(MistralConfig config) =>
        new(config.NumHiddenLayers, config.NumAttentionHeads, config.NumKeyValueHeads);

    /// <summary>Reads <c>llama.block_count</c>, head counts and <c>llama.expert_count</c> (absent means 0).</summary>
    public static MixModel FromGguf(GgufReader reader)
    {
        uint Get(string template, uint? fallback)
        {
            var key = Keys.Llama(template);
            if (!reader.TryGet(key, out var entry))
                return fallback ?? throw new ErtasException(ErrorCode.GgufMissingKey, $"GGUF file has no '{key}', which quantization needs", reader.Path);
            return entry.Value switch
            {
                uint u => u,
                int i when i >= 0 => (uint)i,
                _ => throw new ErtasException(ErrorCode.GgufCorrupt, $"GGUF key '{key}' is {entry.Type}, expected UInt32", reader.Path),
            };
        }
        var heads = Get(Keys.Attention.HeadCount, null);
        return new MixModel((int)Get(Keys.LLM.BlockCount, null), (int)heads, (int)Get(Keys.Attention.HeadCountKv, heads),
            (int)Get("{arch}.expert_count", 0));
    }
}

/// <summary>A tensor as the planner sees it: GGUF name, current type, row-major shape (innermost last).</summary>
public sealed record MixTensor(string Name, GgmlType Type, long[] Shape)
{
    /// <summary>ggml's ne[0]: the row length, which block sizes must divide.</summary>
    public long RowLength => Shape[^1];

    /// <summary>ggml_n_dims: trailing dimensions of size 1 do not count, so a [1, n] weight is 1-D.</summary>
    public int SignificantDimensions
    {
        get
        {
            for (var d = 0; d < Shape.Length; d++)
                if (Shape[d] > 1)
                    return Shape.Length - d;
            return 1;
        }
    }
}

/// <summary>
/// llama.cpp's per-tensor type choice for a file-type mix (src/llama-quant.cpp: <c>tensor_allows_quantization</c>,
/// <c>llama_tensor_get_type_impl</c>, <c>tensor_type_fallback</c>), for the llama architecture and with the output
/// tensor quantized as llama-quantize does. The attn_v and ffn_down rules count tensors as llama.cpp visits them
/// (its loader's weight map: non-layer tensors first, then by layer number, then by name), not by the file's order;
/// every division is integer division, so with few layers the "first and last eighth" can be empty.
/// </summary>
public static class MixPlanner
{
    /// <summary>
    /// The type each tensor gets under <paramref name="mix"/>, by name. Tensors that are not quantized (norms, 1-D
    /// tensors) keep their type. Throws when a row length fits neither the chosen type nor its fallback and llama.cpp
    /// has no fallback either (it refuses such a file too).
    /// </summary>
    public static IReadOnlyDictionary<string, GgmlType> Plan(QuantizationMix mix, MixModel model, IReadOnlyList<MixTensor> tensors)
    {
        var ordered = tensors.OrderBy(t => LayerNumber(t.Name)).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
        var state = new State(mix, model)
        {
            AttentionVCount = ordered.Count(t => IsAttentionVLike(CategoryOf(t.Name))),
            HasTiedEmbeddings = ordered.All(t => CategoryOf(t.Name) != Category.Output),
        };
        var plan = new Dictionary<string, GgmlType>(StringComparer.Ordinal);
        foreach (var tensor in ordered)
        {
            if (!AllowsQuantization(tensor))
            {
                plan.Add(tensor.Name, tensor.Type);
                continue;
            }
            var type = mix.DefaultType;
            if (mix.IsQuantized)
                type = Fallback(tensor, Choose(state, tensor, type));
            plan.Add(tensor.Name, type);
        }
        return plan;
    }

    /// <summary>N of a <c>blk.N.</c> name, -1 for other tensors (llama_model_loader's weight_name_comparer).</summary>
    private static int LayerNumber(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal))
            return -1;
        var end = name.IndexOf('.', 4);
        return end > 4 && int.TryParse(name.AsSpan(4, end - 4), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var layer) ? layer : -1;
    }

    /// <summary>llama.cpp's <c>tensor_allows_quantization</c> for the names a llama-architecture file can hold.</summary>
    public static bool AllowsQuantization(MixTensor tensor)
    {
        if (tensor.SignificantDimensions < 2)
            return false;
        var name = tensor.Name;
        return name.EndsWith("weight", StringComparison.Ordinal)
            && !name.Contains("_norm.weight", StringComparison.Ordinal)
            // MoE router weights stay as they are.
            && !name.Contains("ffn_gate_inp.weight", StringComparison.Ordinal)
            && name != "position_embd.weight"
            && name != "token_types.weight";
    }

    private enum Category { TokenEmbedding, AttentionQ, AttentionV, AttentionK, AttentionQkv, AttentionKvB, AttentionOutput, FfnUp, FfnGate, FfnDown, Output, Other }

    private sealed class State(QuantizationMix mix, MixModel model)
    {
        public QuantizationMix Mix { get; } = mix;
        public MixModel Model { get; } = model;
        public int AttentionVCount { get; init; }
        public bool HasTiedEmbeddings { get; init; }
        public int AttentionVSeen { get; set; }
        public int FfnDownSeen { get; set; }
    }

    private static Category CategoryOf(string name)
    {
        bool Has(string part) => name.Contains(part, StringComparison.Ordinal);
        if (name == "output.weight") return Category.Output;
        if (name is "token_embd.weight" or "per_layer_token_embd.weight") return Category.TokenEmbedding;
        if (Has("attn_qkv.weight")) return Category.AttentionQkv;
        if (Has("attn_kv_b.weight")) return Category.AttentionKvB;
        if (Has("attn_v.weight")) return Category.AttentionV;
        if (Has("attn_k.weight")) return Category.AttentionK;
        if (Has("attn_q.weight")) return Category.AttentionQ;
        if (Has("attn_output.weight")) return Category.AttentionOutput;
        if (Has("ffn_up")) return Category.FfnUp;
        if (Has("ffn_gate")) return Category.FfnGate;
        if (Has("ffn_down")) return Category.FfnDown;
        return Category.Other;
    }

    private static bool IsAttentionVLike(Category c) => c is Category.AttentionV or Category.AttentionQkv or Category.AttentionKvB;

    /// <summary>The first and last eighth of the layers, and every third layer between them.</summary>
    public static bool UseMoreBits(int layer, int layerCount) =>
        layer < layerCount / 8 || layer >= 7 * layerCount / 8 || (layer - layerCount / 8) % 3 == 2;

    private static GgmlType Choose(State state, MixTensor tensor, GgmlType type)
    {
        var ftype = state.Mix.FileType;
        var model = state.Model;
        var category = CategoryOf(tensor.Name);

        if (category == Category.Output || (state.HasTiedEmbeddings && category == Category.TokenEmbedding))
        {
            // The output projection gets Q6_K unless the mix is Q8_0, or Q8_0 when its rows do not fit the mix's blocks.
            if (tensor.RowLength % type.Info().BlockSize != 0)
                return GgmlType.Q8_0;
            return type != GgmlType.Q8_0 ? GgmlType.Q6_K : type;
        }
        if (category == Category.TokenEmbedding)
            return type; // only the IQ and ternary mixes change token_embd

        if (IsAttentionVLike(category))
        {
            var index = state.AttentionVSeen++;
            switch (ftype)
            {
                case LlamaFileType.MostlyQ2_K:
                    type = model.QueryHeadsPerKvHead >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
                    break;
                case LlamaFileType.MostlyQ3_K_M:
                    type = index < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
                    break;
                case LlamaFileType.MostlyQ3_K_L:
                    type = GgmlType.Q5_K;
                    break;
                case LlamaFileType.MostlyQ4_K_M or LlamaFileType.MostlyQ5_K_M when UseMoreBits(index, state.AttentionVCount):
                    type = GgmlType.Q6_K;
                    break;
                case LlamaFileType.MostlyQ4_K_S when index < 4:
                    type = GgmlType.Q5_K;
                    break;
            }
            // 70B shares each attn_v across 8 heads: a few more bits there cost almost nothing.
            if (model.Is70B && type is GgmlType.Q3_K or GgmlType.Q4_K)
                type = GgmlType.Q5_K;
            if (model.ExpertCount == 8)
                type = GgmlType.Q8_0;
            return type;
        }

        switch (category)
        {
            case Category.AttentionK when model.ExpertCount == 8:
                return GgmlType.Q8_0;

            case Category.FfnDown:
            {
                var (layer, layers) = LayerOf(state, tensor, state.FfnDownSeen++);
                return ftype switch
                {
                    LlamaFileType.MostlyQ2_K => GgmlType.Q3_K,
                    LlamaFileType.MostlyQ3_K_M => layer < layers / 16 ? GgmlType.Q5_K : GgmlType.Q4_K,
                    LlamaFileType.MostlyQ3_K_L => GgmlType.Q5_K,
                    LlamaFileType.MostlyQ4_K_M => UseMoreBits(layer, layers) ? GgmlType.Q6_K : type,
                    LlamaFileType.MostlyQ5_K_M when UseMoreBits(layer, layers) => GgmlType.Q6_K,
                    LlamaFileType.MostlyQ4_K_S when layer < layers / 8 => GgmlType.Q5_K,
                    _ => type,
                };
            }

            case Category.AttentionOutput when model.ExpertCount == 8:
                return ftype is LlamaFileType.MostlyQ2_K or LlamaFileType.MostlyQ3_K_S or LlamaFileType.MostlyQ3_K_M
                    or LlamaFileType.MostlyQ4_K_S or LlamaFileType.MostlyQ4_K_M ? GgmlType.Q5_K : type;

            case Category.AttentionOutput:
                return ftype switch
                {
                    LlamaFileType.MostlyQ2_K => GgmlType.Q3_K,
                    LlamaFileType.MostlyQ3_K_M => GgmlType.Q4_K,
                    LlamaFileType.MostlyQ3_K_L => GgmlType.Q5_K,
                    _ => type,
                };

            default:
                return type;
        }
    }

    /// <summary>
    /// The layer index llama.cpp uses for ffn_down: its running count of ffn_down tensors seen (in name order), or,
    /// for mixture-of-experts models whose expert tensors are not in layer order, the number in the name.
    /// </summary>
    private static (int Layer, int Layers) LayerOf(State state, MixTensor tensor, int seen)
    {
        var layers = state.Model.LayerCount;
        if (state.Model.ExpertCount <= 1)
            return (seen, layers);
        var parts = tensor.Name.Split('.');
        if (parts.Length < 2 || parts[0] != "blk" || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var layer) || layer >= layers)
            throw new ErtasException(ErrorCode.GgufUnsupportedModel, $"cannot tell the layer of tensor '{tensor.Name}' (expected blk.N. with N < {layers})");
        return (layer, layers);
    }

    /// <summary>
    /// llama.cpp's <c>tensor_type_fallback</c>: a row length the chosen block size does not divide takes a type with
    /// 32-element blocks, and F16 when even 32 does not divide it. The 32-block types have no fallback.
    /// </summary>
    private static GgmlType Fallback(MixTensor tensor, GgmlType type)
    {
        var rowLength = tensor.RowLength;
        if (rowLength % type.Info().BlockSize == 0)
            return type;
        var fallback = type switch
        {
            GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => throw new ErtasException(ErrorCode.GgufUnsupportedType,
                $"tensor '{tensor.Name}' has rows of {rowLength} elements, which {type} blocks of {type.Info().BlockSize} do not divide, " +
                "and llama.cpp defines no fallback for it; choose a K-quant mix (Q*_K*) or F16"),
        };
        return rowLength % fallback.Info().BlockSize == 0 ? fallback : GgmlType.F16;
    }
}

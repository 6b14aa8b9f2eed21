using System.Text.Json;
using System.Text.Json.Serialization;
using Ertas.Core;

namespace Ertas.Mistral;

/// <summary>
/// A Hugging Face Mistral <c>config.json</c>. Defaults are Mistral 7B v0.1's published values, so a config that
/// leaves a field out means what Hugging Face's <c>MistralConfig</c> would mean.
/// </summary>
public sealed record MistralConfig
{
    [JsonPropertyName("architectures")] public string[] Architectures { get; init; } = ["MistralForCausalLM"];
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "mistral";
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 4096;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 14336;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 32;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 32;
    [JsonPropertyName("num_key_value_heads")] public int NumKeyValueHeads { get; init; } = 8;
    /// <summary>Null means hidden_size / num_attention_heads, as in Hugging Face.</summary>
    [JsonPropertyName("head_dim"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? HeadDimOverride { get; init; }
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 32768;
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-5;
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000.0;
    /// <summary>Null means full causal attention (v0.2 instruct and later).</summary>
    [JsonPropertyName("sliding_window")] public int? SlidingWindow { get; init; } = 4096;
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 32000;
    [JsonPropertyName("bos_token_id")] public int BosTokenId { get; init; } = 1;
    [JsonPropertyName("eos_token_id")] public int EosTokenId { get; init; } = 2;
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "silu";
    [JsonPropertyName("torch_dtype")] public string TorchDtype { get; init; } = "bfloat16";
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;

    [JsonIgnore] public int HeadDim => HeadDimOverride ?? HiddenSize / NumAttentionHeads;
    [JsonIgnore] public int QueryGroups => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Mistral 7B v0.1 (FACTS §2).</summary>
    public static MistralConfig Mistral7B { get; } = new();

    private static readonly JsonSerializerOptions ReadOptions = new()
    {
        AllowTrailingCommas = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
    };

    private static readonly JsonSerializerOptions WriteOptions = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Reads <c>config.json</c> from a checkpoint folder and validates it.</summary>
    public static MistralConfig Load(string folder)
    {
        var path = Path.Combine(folder, "config.json");
        if (!File.Exists(path))
            throw new ErtasException(ErrorCode.ConfigMissing,
                $"no config.json in '{folder}': point the model at a Hugging Face Mistral checkpoint folder", path);
        return Parse(File.ReadAllText(path), path);
    }

    public static MistralConfig Parse(string json, string path = "config.json")
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.ConfigInvalidJson, $"config.json is not valid JSON: {e.Message}", path,
                (int)(e.LineNumber ?? 0) + 1, (int)(e.BytePositionInLine ?? 0) + 1);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ErtasException(ErrorCode.ConfigInvalidJson, "config.json must hold a JSON object", path, 1, 1);
            foreach (var required in new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size" })
                if (!doc.RootElement.TryGetProperty(required, out _))
                    throw new ErtasException(ErrorCode.ConfigMissingField,
                        $"config.json has no '{required}': a Mistral config must give it", path);
            MistralConfig config;
            try
            {
                config = doc.RootElement.Deserialize<MistralConfig>(ReadOptions)!;
            }
            catch (JsonException e)
            {
                throw new ErtasException(ErrorCode.ConfigInvalidField, $"config.json has a field of the wrong type: {e.Message}", path);
            }
            // HF writes "num_key_value_heads": null for MHA models.
            if (!doc.RootElement.TryGetProperty("num_key_value_heads", out var kv) || kv.ValueKind == JsonValueKind.Null)
                config = config with { NumKeyValueHeads = config.NumAttentionHeads };
            config.Validate(path);
            return config;
        }
    }

    /// <summary>Checks every invariant the network and GGUF export rely on; names the field and both values.</summary>
    public void Validate(string path = "config.json")
    {
        void Positive(string field, double value)
        {
            if (!(value > 0))
                throw new ErtasException(ErrorCode.ConfigInvalidField, $"'{field}' must be positive, got {value}", path);
        }
        Positive("hidden_size", HiddenSize);
        Positive("intermediate_size", IntermediateSize);
        Positive("num_hidden_layers", NumHiddenLayers);
        Positive("num_attention_heads", NumAttentionHeads);
        Positive("num_key_value_heads", NumKeyValueHeads);
        Positive("vocab_size", VocabSize);
        Positive("max_position_embeddings", MaxPositionEmbeddings);
        Positive("rms_norm_eps", RmsNormEps);
        Positive("rope_theta", RopeTheta);
        if (SlidingWindow is { } w) Positive("sliding_window", w);
        if (HeadDimOverride is { } hd) Positive("head_dim", hd);
        if (HeadDimOverride is null && HiddenSize % NumAttentionHeads != 0)
            throw new ErtasException(ErrorCode.ConfigContradiction,
                $"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}", path);
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new ErtasException(ErrorCode.ConfigContradiction,
                $"num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}", path);
        if (HeadDim % 2 != 0)
            throw new ErtasException(ErrorCode.ConfigContradiction, $"head_dim {HeadDim} must be even for rotary embeddings", path);
        if (BosTokenId < 0 || BosTokenId >= VocabSize || EosTokenId < 0 || EosTokenId >= VocabSize)
            throw new ErtasException(ErrorCode.ConfigContradiction,
                $"bos_token_id {BosTokenId} / eos_token_id {EosTokenId} must lie inside vocab_size {VocabSize}", path);
        if (HiddenAct != "silu")
            throw new ErtasException(ErrorCode.ConfigInvalidField, $"'hidden_act' must be \"silu\" for Mistral, got \"{HiddenAct}\"", path);
    }

    public string ToJson() => JsonSerializer.Serialize(this, WriteOptions);

    /// <summary>The tensor names and shapes ([out, in], row-major, as HF stores them) this config implies, in HF order.</summary>
    public IEnumerable<(string Name, long[] Shape)> ExpectedTensors()
    {
        yield return ("model.embed_tokens.weight", [VocabSize, HiddenSize]);
        for (var i = 0; i < NumHiddenLayers; i++)
        {
            var p = $"model.layers.{i}.";
            yield return (p + "input_layernorm.weight", [HiddenSize]);
            yield return (p + "self_attn.q_proj.weight", [NumAttentionHeads * HeadDim, HiddenSize]);
            yield return (p + "self_attn.k_proj.weight", [NumKeyValueHeads * HeadDim, HiddenSize]);
            yield return (p + "self_attn.v_proj.weight", [NumKeyValueHeads * HeadDim, HiddenSize]);
            yield return (p + "self_attn.o_proj.weight", [HiddenSize, NumAttentionHeads * HeadDim]);
            yield return (p + "post_attention_layernorm.weight", [HiddenSize]);
            yield return (p + "mlp.gate_proj.weight", [IntermediateSize, HiddenSize]);
            yield return (p + "mlp.up_proj.weight", [IntermediateSize, HiddenSize]);
            yield return (p + "mlp.down_proj.weight", [HiddenSize, IntermediateSize]);
        }
        yield return ("model.norm.weight", [HiddenSize]);
        if (!TieWordEmbeddings)
            yield return ("lm_head.weight", [VocabSize, HiddenSize]);
    }
}

using System.Collections.Frozen;

namespace Ertas.Gguf;

/// <summary>
/// Everything the GGUF reader, writer and exporter agree on, in one place like gguf-py's <c>constants.py</c>:
/// file framing, metadata keys, value and tensor types with their block sizes, file types and tensor names.
/// Spec: ggml-org/ggml <c>docs/gguf.md</c>; values checked against ggml.h, ggml.c <c>type_traits</c> and llama.h.
/// </summary>
public static class GgufConstants
{
    /// <summary>"GGUF" read as a little-endian u32.</summary>
    public const uint Magic = 0x46554747;

    public const uint Version = 3;

    /// <summary>Oldest version we read: v2 only differs from v3 in allowing big-endian files (which we reject).</summary>
    public const uint MinimumReadableVersion = 2;

    public const uint DefaultAlignment = 32;

    /// <summary>ggml tensors have at most four dimensions (GGML_MAX_DIMS).</summary>
    public const int MaxDimensions = 4;

    /// <summary>Written by convert_hf_to_gguf.py into every file (GGML_QNT_VERSION).</summary>
    public const uint QuantizationVersion = 2;

    /// <summary>The architecture llama.cpp loads Mistral and Llama checkpoints as.</summary>
    public const string LlamaArchitecture = "llama";
}

/// <summary>
/// Metadata keys. Architecture-specific keys are templates on <c>{arch}</c>; call <see cref="Format"/> (or use the
/// <c>Llama*</c> helpers) to get the key for an architecture, e.g. <c>llama.context_length</c>.
/// </summary>
public static class Keys
{
    public const string ArchPlaceholder = "{arch}";

    public static string Format(string template, string architecture) => template.Replace(ArchPlaceholder, architecture);

    public static string Llama(string template) => Format(template, GgufConstants.LlamaArchitecture);

    public static class General
    {
        public const string Architecture = "general.architecture";
        public const string Type = "general.type";
        public const string Name = "general.name";
        public const string Version = "general.version";
        public const string Description = "general.description";
        public const string License = "general.license";
        public const string BaseModelCount = "general.base_model.count";
        /// <summary><c>general.base_model.{id}.name</c>: what the model was fine-tuned from (gguf-py's metadata).</summary>
        public static string BaseModelName(int index) => $"general.base_model.{index}.name";
        public const string FileType = "general.file_type";
        public const string QuantizationVersion = "general.quantization_version";
        public const string Alignment = "general.alignment";
        public const string SizeLabel = "general.size_label";
    }

    /// <summary>Values of <see cref="General.Type"/>.</summary>
    public static class GeneralTypes
    {
        public const string Model = "model";
        public const string Adapter = "adapter";
    }

    public static class LLM
    {
        public const string VocabSize = "{arch}.vocab_size";
        public const string ContextLength = "{arch}.context_length";
        public const string EmbeddingLength = "{arch}.embedding_length";
        public const string BlockCount = "{arch}.block_count";
        public const string FeedForwardLength = "{arch}.feed_forward_length";
    }

    public static class Attention
    {
        public const string HeadCount = "{arch}.attention.head_count";
        public const string HeadCountKv = "{arch}.attention.head_count_kv";
        public const string KeyLength = "{arch}.attention.key_length";
        public const string ValueLength = "{arch}.attention.value_length";
        public const string LayerNormRmsEpsilon = "{arch}.attention.layer_norm_rms_epsilon";
        public const string SlidingWindow = "{arch}.attention.sliding_window";
    }

    public static class Rope
    {
        public const string DimensionCount = "{arch}.rope.dimension_count";
        public const string FreqBase = "{arch}.rope.freq_base";
    }

    public static class Tokenizer
    {
        public const string Model = "tokenizer.ggml.model";
        public const string Pre = "tokenizer.ggml.pre";
        public const string Tokens = "tokenizer.ggml.tokens";
        public const string Scores = "tokenizer.ggml.scores";
        public const string TokenType = "tokenizer.ggml.token_type";
        public const string BosId = "tokenizer.ggml.bos_token_id";
        public const string EosId = "tokenizer.ggml.eos_token_id";
        public const string UnknownId = "tokenizer.ggml.unknown_token_id";
        public const string PaddingId = "tokenizer.ggml.padding_token_id";
        public const string AddBos = "tokenizer.ggml.add_bos_token";
        public const string AddEos = "tokenizer.ggml.add_eos_token";
        public const string AddSpacePrefix = "tokenizer.ggml.add_space_prefix";
        public const string ChatTemplate = "tokenizer.chat_template";
    }

    /// <summary>llama.cpp's split format (gguf-split): every shard is a complete GGUF holding some of the tensors.</summary>
    public static class Split
    {
        public const string No = "split.no";
        public const string Count = "split.count";
        public const string TensorsCount = "split.tensors.count";
    }

    /// <summary>LoRA adapter files (FACTS §3).</summary>
    public static class Adapter
    {
        public const string Type = "adapter.type";
        public const string LoraAlpha = "adapter.lora.alpha";
    }
}

/// <summary>Metadata value types (gguf_type).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>Tensor element types (ggml_type). Gaps are types ggml removed; their numbers are never reused.</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// <summary>How a type packs elements: <see cref="BlockSize"/> elements take <see cref="BytesPerBlock"/> bytes.</summary>
public sealed record GgmlTypeInfo(GgmlType Type, string Name, int BlockSize, int BytesPerBlock)
{
    public bool IsQuantized => BlockSize > 1;

    /// <summary>Bytes for <paramref name="elements"/> elements; the count must be a whole number of blocks.</summary>
    public long ByteSize(long elements) => elements / BlockSize * BytesPerBlock;
}

public static class GgmlTypes
{
    private const int QK_K = 256;

    // Sizes as ggml.c's type_traits (sizeof of each block struct in ggml-common.h). gguf-py's GGML_QUANT_SIZES
    // still says 40 bytes for Q8_1; ggml.c's block_q8_1 has two f16 scales, 36 bytes. Q8_1 only appears as a
    // dot-product intermediate anyway, never in files.
    private static readonly FrozenDictionary<GgmlType, GgmlTypeInfo> Table = new GgmlTypeInfo[]
    {
        new(GgmlType.F32, "F32", 1, 4),
        new(GgmlType.F16, "F16", 1, 2),
        new(GgmlType.Q4_0, "Q4_0", 32, 2 + 16),
        new(GgmlType.Q4_1, "Q4_1", 32, 2 + 2 + 16),
        new(GgmlType.Q5_0, "Q5_0", 32, 2 + 4 + 16),
        new(GgmlType.Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16),
        new(GgmlType.Q8_0, "Q8_0", 32, 2 + 32),
        new(GgmlType.Q8_1, "Q8_1", 32, 2 + 2 + 32),
        new(GgmlType.Q2_K, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
        new(GgmlType.Q3_K, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
        new(GgmlType.Q4_K, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12),
        new(GgmlType.Q5_K, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
        new(GgmlType.Q6_K, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
        new(GgmlType.Q8_K, "Q8_K", QK_K, 4 + QK_K + QK_K / 8),
        new(GgmlType.IQ2_XXS, "IQ2_XXS", QK_K, 2 + QK_K / 4),
        new(GgmlType.IQ2_XS, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32),
        new(GgmlType.IQ3_XXS, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8),
        new(GgmlType.IQ1_S, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16),
        new(GgmlType.IQ4_NL, "IQ4_NL", 32, 2 + 16),
        new(GgmlType.IQ3_S, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
        new(GgmlType.IQ2_S, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16),
        new(GgmlType.IQ4_XS, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
        new(GgmlType.I8, "I8", 1, 1),
        new(GgmlType.I16, "I16", 1, 2),
        new(GgmlType.I32, "I32", 1, 4),
        new(GgmlType.I64, "I64", 1, 8),
        new(GgmlType.F64, "F64", 1, 8),
        new(GgmlType.IQ1_M, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
        new(GgmlType.BF16, "BF16", 1, 2),
        new(GgmlType.TQ1_0, "TQ1_0", QK_K, 2 + 4 * 13),
        new(GgmlType.TQ2_0, "TQ2_0", QK_K, 2 + 64),
        new(GgmlType.MXFP4, "MXFP4", 32, 1 + 16),
    }.ToFrozenDictionary(info => info.Type);

    public static IReadOnlyList<GgmlTypeInfo> All => Table.Values;

    public static bool IsKnown(GgmlType type) => Table.ContainsKey(type);

    public static GgmlTypeInfo Info(this GgmlType type) =>
        Table.TryGetValue(type, out var info) ? info : throw new ArgumentOutOfRangeException(nameof(type), $"unknown ggml type {(uint)type}");
}

/// <summary>Values of <c>general.file_type</c> (llama_ftype): what most tensors in the file are stored as.</summary>
public enum LlamaFileType : uint
{
    AllF32 = 0,
    MostlyF16 = 1,
    MostlyQ4_0 = 2,
    MostlyQ4_1 = 3,
    MostlyQ8_0 = 7,
    MostlyQ5_0 = 8,
    MostlyQ5_1 = 9,
    MostlyQ2_K = 10,
    MostlyQ3_K_S = 11,
    MostlyQ3_K_M = 12,
    MostlyQ3_K_L = 13,
    MostlyQ4_K_S = 14,
    MostlyQ4_K_M = 15,
    MostlyQ5_K_S = 16,
    MostlyQ5_K_M = 17,
    MostlyQ6_K = 18,
    MostlyBF16 = 32,
}

/// <summary>
/// GGUF tensor name templates (gguf-py TENSOR_NAMES), without the <c>.weight</c> suffix; <c>{bid}</c> is the
/// block (layer) index.
/// </summary>
public static class TensorNames
{
    public const string BlockPlaceholder = "{bid}";
    public const string WeightSuffix = ".weight";

    public const string TokenEmbedding = "token_embd";
    public const string OutputNorm = "output_norm";
    public const string Output = "output";
    public const string AttentionNorm = "blk.{bid}.attn_norm";
    public const string AttentionQuery = "blk.{bid}.attn_q";
    public const string AttentionKey = "blk.{bid}.attn_k";
    public const string AttentionValue = "blk.{bid}.attn_v";
    public const string AttentionOutput = "blk.{bid}.attn_output";
    public const string FeedForwardNorm = "blk.{bid}.ffn_norm";
    public const string FeedForwardGate = "blk.{bid}.ffn_gate";
    public const string FeedForwardUp = "blk.{bid}.ffn_up";
    public const string FeedForwardDown = "blk.{bid}.ffn_down";

    /// <summary>The full tensor name, e.g. <c>Weight(AttentionQuery, 3)</c> = <c>blk.3.attn_q.weight</c>.</summary>
    public static string Weight(string template, int? block = null)
    {
        if (template.Contains(BlockPlaceholder))
        {
            if (block is not { } b)
                throw new ArgumentException($"tensor name '{template}' needs a block index", nameof(block));
            template = template.Replace(BlockPlaceholder, b.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        return template + WeightSuffix;
    }
}

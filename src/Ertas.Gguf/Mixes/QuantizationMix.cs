using Ertas.Core;

namespace Ertas.Gguf.Mixes;

/// <summary>
/// One of llama.cpp's file types (llama_ftype) as llama-quantize offers it: the <c>general.file_type</c> it records
/// and the tensor type most weights get (llama.cpp's <c>llama_ftype_get_default_type</c>). Which tensors deviate
/// from <see cref="DefaultType"/> is <see cref="MixPlanner"/>'s business.
/// </summary>
public sealed record QuantizationMix(string Name, LlamaFileType FileType, GgmlType DefaultType)
{
    /// <summary>True when the default type is a block quantization (everything but F32, F16, BF16).</summary>
    public bool IsQuantized => DefaultType.Info().IsQuantized;

    public override string ToString() => Name;
}

/// <summary>The mixes we write, by llama-quantize's names (case-insensitive: <c>q4_k_m</c> = <c>Q4_K_M</c>).</summary>
public static class QuantizationMixes
{
    public static QuantizationMix F32 { get; } = new("F32", LlamaFileType.AllF32, GgmlType.F32);
    public static QuantizationMix F16 { get; } = new("F16", LlamaFileType.MostlyF16, GgmlType.F16);
    public static QuantizationMix BF16 { get; } = new("BF16", LlamaFileType.MostlyBF16, GgmlType.BF16);
    public static QuantizationMix Q8_0 { get; } = new("Q8_0", LlamaFileType.MostlyQ8_0, GgmlType.Q8_0);
    public static QuantizationMix Q4_0 { get; } = new("Q4_0", LlamaFileType.MostlyQ4_0, GgmlType.Q4_0);
    public static QuantizationMix Q4_1 { get; } = new("Q4_1", LlamaFileType.MostlyQ4_1, GgmlType.Q4_1);
    public static QuantizationMix Q5_0 { get; } = new("Q5_0", LlamaFileType.MostlyQ5_0, GgmlType.Q5_0);
    public static QuantizationMix Q5_1 { get; } = new("Q5_1", LlamaFileType.MostlyQ5_1, GgmlType.Q5_1);
    public static QuantizationMix Q2_K { get; } = new("Q2_K", LlamaFileType.MostlyQ2_K, GgmlType.Q2_K);
    public static QuantizationMix Q3_K_S { get; } = new("Q3_K_S", LlamaFileType.MostlyQ3_K_S, GgmlType.Q3_K);
    public static QuantizationMix Q3_K_M { get; } = new("Q3_K_M", LlamaFileType.MostlyQ3_K_M, GgmlType.Q3_K);
    public static QuantizationMix Q3_K_L { get; } = new("Q3_K_L", LlamaFileType.MostlyQ3_K_L, GgmlType.Q3_K);
    public static QuantizationMix Q4_K_S { get; } = new("Q4_K_S", LlamaFileType.MostlyQ4_K_S, GgmlType.Q4_K);
    public static QuantizationMix Q4_K_M { get; } = new("Q4_K_M", LlamaFileType.MostlyQ4_K_M, GgmlType.Q4_K);
    public static QuantizationMix Q5_K_S { get; } = new("Q5_K_S", LlamaFileType.MostlyQ5_K_S, GgmlType.Q5_K);
    public static QuantizationMix Q5_K_M { get; } = new("Q5_K_M", LlamaFileType.MostlyQ5_K_M, GgmlType.Q5_K);
    public static QuantizationMix Q6_K { get; } = new("Q6_K", LlamaFileType.MostlyQ6_K, GgmlType.Q6_K);

    /// <summary>Every mix, unquantized first, then by llama-quantize's listing order.</summary>
    public static IReadOnlyList<QuantizationMix> All { get; } =
    [
        F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K,
    ];

    /// <summary>The block-quantized mixes (what <c>ertas quantize</c> is for).</summary>
    public static IReadOnlyList<QuantizationMix> Quantized { get; } = All.Where(m => m.IsQuantized).ToArray();

    public static string ValidNames => string.Join(", ", All.Select(m => m.Name));

    public static bool TryParse(string? name, out QuantizationMix mix)
    {
        mix = All.FirstOrDefault(m => string.Equals(m.Name, name?.Trim(), StringComparison.OrdinalIgnoreCase))!;
        return mix is not null;
    }

    /// <summary>The mix named <paramref name="name"/>, any case; an unknown name is an error listing the valid ones.</summary>
    public static QuantizationMix Parse(string name) =>
        TryParse(name, out var mix) ? mix
            : throw new ErtasException(ErrorCode.InvalidArgument, $"unknown quantization type '{name}'; valid types: {ValidNames}");

    /// <summary>The mix a <c>general.file_type</c> value names, or null for file types we do not write.</summary>
    public static QuantizationMix? ForFileType(LlamaFileType fileType) => All.FirstOrDefault(m => m.FileType == fileType);
}

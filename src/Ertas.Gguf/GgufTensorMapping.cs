using System.Globalization;

namespace Ertas.Gguf;

/// <summary>
/// Hugging Face (Llama/Mistral) tensor names to GGUF names and back, like gguf-py's <c>tensor_mapping.py</c> for
/// the llama architecture. Suffixes (<c>.weight</c>, <c>.bias</c>) are carried over unchanged.
/// </summary>
public static class HfTensorNames
{
    private const string LayerPrefix = "model.layers.";
    private const string BlockPrefix = "blk.";

    private static readonly (string Hf, string Gguf)[] Global =
    [
        ("model.embed_tokens", TensorNames.TokenEmbedding),
        ("model.norm", TensorNames.OutputNorm),
        ("lm_head", TensorNames.Output),
    ];

    // Per-layer parts: HF's name after "model.layers.N." and GGUF's after "blk.N.".
    private static readonly (string Hf, string Gguf)[] PerLayer =
    [
        ("input_layernorm", "attn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("post_attention_layernorm", "ffn_norm"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ];

    /// <summary><c>model.layers.3.self_attn.q_proj.weight</c> to <c>blk.3.attn_q.weight</c>; null if not a llama tensor.</summary>
    public static string? ToGguf(string hfName) => Translate(hfName, LayerPrefix, BlockPrefix, toGguf: true);

    /// <summary><c>blk.3.attn_q.weight</c> to <c>model.layers.3.self_attn.q_proj.weight</c>; null if not a llama tensor.</summary>
    public static string? ToHf(string ggufName) => Translate(ggufName, BlockPrefix, LayerPrefix, toGguf: false);

    private static string? Translate(string name, string fromPrefix, string toPrefix, bool toGguf)
    {
        var (stem, suffix) = SplitSuffix(name);
        if (stem is null)
            return null;
        foreach (var (hf, gguf) in Global)
            if (stem == (toGguf ? hf : gguf))
                return (toGguf ? gguf : hf) + suffix;
        if (!stem.StartsWith(fromPrefix, StringComparison.Ordinal))
            return null;
        var rest = stem.AsSpan(fromPrefix.Length);
        var dot = rest.IndexOf('.');
        if (dot <= 0 || !int.TryParse(rest[..dot], NumberStyles.None, CultureInfo.InvariantCulture, out var block))
            return null;
        // Reject "01" so that the mapping stays a bijection.
        if (rest[..dot].ToString() != block.ToString(CultureInfo.InvariantCulture))
            return null;
        var part = rest[(dot + 1)..].ToString();
        foreach (var (hf, gguf) in PerLayer)
            if (part == (toGguf ? hf : gguf))
                return $"{toPrefix}{block}.{(toGguf ? gguf : hf)}{suffix}";
        return null;
    }

    private static (string? Stem, string Suffix) SplitSuffix(string name)
    {
        foreach (var suffix in (ReadOnlySpan<string>)[".weight", ".bias"])
            if (name.EndsWith(suffix, StringComparison.Ordinal))
                return (name[..^suffix.Length], suffix);
        return (null, "");
    }
}

/// <summary>
/// Hugging Face stores Q and K projection rows in "rotate half" order (each head's first half of rows pairs with its
/// second half); llama.cpp's RoPE rotates adjacent pairs. convert_hf_to_gguf.py's <c>LlamaModel.permute</c> views the
/// [rows, cols] weight as [n_head, 2, head_dim/2, cols] and swaps axes 1 and 2. For K, n_head is the KV head count.
/// The mapping moves whole rows, so it applies to any row-major tensor whose rows are Q/K output features
/// (weights, biases, LoRA B matrices).
/// </summary>
public static class RopePermutation
{
    /// <summary>Which HF row lands at GGUF row <paramref name="ggufRow"/> (within heads of <paramref name="headDim"/> rows).</summary>
    public static int HfRowForGgufRow(int ggufRow, int headDim)
    {
        var half = headDim / 2;
        var head = ggufRow / headDim;
        var within = ggufRow % headDim;
        // GGUF [head, i, j] <- HF [head, j, i]
        return head * headDim + (within % 2) * half + within / 2;
    }

    /// <summary>Which GGUF row HF row <paramref name="hfRow"/> moves to.</summary>
    public static int GgufRowForHfRow(int hfRow, int headDim)
    {
        var half = headDim / 2;
        var head = hfRow / headDim;
        var within = hfRow % headDim;
        return head * headDim + (within % half) * 2 + within / half;
    }

    /// <summary>Reorders rows from HF's rotate-half layout to llama.cpp's interleaved layout.</summary>
    public static void HfToGguf<T>(ReadOnlySpan<T> source, Span<T> destination, int rows, int rowLength, int headCount) =>
        Permute(source, destination, rows, rowLength, headCount, toGguf: true);

    /// <summary>The inverse of <see cref="HfToGguf{T}"/>.</summary>
    public static void GgufToHf<T>(ReadOnlySpan<T> source, Span<T> destination, int rows, int rowLength, int headCount) =>
        Permute(source, destination, rows, rowLength, headCount, toGguf: false);

    /// <summary>Rows per head; throws when <paramref name="rows"/> does not split into heads of even size.</summary>
    public static int HeadDim(long rows, int headCount)
    {
        if (headCount <= 0 || rows % headCount != 0 || rows / headCount % 2 != 0)
            throw new ArgumentException($"{rows} rows do not split into {headCount} heads of even size");
        return checked((int)(rows / headCount));
    }

    private static void Permute<T>(ReadOnlySpan<T> source, Span<T> destination, int rows, int rowLength, int headCount, bool toGguf)
    {
        var headDim = HeadDim(rows, headCount);
        var total = (long)rows * rowLength;
        if (source.Length < total || destination.Length < total)
            throw new ArgumentException($"need {total} elements for [{rows}, {rowLength}], got source {source.Length}, destination {destination.Length}");
        if (source.Overlaps(destination))
            throw new ArgumentException("source and destination must not overlap");
        for (var row = 0; row < rows; row++)
        {
            var from = toGguf ? HfRowForGgufRow(row, headDim) : GgufRowForHfRow(row, headDim);
            source.Slice(from * rowLength, rowLength).CopyTo(destination.Slice(row * rowLength, rowLength));
        }
    }
}

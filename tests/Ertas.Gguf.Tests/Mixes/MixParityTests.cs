using Ertas.Core;
using Ertas.Gguf.Mixes;
using Ertas.Mistral;
using Xunit.Abstractions;

namespace Ertas.Gguf.Tests.Mixes;

/// <summary>
/// Small llama GGUFs in F32, F16 and BF16, written once per run by our exporter, whose row lengths exercise each of
/// llama.cpp's paths: all multiples of 256 (every K-quant fits), rows of 320 beside ffn_down rows of 512 (the K-quants fall back to
/// Q4_0/Q5_0/Q5_1/Q8_0), one row length that is not even a multiple of 32 (F16 fallback, or refusal), and twelve
/// layers (so that a name-sorted count, blk.0, blk.1, blk.10, blk.11, blk.2, ..., would differ from llama.cpp's by-layer count).
/// All have 8 query heads on 2 KV heads, the 4:1 grouping of Mistral 7B that some rules look at.
/// </summary>
public sealed class MixModels : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly Dictionary<(string, GgmlType), Lazy<string>> _files = [];

    public static readonly Dictionary<string, MistralConfig> Configs = new()
    {
        ["rows256"] = Config(hidden: 256, intermediate: 256, layers: 4),
        ["rows32"] = Config(hidden: 320, intermediate: 512, layers: 2),
        ["rows16"] = Config(hidden: 256, intermediate: 272, layers: 1),
        // Small rows (every K-quant falls back, which keeps the bumps visible: Q6_K becomes Q8_0, Q4_K Q5_0) and
        // enough layers that blk.10 sorts before blk.2 by name.
        ["layers12"] = Config(hidden: 64, intermediate: 128, layers: 12),
    };

    public MixModels()
    {
        foreach (var (name, config) in Configs)
            foreach (var type in new[] { GgmlType.F32, GgmlType.F16, GgmlType.BF16 })
                _files[(name, type)] = new(() =>
                {
                    var path = _dir.File($"{name}-{type}.gguf");
                    GgufExporter.Export(config, TinyModel.Weights(config, seed: 11), TinyModel.Vocabulary(), path, type,
                        new GgufExportOptions { ModelName = name });
                    return path;
                });
    }

    public string Gguf(string model, GgmlType type)
    {
        lock (_files)
            return _files[(model, type)].Value;
    }

    public string NewPath(string name) => _dir.File($"{Guid.NewGuid():N}-{name}");

    private static MistralConfig Config(int hidden, int intermediate, int layers) => TinyModel.Config with
    {
        HiddenSize = hidden,
        IntermediateSize = intermediate,
        NumHiddenLayers = layers,
        NumAttentionHeads = 8,
        NumKeyValueHeads = 2,
    };

    public void Dispose() => _dir.Dispose();
}

/// <summary>
/// The proof of the mixes: the same GGUF quantized by us and by llama.cpp's llama_model_quantize (same threads) has,
/// tensor by tensor, the same type and the same bytes, and the same metadata.
/// </summary>
public sealed class MixParityTests(MixModels models, ITestOutputHelper output) : IClassFixture<MixModels>
{
    public static TheoryData<string, GgmlType> EveryMixFromF32AndF16()
    {
        var data = new TheoryData<string, GgmlType>();
        foreach (var mix in QuantizationMixes.All)
            foreach (var input in new[] { GgmlType.F32, GgmlType.F16 })
                data.Add(mix.Name, input);
        return data;
    }

    [Theory]
    [MemberData(nameof(EveryMixFromF32AndF16))]
    public void Rows_of_256_every_mix_matches_llama_quantize_tensor_for_tensor(string mixName, GgmlType input) =>
        AssertSameAsLlamaCpp("rows256", input, QuantizationMixes.Parse(mixName));

    [Theory]
    [MemberData(nameof(EveryMixFromF32AndF16))]
    public void Rows_of_320_force_the_fallbacks_beside_rows_of_512_and_every_mix_still_matches_llama_quantize(string mixName, GgmlType input) =>
        AssertSameAsLlamaCpp("rows32", input, QuantizationMixes.Parse(mixName));

    [Theory]
    [InlineData("Q2_K")]
    [InlineData("Q3_K_M")]
    [InlineData("Q4_K_S")]
    [InlineData("Q4_K_M")]
    [InlineData("Q5_K_M")]
    [InlineData("Q6_K")]
    public void Twelve_layers_get_their_bumps_on_the_same_layers_as_llama_quantize(string mixName) =>
        AssertSameAsLlamaCpp("layers12", GgmlType.F16, QuantizationMixes.Parse(mixName));

    [Fact]
    public void Twelve_layers_under_q4_k_m_bump_layers_0_3_6_9_10_11_counted_in_layer_order()
    {
        // use_more_bits(i, 12): i < 12/8 || i >= 7*12/8 || (i - 12/8) % 3 == 2, with integer division. llama.cpp's
        // loader visits tensors by layer number (blk.2 before blk.10), so i is the layer.
        var types = AssertSameAsLlamaCpp("layers12", GgmlType.F32, QuantizationMixes.Q4_K_M);
        int[] bumped = [0, 3, 6, 9, 10, 11];
        foreach (var kind in new[] { "attn_v", "ffn_down" })
            for (var layer = 0; layer < 12; layer++)
                // Rows of 64 fit no K-quant: Q6_K falls back to Q8_0, Q4_K to Q5_0.
                Assert.Equal(bumped.Contains(layer) ? GgmlType.Q8_0 : GgmlType.Q5_0, types[$"blk.{layer}.{kind}.weight"]);
    }

    [Theory]
    [InlineData("Q8_0")]
    [InlineData("Q4_K_M")]
    [InlineData("F16")]
    public void Bf16_input_matches_llama_quantize(string mixName) =>
        AssertSameAsLlamaCpp("rows256", GgmlType.BF16, QuantizationMixes.Parse(mixName));

    [Theory]
    [InlineData("Q2_K")]
    [InlineData("Q3_K_S")]
    [InlineData("Q4_K_M")]
    [InlineData("Q5_K_S")]
    [InlineData("Q6_K")]
    public void Rows_of_272_are_no_multiple_of_32_and_k_mixes_fall_back_to_f16_like_llama_cpp(string mixName)
    {
        var types = AssertSameAsLlamaCpp("rows16", GgmlType.F32, QuantizationMixes.Parse(mixName));
        Assert.Equal(GgmlType.F16, types["blk.0.ffn_down.weight"]);
    }

    [Theory]
    [InlineData("Q8_0")]
    [InlineData("Q4_0")]
    [InlineData("Q4_1")]
    [InlineData("Q5_0")]
    [InlineData("Q5_1")]
    public void Rows_of_272_have_no_fallback_under_32_block_mixes_and_both_quantizers_refuse(string mixName)
    {
        var mix = QuantizationMixes.Parse(mixName);
        var input = models.Gguf("rows16", GgmlType.F32);
        var theirs = models.NewPath($"llama-{mix}.gguf");
        Assert.False(LlamaQuantizeJudge.Quantize(input, theirs, mix), "llama.cpp quantized a row of 272 to a 32-block type");

        var ours = models.NewPath($"ours-{mix}.gguf");
        var e = Assert.Throws<ErtasException>(() => GgufQuantizer.Quantize(input, ours, mix));
        Assert.Equal(ErrorCode.GgufUnsupportedType, e.Code);
        Assert.Contains("blk.0.ffn_down.weight", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(ours));
    }

    private IReadOnlyDictionary<string, GgmlType> AssertSameAsLlamaCpp(string model, GgmlType input, QuantizationMix mix)
    {
        var source = models.Gguf(model, input);
        var theirs = models.NewPath($"llama-{mix}.gguf");
        var ours = models.NewPath($"ours-{mix}.gguf");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.True(LlamaQuantizeJudge.Quantize(source, theirs, mix), $"llama.cpp failed to quantize {model} {input} to {mix}");
        var llamaTime = clock.Elapsed;
        clock.Restart();
        var result = GgufQuantizer.Quantize(source, ours, mix, new GgufQuantizeOptions { Threads = LlamaQuantizeJudge.Threads });
        var ourTime = clock.Elapsed;
        LlamaQuantizeJudge.AssertSameTensorsAndMetadata(theirs, ours, $"{model} {input} -> {mix}");
        var types = LlamaQuantizeJudge.TensorTypes(ours);
        output.WriteLine($"{model} {input} -> {mix}: identical, {result.BitsPerWeight:F2} bpw; llama.cpp {llamaTime.TotalMilliseconds:F0} ms, ours {ourTime.TotalMilliseconds:F0} ms; " +
            string.Join(", ", types.Values.GroupBy(t => t).OrderBy(g => g.Key).Select(g => $"{g.Count()} {g.Key}")));
        File.Delete(theirs);
        File.Delete(ours);
        return types;
    }
}

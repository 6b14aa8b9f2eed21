using Ertas.Gguf.Mixes;
using Ertas.Mistral;
using Ertas.Mistral.Presets;

namespace Ertas.Gguf.Tests.Mixes;

/// <summary>
/// <see cref="GgufExporter.PlannedFileSize"/> against real files: every mix, byte for byte, on shapes where llama.cpp's
/// per-layer bumps and row fallbacks change the tensor types (what a size table from bits per weight would get wrong).
/// </summary>
public sealed class GgufSizePredictionTests : IDisposable
{
    private static readonly GgufExportOptions Named = new()
    {
        ModelName = "TinyMistral", Version = "1.0.0", Description = "a ü description", License = "apache-2.0", BaseModelName = "ertas-tiny",
        Threads = 2,
    };

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> AllMixes()
    {
        var data = new TheoryData<string>();
        foreach (var mix in QuantizationMixes.All)
            data.Add(mix.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(AllMixes))]
    public void Predicted_size_equals_the_exported_file_for_every_mix_on_the_tiny_preset_shapes(string mixName)
    {
        var config = BaseModelFactory.Tiny with { VocabSize = TinyModel.VocabSize };
        AssertPredictionMatchesExport(config, QuantizationMixes.Parse(mixName), Named);
    }

    [Theory]
    [MemberData(nameof(AllMixes))]
    public void Predicted_size_equals_the_exported_file_when_rows_need_llama_cpp_fallback_types(string mixName)
    {
        // Rows of 64 fit no K-quant block: llama.cpp falls back per tensor (Q4_K -> Q5_0, Q6_K -> Q8_0, ...).
        AssertPredictionMatchesExport(TinyModel.Config, QuantizationMixes.Parse(mixName), new GgufExportOptions { Threads = 2 });
    }

    [Theory]
    [MemberData(nameof(AllMixes))]
    public void Predicted_size_equals_the_exported_file_for_32_layers_with_7b_head_layout(string mixName)
    {
        // 7B's depth and GQA (32 layers, 4 query heads per KV head) at narrow widths: every per-layer choice
        // (use_more_bits over 32 layers, the first attn_v tensors, ffn_down by layer) is the one 7B gets.
        var config = MistralConfig.Mistral7B with
        {
            HiddenSize = 256, IntermediateSize = 512, NumAttentionHeads = 8, NumKeyValueHeads = 2, VocabSize = TinyModel.VocabSize,
            TorchDtype = "float32",
        };
        AssertPredictionMatchesExport(config, QuantizationMixes.Parse(mixName), Named);
    }

    [Theory]
    [InlineData("Q4_K_M")]
    [InlineData("Q8_0")]
    public void Predicted_size_equals_the_quantizer_output_made_from_the_f16_export(string mixName)
    {
        var config = BaseModelFactory.Tiny with { VocabSize = TinyModel.VocabSize };
        var f16 = _dir.File("merged.F16.gguf");
        GgufExporter.Export(config, TinyModel.Weights(config), TinyModel.Vocabulary(), f16, QuantizationMixes.F16, Named);
        var output = _dir.File($"out.{mixName}.gguf");
        var mix = QuantizationMixes.Parse(mixName);
        GgufQuantizer.Quantize(f16, output, mix, new GgufQuantizeOptions { Threads = 2 });
        Assert.Equal(new FileInfo(output).Length, GgufExporter.PlannedFileSize(config, TinyModel.Vocabulary(), mix, Named));
    }

    [Fact]
    public void Predicted_size_equals_the_exported_file_at_7b_widths()
    {
        // One layer of Mistral 7B's exact widths (4096 / 14336, 32 / 8 heads) and its 32000-entry vocabulary array, with
        // weights generated as they are read (nothing held), so rows, blocks and the tokenizer metadata are 7B's.
        var vocab = TinyModel.Vocabulary().PadTo(MistralConfig.Mistral7B.VocabSize);
        var config = MistralConfig.Mistral7B with { NumHiddenLayers = 1, TorchDtype = "float32" };
        var path = _dir.File("7b-1-layer.Q4_K_M.gguf");
        GgufExporter.Export(config, new GeneratedSource(config), vocab, path, QuantizationMixes.Q4_K_M, Named);
        Assert.Equal(new FileInfo(path).Length, GgufExporter.PlannedFileSize(config, vocab, QuantizationMixes.Q4_K_M, Named));
    }

    [Fact]
    public void A_non_default_alignment_is_part_of_the_prediction()
    {
        var options = Named with { Alignment = 64 };
        AssertPredictionMatchesExport(BaseModelFactory.Tiny with { VocabSize = TinyModel.VocabSize }, QuantizationMixes.Q4_K_M, options);
    }

    private void AssertPredictionMatchesExport(MistralConfig config, QuantizationMix mix, GgufExportOptions options)
    {
        var path = _dir.File($"model.{mix.Name}.gguf");
        GgufExporter.Export(config, TinyModel.Weights(config), TinyModel.Vocabulary(), path, mix, options);
        Assert.Equal(new FileInfo(path).Length, GgufExporter.PlannedFileSize(config, TinyModel.Vocabulary(), mix, options));
        File.Delete(path);
    }

    /// <summary>Small deterministic weights computed on read: a 7B-wide tensor source that holds no tensor.</summary>
    private sealed class GeneratedSource(MistralConfig config) : ITensorSource
    {
        private readonly Dictionary<string, long[]> _shapes = config.ExpectedTensors().ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal);

        public IReadOnlyList<string> TensorNames => [.. _shapes.Keys];

        public long[] GetShape(string name) => _shapes[name];

        public void ReadFloat32(string name, Span<float> destination)
        {
            var seed = (uint)name.Length * 2654435761u;
            for (var i = 0; i < destination.Length; i++)
            {
                seed = seed * 1664525u + 1013904223u;
                destination[i] = ((seed >> 9) * (1f / (1 << 23)) - 1f) * 0.05f;
            }
        }
    }
}

using LLama;
using LLama.Common;
using LLama.Native;

namespace Ertas.Gguf.Tests;

/// <summary>llama.cpp itself (through LLamaSharp's native build) is the judge of whether our GGUF is loadable.</summary>
public class LlamaCppLoadTests
{
    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void Llama_cpp_loads_the_export_with_the_same_hyperparameters_and_vocabulary(GgmlType type)
    {
        using var dir = new TempDir();
        var config = TinyModel.Config;
        var path = dir.File($"tiny-{type}.gguf");
        GgufExporter.Export(config, TinyModel.Weights(config), TinyModel.Vocabulary(), path, type,
            new GgufExportOptions { ModelName = "tiny" });

        using var weights = LLamaWeights.LoadFromFile(new ModelParams(path) { GpuLayerCount = 0, ContextSize = 64 });
        Assert.Equal(TinyModel.VocabSize, weights.Vocab.Count);
        Assert.Equal(config.HiddenSize, weights.EmbeddingSize);
        Assert.Equal(config.NumHiddenLayers, weights.NativeHandle.LayerCount);
        Assert.Equal(config.NumAttentionHeads, weights.NativeHandle.HeadCount);
        Assert.Equal(config.NumKeyValueHeads, weights.NativeHandle.KVHeadCount);
        Assert.Equal(config.MaxPositionEmbeddings, weights.ContextSize);
        Assert.Equal("tiny", weights.Metadata["general.name"]);
        Assert.Equal(1, (int)weights.Vocab.BOS!.Value);
        Assert.Equal(2, (int)weights.Vocab.EOS!.Value);

        // The pieces and scores arrived: SentencePiece BPE on "▁hello" can merge "he" (score -30) and then "lo"
        // (-40), nothing else ("▁he", "ll", "hel" are not pieces), so llama.cpp must give BOS ▁ he l lo.
        int Id(string piece) => 3 + 256 + Array.IndexOf(TinyModel.NormalPieces, piece);
        var tokens = weights.Tokenize("hello", add_bos: true, special: false, System.Text.Encoding.UTF8);
        Assert.Equal(new[] { 1, Id("▁"), Id("he"), Id("l"), Id("lo") }, tokens.Select(t => (int)t));
    }
    [Fact]
    public void Llama_cpp_logits_match_a_reference_forward_pass_on_the_hf_weights()
    {
        using var dir = new TempDir();
        var config = TinyModel.Config;
        var source = TinyModel.Weights(config, seed: 7);
        // Large Q/K weights make attention peaky, so a wrong RoPE row order changes the logits visibly.
        for (var layer = 0; layer < config.NumHiddenLayers; layer++)
            foreach (var proj in new[] { "q_proj", "k_proj" })
            {
                var data = source.Data($"model.layers.{layer}.self_attn.{proj}.weight");
                for (var i = 0; i < data.Length; i++)
                    data[i] *= 12;
            }
        var embed = source.Data("model.embed_tokens.weight");
        for (var i = 0; i < embed.Length; i++)
            embed[i] *= 20;
        var path = dir.File("tiny-f32.gguf");
        GgufExporter.Export(config, source, TinyModel.Vocabulary(), path, GgmlType.F32);
        int[] tokens = [1, 120, 37, 290, 5, 260, 77, 201];

        var expected = ReferenceForward.Logits(config, source, tokens);
        var wrongRope = ReferenceForward.Logits(config, source, tokens, interleavedRope: true);

        var parameters = new ModelParams(path)
        {
            GpuLayerCount = 0,
            ContextSize = 64,
            BatchSize = 64,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
        };
        using var weights = LLamaWeights.LoadFromFile(parameters);
        using var context = weights.CreateContext(parameters);
        var batch = new LLamaBatch();
        for (var i = 0; i < tokens.Length; i++)
            batch.Add(tokens[i], i, LLamaSeqId.Zero, logits: true);
        Assert.Equal(DecodeResult.Ok, context.Decode(batch));

        double maxDiff = 0, maxWrongDiff = 0, maxLogit = 0;
        for (var t = 0; t < tokens.Length; t++)
        {
            var actual = context.NativeHandle.GetLogitsIth(t);
            Assert.Equal(TinyModel.VocabSize, actual.Length);
            for (var v = 0; v < actual.Length; v++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(actual[v] - expected[t][v]));
                maxWrongDiff = Math.Max(maxWrongDiff, Math.Abs(actual[v] - wrongRope[t][v]));
                maxLogit = Math.Max(maxLogit, Math.Abs(expected[t][v]));
            }
        }
        var tolerance = 2e-3 * maxLogit;
        Assert.True(maxDiff <= tolerance, $"llama.cpp differs from the reference by {maxDiff} (max |logit| {maxLogit})");
        // Proves the comparison can fail: had the Q/K rows not been permuted, llama.cpp would be this far off.
        Assert.True(maxWrongDiff > 5 * tolerance, $"the RoPE row order should matter: wrong-order diff {maxWrongDiff}, tolerance {tolerance}");
    }
}

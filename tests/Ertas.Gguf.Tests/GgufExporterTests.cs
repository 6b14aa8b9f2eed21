using System.Runtime.InteropServices;
using Ertas.Core;
using Ertas.Mistral;

namespace Ertas.Gguf.Tests;

public class GgufExporterTests
{
    private static string ExportTiny(TempDir dir, GgmlType type, out InMemoryTensorSource source, MistralConfig? config = null,
        GgufExportOptions? options = null)
    {
        config ??= TinyModel.Config;
        source = TinyModel.Weights(config);
        var path = dir.File($"tiny-{type}.gguf");
        GgufExporter.Export(config, source, TinyModel.Vocabulary(), path, type, options ?? new GgufExportOptions { ModelName = "tiny" });
        return path;
    }

    [Fact]
    public void Metadata_matches_what_convert_hf_to_gguf_writes_for_llama()
    {
        using var dir = new TempDir();
        var path = ExportTiny(dir, GgmlType.F16, out _, options: new GgufExportOptions { ModelName = "tiny", Version = "v0.1" });
        using var r = new GgufReader(path);
        var expectedKeys = new[]
        {
            "general.architecture", "general.type", "general.name", "general.version",
            "llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
            "llama.attention.layer_norm_rms_epsilon", "general.file_type", "llama.vocab_size", "llama.rope.dimension_count",
            "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
            "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
            "tokenizer.ggml.add_space_prefix", "tokenizer.chat_template", "general.quantization_version",
        };
        Assert.Equal(expectedKeys, r.Metadata.Select(kv => kv.Key));
        Assert.Equal("llama", r.GetString("general.architecture"));
        Assert.Equal("model", r.GetString("general.type"));
        Assert.Equal("tiny", r.GetString("general.name"));
        Assert.Equal(2u, r.GetUInt32("llama.block_count"));
        Assert.Equal(256u, r.GetUInt32("llama.context_length"));
        Assert.Equal(64u, r.GetUInt32("llama.embedding_length"));
        Assert.Equal(128u, r.GetUInt32("llama.feed_forward_length"));
        Assert.Equal(4u, r.GetUInt32("llama.attention.head_count"));
        Assert.Equal(2u, r.GetUInt32("llama.attention.head_count_kv"));
        Assert.Equal(1e6f, r.GetFloat32("llama.rope.freq_base"));
        Assert.Equal(1e-5f, r.GetFloat32("llama.attention.layer_norm_rms_epsilon"));
        Assert.Equal((uint)LlamaFileType.MostlyF16, r.GetUInt32("general.file_type"));
        Assert.Equal((uint)TinyModel.VocabSize, r.GetUInt32("llama.vocab_size"));
        Assert.Equal(16u, r.GetUInt32("llama.rope.dimension_count"));
        Assert.Equal("llama", r.GetString("tokenizer.ggml.model"));
        Assert.Equal(TinyModel.Vocabulary().Tokens, r.GetArray<string>("tokenizer.ggml.tokens"));
        Assert.Equal(TinyModel.Vocabulary().Scores, r.GetArray<float>("tokenizer.ggml.scores"));
        Assert.Equal(TinyModel.Vocabulary().TokenTypes, r.GetArray<int>("tokenizer.ggml.token_type"));
        Assert.Equal(1u, r.GetUInt32("tokenizer.ggml.bos_token_id"));
        Assert.Equal(2u, r.GetUInt32("tokenizer.ggml.eos_token_id"));
        Assert.Equal(0u, r.GetUInt32("tokenizer.ggml.unknown_token_id"));
        Assert.True(r.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.False(r.GetBool("tokenizer.ggml.add_eos_token"));
        Assert.Equal(2u, r.GetUInt32("general.quantization_version"));
    }

    [Fact]
    public void Head_dim_keys_are_written_when_config_names_head_dim()
    {
        using var dir = new TempDir();
        var config = TinyModel.Config with { HeadDimOverride = 32 };
        var path = ExportTiny(dir, GgmlType.F32, out _, config);
        using var r = new GgufReader(path);
        Assert.Equal(32u, r.GetUInt32("llama.attention.key_length"));
        Assert.Equal(32u, r.GetUInt32("llama.attention.value_length"));
        Assert.Equal(32u, r.GetUInt32("llama.rope.dimension_count"));
        Assert.Equal(new long[] { 4 * 32, 64 }, r.GetTensor("blk.0.attn_q.weight").Shape);
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void Norms_stay_f32_and_weights_take_the_requested_type_in_llama_cpp_shapes(GgmlType type)
    {
        using var dir = new TempDir();
        var path = ExportTiny(dir, type, out _);
        using var r = new GgufReader(path);
        Assert.Equal(2 * 9 + 3, r.Tensors.Count);
        foreach (var t in r.Tensors)
            Assert.Equal(t.Name.EndsWith("norm.weight") ? GgmlType.F32 : type, t.Type);
        Assert.Equal(new long[] { 64, TinyModel.VocabSize }, r.GetTensor("token_embd.weight").Dimensions);
        Assert.Equal(new long[] { 64, 32 }, r.GetTensor("blk.1.attn_k.weight").Dimensions);
        Assert.Equal(new long[] { 128, 64 }, r.GetTensor("blk.1.ffn_down.weight").Dimensions);
        Assert.Equal(new long[] { 64 }, r.GetTensor("output_norm.weight").Dimensions);
    }

    [Fact]
    public void Q_and_K_rows_are_permuted_into_llama_cpp_order_and_V_is_not()
    {
        using var dir = new TempDir();
        var path = ExportTiny(dir, GgmlType.F32, out var source);
        using var r = new GgufReader(path);
        void Check(string hf, string gguf, int? heads)
        {
            var stored = MemoryMarshal.Cast<byte, float>(r.GetTensorBytes(r.GetTensor(gguf))).ToArray();
            var original = source.Data(hf);
            var expected = original;
            if (heads is { } h)
            {
                expected = new float[original.Length];
                RopePermutation.HfToGguf<float>(original, expected, original.Length / 64, 64, h);
            }
            Assert.Equal(expected, stored);
        }
        Check("model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight", 4);
        Check("model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight", 2);
        Check("model.layers.1.self_attn.v_proj.weight", "blk.1.attn_v.weight", null);
        Check("model.embed_tokens.weight", "token_embd.weight", null);
    }

    [Fact]
    public void Reading_an_f32_export_back_gives_the_source_floats_exactly()
    {
        using var dir = new TempDir();
        var path = ExportTiny(dir, GgmlType.F32, out var source);
        using var back = new GgufTensorSource(path);
        Assert.Equal(source.TensorNames.Order(), back.TensorNames.Order());
        foreach (var name in source.TensorNames)
        {
            Assert.Equal(source.GetShape(name), back.GetShape(name));
            var values = new float[source.Data(name).Length];
            back.ReadFloat32(name, values);
            Assert.Equal(source.Data(name), values);
        }
    }

    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void Reading_a_16_bit_export_back_gives_the_source_rounded_to_nearest_even(GgmlType type)
    {
        using var dir = new TempDir();
        var path = ExportTiny(dir, type, out var source);
        using var back = new GgufTensorSource(path);
        foreach (var name in source.TensorNames)
        {
            var original = source.Data(name);
            var values = new float[original.Length];
            back.ReadFloat32(name, values);
            var isNorm = source.GetShape(name).Length == 1;
            for (var i = 0; i < original.Length; i++)
            {
                var expected = isNorm ? original[i]
                    : type == GgmlType.F16 ? (float)(Half)original[i]
                    : BitConverter.UInt32BitsToSingle((uint)FloatConversions.SingleToBFloat16(original[i]) << 16);
                Assert.Equal(expected, values[i]);
                var tolerance = type == GgmlType.F16 ? Math.Max(Math.Abs(original[i]) * 1e-3f, 6e-8f) : Math.Abs(original[i]) * 4e-3f;
                Assert.True(Math.Abs(values[i] - original[i]) <= tolerance, $"{name}[{i}]: {values[i]} vs {original[i]}");
            }
        }
    }

    [Fact]
    public void The_config_and_vocabulary_come_back_from_the_file()
    {
        using var dir = new TempDir();
        var path = ExportTiny(dir, GgmlType.BF16, out _);
        using var back = new GgufTensorSource(path);
        var expected = TinyModel.Config with { SlidingWindow = null, TorchDtype = "bfloat16" };
        Assert.Equal(expected.ToJson(), back.ToMistralConfig().ToJson());
        var vocab = back.ReadVocabulary();
        var original = TinyModel.Vocabulary();
        Assert.Equal(original.Tokens, vocab.Tokens);
        Assert.Equal(original.Scores, vocab.Scores);
        Assert.Equal(original.TokenTypes, vocab.TokenTypes);
        Assert.Equal(original with { Tokens = vocab.Tokens, Scores = vocab.Scores, TokenTypes = vocab.TokenTypes }, vocab);
    }

    [Fact]
    public void A_vocabulary_shorter_than_vocab_size_is_padded_as_convert_does()
    {
        using var dir = new TempDir();
        var config = TinyModel.Config with { VocabSize = TinyModel.VocabSize + 3 };
        var path = ExportTiny(dir, GgmlType.F16, out _, config);
        using var r = new GgufReader(path);
        var tokens = r.GetArray<string>(Keys.Tokenizer.Tokens);
        Assert.Equal(config.VocabSize, tokens.Length);
        Assert.Equal($"[PAD{TinyModel.VocabSize}]", tokens[TinyModel.VocabSize]);
        Assert.Equal((int)GgufTokenType.Unused, r.GetArray<int>(Keys.Tokenizer.TokenType)[^1]);
    }

    [Fact]
    public void A_missing_checkpoint_tensor_fails_before_any_file_is_written()
    {
        using var dir = new TempDir();
        var source = TinyModel.Weights(TinyModel.Config);
        source.Remove("model.layers.1.mlp.up_proj.weight");
        var path = dir.File("x.gguf");
        var e = Assert.Throws<ErtasException>(() =>
            GgufExporter.Export(TinyModel.Config, source, TinyModel.Vocabulary(), path, GgmlType.F16));
        Assert.Equal(ErrorCode.CheckpointMissingTensor, e.Code);
        Assert.Contains("model.layers.1.mlp.up_proj.weight", e.Message);
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void A_tensor_of_the_wrong_shape_names_both_shapes()
    {
        using var dir = new TempDir();
        var source = TinyModel.Weights(TinyModel.Config);
        source.Remove("model.norm.weight");
        source.Add("model.norm.weight", [32], new float[32]);
        var e = Assert.Throws<ErtasException>(() =>
            GgufExporter.Export(TinyModel.Config, source, TinyModel.Vocabulary(), dir.File("x.gguf"), GgmlType.F16));
        Assert.Equal(ErrorCode.CheckpointShapeMismatch, e.Code);
        Assert.Contains("[32]", e.Message);
        Assert.Contains("[64]", e.Message);
    }

    [Fact]
    public void Quantized_export_types_are_refused_with_a_hint()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ErtasException>(() => GgufExporter.Export(TinyModel.Config, TinyModel.Weights(TinyModel.Config),
            TinyModel.Vocabulary(), dir.File("x.gguf"), GgmlType.Q4_K));
        Assert.Equal(ErrorCode.GgufUnsupportedType, e.Code);
    }

    [Fact]
    public void Cancellation_leaves_no_file_behind()
    {
        using var dir = new TempDir();
        using var cts = new CancellationTokenSource();
        var progress = new CancellingSink(cts, afterLines: 5);
        Assert.ThrowsAny<OperationCanceledException>(() => GgufExporter.Export(TinyModel.Config, TinyModel.Weights(TinyModel.Config),
            TinyModel.Vocabulary(), dir.File("x.gguf"), GgmlType.F16, new GgufExportOptions { Progress = progress }, cts.Token));
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void Progress_reports_each_tensor_with_rate_and_eta()
    {
        using var dir = new TempDir();
        var sink = new ListProgressSink();
        ExportTiny(dir, GgmlType.F16, out _, options: new GgufExportOptions { Progress = sink });
        var tensorLines = sink.Lines.Where(l => l.StartsWith('[')).ToList();
        Assert.Equal(21, tensorLines.Count);
        Assert.StartsWith("[1/21] token_embd.weight F16", tensorLines[0]);
        Assert.Contains("ETA", tensorLines[^1]);
        Assert.Contains("100.0%", tensorLines[^1]);
    }

    [Fact]
    public void A_gguf_of_another_architecture_is_GgufWrongArchitecture()
    {
        using var dir = new TempDir();
        var path = dir.File("gpt2.gguf");
        AtomicFile.Write(path, stream =>
        {
            var w = new GgufWriter(stream);
            w.AddString(Keys.General.Architecture, "gpt2");
            w.WriteMetadata();
            w.WriteTensorInfos();
            w.Finish();
        });
        var e = Assert.Throws<ErtasException>(() => new GgufTensorSource(path));
        Assert.Equal(ErrorCode.GgufWrongArchitecture, e.Code);
        Assert.Contains("gpt2", e.Message);
    }

    [Fact]
    public void Quantized_types_we_cannot_dequantize_are_GgufUnsupportedType_when_read_as_float()
    {
        using var dir = new TempDir();
        var path = dir.File("iq4.gguf");
        AtomicFile.Write(path, stream =>
        {
            var w = new GgufWriter(stream);
            w.AddString(Keys.General.Architecture, "llama");
            w.AddTensorInfo("blk.0.ffn_up.weight", GgmlType.IQ4_XS, [2, 256]);
            w.WriteMetadata();
            w.WriteTensorInfos();
            w.WriteTensorData("blk.0.ffn_up.weight", new byte[2 * 136]);
            w.Finish();
        });
        using var source = new GgufTensorSource(path);
        var e = Assert.Throws<ErtasException>(() => source.ReadFloat32("model.layers.0.mlp.up_proj.weight", new float[512]));
        Assert.Equal(ErrorCode.GgufUnsupportedType, e.Code);
        Assert.Contains("IQ4_XS", e.Message);
    }

    private sealed class CancellingSink(CancellationTokenSource cts, int afterLines) : IProgressSink
    {
        private int _lines;
        public void Report(string line)
        {
            if (++_lines == afterLines)
                cts.Cancel();
        }
    }
}

using Ertas.Core;
using Ertas.Gguf.Mixes;
using Ertas.Mistral;

namespace Ertas.Gguf.Tests.Mixes;

/// <summary>
/// The streaming quantizer's contract beyond the bytes (MixParityTests): export straight to a mix equals quantizing
/// the F32 export, threads do not matter, and every refusal leaves no output behind.
/// </summary>
public sealed class GgufQuantizerTests : IDisposable
{
    private static readonly MistralConfig Rows256 = TinyModel.Config with
    {
        HiddenSize = 256, IntermediateSize = 512, NumHiddenLayers = 2, NumAttentionHeads = 8, NumKeyValueHeads = 2,
    };

    private static readonly MistralConfig Rows32 = Rows256 with { HiddenSize = 320 };

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("Q4_K_M", false)]
    [InlineData("Q6_K", false)]
    [InlineData("Q8_0", false)]
    [InlineData("Q3_K_M", true)]
    [InlineData("F16", false)]
    public void Exporting_straight_to_a_mix_writes_the_same_file_as_quantizing_the_f32_export(string mixName, bool fallbackRows)
    {
        var config = fallbackRows ? Rows32 : Rows256;
        var mix = QuantizationMixes.Parse(mixName);
        var f32 = Export(config, "model-f32.gguf", QuantizationMixes.F32);
        var direct = Export(config, "direct.gguf", mix);
        var viaF32 = _dir.File("via-f32.gguf");
        GgufQuantizer.Quantize(f32, viaF32, mix, new GgufQuantizeOptions { Threads = 2 });

        Assert.Equal(File.ReadAllBytes(viaF32), File.ReadAllBytes(direct));
        using var reader = new GgufReader(direct);
        Assert.Equal((uint)mix.FileType, reader.GetUInt32(Keys.General.FileType));
        Assert.Equal(2u, reader.GetUInt32(Keys.General.QuantizationVersion));
        // Rows of 320 fit no K-quant, so only the rows-of-256 model must show the mix's own type.
        if (mix.IsQuantized && !fallbackRows)
            Assert.Contains(reader.Tensors, t => t.Type == mix.DefaultType);
    }

    [Fact]
    public void One_thread_and_two_threads_write_the_same_bytes()
    {
        var f16 = Export(Rows256, "model-f16.gguf", QuantizationMixes.F16);
        GgufQuantizer.Quantize(f16, _dir.File("t1.gguf"), QuantizationMixes.Q4_K_M, new GgufQuantizeOptions { Threads = 1 });
        GgufQuantizer.Quantize(f16, _dir.File("t2.gguf"), QuantizationMixes.Q4_K_M, new GgufQuantizeOptions { Threads = 2 });
        Assert.Equal(File.ReadAllBytes(_dir.File("t1.gguf")), File.ReadAllBytes(_dir.File("t2.gguf")));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(700)]
    public void Converting_a_few_rows_at_a_time_writes_the_same_bytes_as_whole_tensors(long sliceFloats)
    {
        var f16 = Export(Rows256, "model-f16.gguf", QuantizationMixes.F16);
        GgufQuantizer.Quantize(f16, _dir.File("whole.gguf"), QuantizationMixes.Q4_K_M);
        GgufQuantizer.Quantize(f16, _dir.File("sliced.gguf"), QuantizationMixes.Q4_K_M, new GgufQuantizeOptions { SliceFloats = sliceFloats });
        Assert.Equal(File.ReadAllBytes(_dir.File("whole.gguf")), File.ReadAllBytes(_dir.File("sliced.gguf")));
    }

    [Fact]
    public void Progress_reports_every_tensor_with_its_types_and_an_eta()
    {
        var f16 = Export(TinyModel.Config, "model-f16.gguf", QuantizationMixes.F16);
        var progress = new ListProgressSink();
        GgufQuantizer.Quantize(f16, _dir.File("q8.gguf"), QuantizationMixes.Q8_0, new GgufQuantizeOptions { Progress = progress });
        var tensorLines = progress.Lines.Where(l => l.StartsWith('[')).ToList();
        Assert.Equal(TinyModel.Config.ExpectedTensors().Count(), tensorLines.Count);
        Assert.All(tensorLines, l => Assert.Contains("ETA", l, StringComparison.Ordinal));
        Assert.Contains(tensorLines, l => l.Contains("blk.0.attn_q.weight F16 -> Q8_0", StringComparison.Ordinal));
        Assert.Contains(tensorLines, l => l.Contains("blk.0.attn_norm.weight F32 -> F32", StringComparison.Ordinal));
    }

    [Fact]
    public void Already_quantized_input_is_refused_naming_the_tensor_and_nothing_is_written()
    {
        var f16 = Export(TinyModel.Config, "model-f16.gguf", QuantizationMixes.F16);
        var q8 = _dir.File("q8.gguf");
        GgufQuantizer.Quantize(f16, q8, QuantizationMixes.Q8_0);
        var output = _dir.File("q4.gguf");
        var e = Assert.Throws<ErtasException>(() => GgufQuantizer.Quantize(q8, output, QuantizationMixes.Q4_K_M));
        Assert.Equal(ErrorCode.GgufUnsupportedType, e.Code);
        Assert.Contains("already Q8_0", e.Message, StringComparison.Ordinal);
        Assert.Equal(q8, e.File);
        AssertOnlyFiles("model-f16.gguf", "q8.gguf");
    }

    [Fact]
    public void Truncated_input_is_refused_and_nothing_is_written()
    {
        var f16 = Export(TinyModel.Config, "model-f16.gguf", QuantizationMixes.F16);
        var bytes = File.ReadAllBytes(f16);
        var truncated = _dir.File("truncated.gguf");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length - 1000)]);
        var e = Assert.Throws<ErtasException>(() => GgufQuantizer.Quantize(truncated, _dir.File("out.gguf"), QuantizationMixes.Q8_0));
        Assert.Equal(ErrorCode.GgufTruncated, e.Code);
        AssertOnlyFiles("model-f16.gguf", "truncated.gguf");
    }

    [Fact]
    public void An_existing_output_is_not_overwritten_without_permission_and_is_replaced_with_it()
    {
        var f16 = Export(TinyModel.Config, "model-f16.gguf", QuantizationMixes.F16);
        var output = _dir.File("out.gguf");
        File.WriteAllText(output, "a file the user cares about");
        var e = Assert.Throws<ErtasException>(() => GgufQuantizer.Quantize(f16, output, QuantizationMixes.Q8_0));
        Assert.Equal(ErrorCode.OutputExists, e.Code);
        Assert.Contains("not ours to overwrite", e.Message, StringComparison.Ordinal);
        Assert.Equal("a file the user cares about", File.ReadAllText(output));

        GgufQuantizer.Quantize(f16, output, QuantizationMixes.Q8_0, new GgufQuantizeOptions { Overwrite = true });
        using var reader = new GgufReader(output);
        Assert.Equal((uint)LlamaFileType.MostlyQ8_0, reader.GetUInt32(Keys.General.FileType));
    }

    [Fact]
    public void The_input_cannot_be_its_own_output()
    {
        var f16 = Export(TinyModel.Config, "model-f16.gguf", QuantizationMixes.F16);
        var before = File.ReadAllBytes(f16);
        var e = Assert.Throws<ErtasException>(() => GgufQuantizer.Quantize(f16, f16, QuantizationMixes.Q8_0, new GgufQuantizeOptions { Overwrite = true }));
        Assert.Equal(ErrorCode.InvalidArgument, e.Code);
        Assert.Equal(before, File.ReadAllBytes(f16));
    }

    [Fact]
    public void Cancellation_midway_leaves_no_output_and_no_temporary_file()
    {
        var f16 = Export(Rows256, "model-f16.gguf", QuantizationMixes.F16);
        using var cts = new CancellationTokenSource();
        var progress = new CancelAfter(cts, lines: 4);
        Assert.ThrowsAny<OperationCanceledException>(() =>
            GgufQuantizer.Quantize(f16, _dir.File("out.gguf"), QuantizationMixes.Q4_K_M, new GgufQuantizeOptions { Progress = progress }, cts.Token));
        AssertOnlyFiles("model-f16.gguf");
    }

    [Fact]
    public void A_missing_input_is_file_not_found()
    {
        var e = Assert.Throws<ErtasException>(() => GgufQuantizer.Quantize(_dir.File("absent.gguf"), _dir.File("out.gguf"), QuantizationMixes.Q8_0));
        Assert.Equal(ErrorCode.FileNotFound, e.Code);
        AssertOnlyFiles();
    }

    private string Export(MistralConfig config, string name, QuantizationMix mix)
    {
        var path = _dir.File(name);
        GgufExporter.Export(config, TinyModel.Weights(config, seed: 5), TinyModel.Vocabulary(), path, mix,
            new GgufExportOptions { ModelName = "quantizer-test", Threads = 2 });
        return path;
    }

    private void AssertOnlyFiles(params string[] names) =>
        Assert.Equal(names.Order(StringComparer.Ordinal), Directory.GetFiles(_dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));

    private sealed class CancelAfter(CancellationTokenSource cts, int lines) : IProgressSink
    {
        private int _seen;
        public void Report(string line)
        {
            if (++_seen == lines)
                cts.Cancel();
        }
    }
}

using System.Runtime.InteropServices;
using System.Text.Json;
using Ertas.Cli;
using Ertas.Core;
using Ertas.Gguf;
using Ertas.Gguf.Adapters;
using Ertas.Mistral;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Presets;
using Ertas.Training.Merging;

namespace Ertas.Training.Tests.Adapters;

/// <summary>A one-layer base and hand-made adapters (seeded random A and B), for the merge arithmetic and the
/// adapter folder's validation, without training.</summary>
public sealed class SyntheticAdapterFixture : IDisposable
{
    public SyntheticAdapterFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "ertas-adapter-" + Guid.NewGuid().ToString("N"));
        BaseFolder = Path.Combine(Root, "base");
        BaseModelFactory.Create(new BaseModelRequest
        {
            Preset = "tiny", Seed = 5, HiddenSize = 64, IntermediateSize = 128, Layers = 1, Heads = 4, KvHeads = 2,
        }, BaseFolder, NullProgressSink.Instance);
        using var checkpoint = HfCheckpoint.Open(BaseFolder);
        Config = checkpoint.Config;
    }

    public string Root { get; }
    public string BaseFolder { get; }
    public MistralConfig Config { get; }

    public static readonly string[] Targets =
        ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj", "model.layers.0.mlp.down_proj"];

    /// <summary>Writes an adapter of rank <paramref name="rank"/> for <see cref="Targets"/>; <paramref name="configure"/> edits
    /// adapter_config.json, <paramref name="tamper"/> the tensor list.</summary>
    public string WriteAdapter(int rank = 4, double alpha = 8, Action<Dictionary<string, object?>>? configure = null,
        Func<List<SafeTensorEntry>, List<SafeTensorEntry>>? tamper = null, object? sidecar = null)
    {
        var folder = Path.Combine(Root, "adapter-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(folder);
        var shapes = Config.ExpectedTensors().ToDictionary(t => t.Name, t => t.Shape);
        var entries = new List<SafeTensorEntry>();
        var random = new Random(11);
        foreach (var target in Targets)
        {
            var (outFeatures, inFeatures) = (shapes[target + ".weight"][0], shapes[target + ".weight"][1]);
            var a = Enumerable.Range(0, (int)(rank * inFeatures)).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
            var b = Enumerable.Range(0, (int)(outFeatures * rank)).Select(_ => (float)(random.NextDouble() - 0.5) * 0.1f).ToArray();
            entries.Add(Entry($"base_model.model.{target}.lora_A.weight", [rank, inFeatures], a));
            entries.Add(Entry($"base_model.model.{target}.lora_B.weight", [outFeatures, rank], b));
        }
        SafeTensorsWriter.Write(Path.Combine(folder, PeftAdapter.WeightsFileName), tamper?.Invoke(entries) ?? entries);
        var config = new Dictionary<string, object?>
        {
            ["peft_type"] = "LORA", ["r"] = rank, ["lora_alpha"] = alpha, ["bias"] = "none", ["use_dora"] = false,
            ["use_rslora"] = false, ["rank_pattern"] = new Dictionary<string, object>(), ["alpha_pattern"] = new Dictionary<string, object>(),
            ["modules_to_save"] = null, ["target_modules"] = new[] { "q_proj", "k_proj", "v_proj", "down_proj" },
        };
        configure?.Invoke(config);
        File.WriteAllText(Path.Combine(folder, PeftAdapter.ConfigFileName), JsonSerializer.Serialize(config));
        if (sidecar is not null)
            File.WriteAllText(Path.Combine(folder, PeftAdapter.SidecarFileName), JsonSerializer.Serialize(sidecar));
        return folder;
    }

    public static SafeTensorEntry Entry(string name, long[] shape, float[] values) =>
        new(name, DType.F32, shape, bytes => MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(bytes));

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

public sealed class PeftAdapterTests(SyntheticAdapterFixture fixture) : IClassFixture<SyntheticAdapterFixture>
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MergedTensors_AreTheBasePlusScaledBTimesA_AndEveryOtherTensorPassesThrough(bool rsLora)
    {
        using var adapter = PeftAdapter.Open(fixture.WriteAdapter(rank: 4, alpha: 8, configure: c => c["use_rslora"] = rsLora));
        using var checkpoint = HfCheckpoint.Open(fixture.BaseFolder);
        Assert.Equal(rsLora ? 8 / 2.0 : 8 / 4.0, adapter.Scaling);
        var merged = new MergedTensorSource(checkpoint, adapter, BaseWeights.Exact);
        foreach (var name in checkpoint.TensorNames)
        {
            var shape = checkpoint.GetShape(name);
            var count = (int)shape.Aggregate(1L, (x, y) => x * y);
            var (actual, raw) = (new float[count], new float[count]);
            merged.ReadFloat32(name, actual);
            checkpoint.ReadFloat32(name, raw);
            if (adapter.ForBaseTensor(name) is not { } module)
            {
                Assert.Equal(raw, actual);
                continue;
            }
            var (a, b) = (new float[module.Rank * module.InFeatures], new float[module.OutFeatures * module.Rank]);
            adapter.ReadA(module, a);
            adapter.ReadB(module, b);
            double maxError = 0;
            for (var o = 0; o < module.OutFeatures; o++)
                for (var i = 0; i < module.InFeatures; i++)
                {
                    double update = 0;
                    for (var k = 0; k < module.Rank; k++) update += (double)b[o * module.Rank + k] * a[k * module.InFeatures + i];
                    maxError = Math.Max(maxError, Math.Abs(raw[o * module.InFeatures + i] + adapter.Scaling * update - actual[o * module.InFeatures + i]));
                }
            Assert.True(maxError < 1e-6, $"{name}: max error {maxError}");
        }
        Assert.Equal(SyntheticAdapterFixture.Targets.Length, merged.MergedReads);
    }

    [Fact]
    public void Nf4Merge_AddsTheUpdateToTheNf4RoundTripOfTheBase()
    {
        using var adapter = PeftAdapter.Open(fixture.WriteAdapter());
        using var checkpoint = HfCheckpoint.Open(fixture.BaseFolder);
        var nf4 = new MergedTensorSource(checkpoint, adapter, BaseWeights.Nf4);
        var exact = new MergedTensorSource(checkpoint, adapter, BaseWeights.Exact);
        const string name = "model.layers.0.self_attn.v_proj.weight";
        var shape = checkpoint.GetShape(name);
        var count = (int)(shape[0] * shape[1]);
        var (fromNf4, fromExact, raw) = (new float[count], new float[count], new float[count]);
        nf4.ReadFloat32(name, fromNf4);
        exact.ReadFloat32(name, fromExact);
        checkpoint.ReadFloat32(name, raw);
        using var quantized = Nf4.Quantize(raw, shape);
        using var roundTrip = quantized.Dequantize();
        var expectedBase = roundTrip.data<float>().ToArray();
        // merged_nf4 - merged_exact = roundtrip(W) - W, to float rounding of the sums.
        for (var i = 0; i < count; i++)
            Assert.True(Math.Abs(fromNf4[i] - fromExact[i] - (expectedBase[i] - raw[i])) < 1e-6, $"element {i}");
        Assert.Contains(fromNf4.Zip(fromExact), p => p.First != p.Second);
    }

    [Fact]
    public void AdapterGguf_WritesAlphaThatGivesTheScale_AndPermutesKRowsWithTheKvHeadCount()
    {
        var folder = fixture.WriteAdapter(rank: 4, alpha: 8, configure: c => c["use_rslora"] = true);
        using var adapter = PeftAdapter.Open(folder);
        var path = Path.Combine(folder, "adapter.gguf");
        LoraGgufExporter.Export(adapter, fixture.Config, path, new LoraGgufOptions { Name = "synthetic" });
        using var reader = new GgufReader(path);
        Assert.Equal("synthetic", reader.GetString(Keys.General.Name));
        // llama.cpp scales by alpha / rank: rsLoRA's alpha / sqrt(r) = 4 needs alpha 16 at r 4.
        Assert.Equal(16f, reader.GetFloat32(Keys.Adapter.LoraAlpha));
        var k = adapter.ForBaseTensor("model.layers.0.self_attn.k_proj.weight")!;
        var peft = new float[k.OutFeatures * k.Rank];
        adapter.ReadB(k, peft);
        var gguf = MemoryMarshal.Cast<byte, float>(reader.GetTensorBytes(reader.GetTensor("blk.0.attn_k.weight.lora_b"))).ToArray();
        var expected = new float[peft.Length];
        RopePermutation.HfToGguf<float>(peft, expected, (int)k.OutFeatures, (int)k.Rank, fixture.Config.NumKeyValueHeads);
        Assert.Equal(expected, gguf);
        var down = reader.GetTensor("blk.0.ffn_down.weight.lora_a");
        Assert.Equal([fixture.Config.IntermediateSize, 4L], down.Dimensions);
    }

    public static TheoryData<string, string> UnsupportedConfigs => new()
    {
        { "use_dora", "DoRA" },
        { "rank_pattern", "rank_pattern" },
        { "modules_to_save", "modules_to_save" },
        { "bias", "bias" },
        { "fan_in_fan_out", "fan_in_fan_out" },
        { "peft_type", "IA3" },
    };

    [Theory]
    [MemberData(nameof(UnsupportedConfigs))]
    public void PeftFeaturesTheExportersCannotRepresent_AreAdapterInvalid(string field, string mentioned)
    {
        var folder = fixture.WriteAdapter(configure: c => c[field] = field switch
        {
            "use_dora" or "fan_in_fan_out" => true,
            "rank_pattern" => new Dictionary<string, int> { ["q_proj"] = 8 },
            "modules_to_save" => new[] { "lm_head" },
            "bias" => "lora_only",
            _ => "IA3",
        });
        var error = Assert.Throws<ErtasException>(() => PeftAdapter.Open(folder));
        Assert.Equal(ErrorCode.AdapterInvalid, error.Code);
        Assert.Contains(mentioned, error.Message);
    }

    [Fact]
    public void UnpairedOrForeignTensors_AreAdapterInvalid()
    {
        var unpaired = fixture.WriteAdapter(tamper: e => [.. e.Where(x => !x.Name.Contains("v_proj.lora_B"))]);
        var error = Assert.Throws<ErtasException>(() => PeftAdapter.Open(unpaired));
        Assert.Equal(ErrorCode.AdapterInvalid, error.Code);
        Assert.Contains("model.layers.0.self_attn.v_proj", error.Message);

        var foreign = fixture.WriteAdapter(tamper: e => [.. e, SyntheticAdapterFixture.Entry("base_model.model.lm_head.weight", [2], [1f, 2f])]);
        error = Assert.Throws<ErtasException>(() => PeftAdapter.Open(foreign));
        Assert.Equal(ErrorCode.AdapterInvalid, error.Code);
        Assert.Contains("lm_head.weight", error.Message);
    }

    [Fact]
    public void NaNInAFactor_IsAdapterInvalid_AndLeavesNoOutput()
    {
        var folder = fixture.WriteAdapter(tamper: e => [.. e.Select(x => x.Name.EndsWith("q_proj.lora_B.weight", StringComparison.Ordinal)
            ? SyntheticAdapterFixture.Entry(x.Name, x.Shape, [.. Enumerable.Repeat(float.NaN, (int)(x.Shape[0] * x.Shape[1]))])
            : x)]);
        var output = Path.Combine(folder, "out.gguf");
        var stderr = new StringWriter();
        var code = CliApp.Run(["adapter", "export", "--model", fixture.BaseFolder, "--adapter", folder, "--out", output], new StringWriter(), stderr);
        Assert.Equal((int)ExitCode.Failure, code);
        Assert.Contains("error ERTAS7021", stderr.ToString());
        Assert.Contains("NaN", stderr.ToString());
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.EnumerateFiles(folder, "*.tmp*"));
    }

    [Fact]
    public void BaseWeights_ComeFromTheFlag_ThenTheSidecar_ThenDefaultToNf4()
    {
        using var bare = PeftAdapter.Open(fixture.WriteAdapter());
        Assert.Equal(BaseWeights.Nf4, AdapterMerger.ResolveBase(bare, null).Weights);
        Assert.Equal(BaseWeights.Exact, AdapterMerger.ResolveBase(bare, BaseWeights.Exact).Weights);
        using var plain = PeftAdapter.Open(fixture.WriteAdapter(sidecar: new { format = 1, quantize_base = false, compute = "bf16" }));
        var (weights, compute, reason) = AdapterMerger.ResolveBase(plain, null);
        Assert.Equal((BaseWeights.Exact, ComputePrecision.BF16), (weights, compute));
        Assert.Contains("quantize_base false", reason);
        Assert.Equal(BaseWeights.Nf4, AdapterMerger.ResolveBase(plain, BaseWeights.Nf4).Weights);

        var future = Assert.Throws<ErtasException>(() => PeftAdapter.Open(fixture.WriteAdapter(sidecar: new { format = 2 })));
        Assert.Equal(ErrorCode.AdapterInvalid, future.Code);
    }

    [Fact]
    public void MergeCommand_RefusesExistingOutputsWithoutForce_AndBadOptions()
    {
        var adapter = fixture.WriteAdapter();
        var output = Path.Combine(adapter, "merged.gguf");
        File.WriteAllText(output, "keep me");
        (int Code, string Stderr) Run(params string[] args)
        {
            var stderr = new StringWriter();
            return (CliApp.Run(args, new StringWriter(), stderr), stderr.ToString());
        }

        var exists = Run("merge", "--model", fixture.BaseFolder, "--adapter", adapter, "--out", output, "--type", "f16");
        Assert.Contains("error ERTAS1006", exists.Stderr);
        Assert.Equal("keep me", File.ReadAllText(output));
        Assert.Contains("error ERTAS1002", Run("merge", "--model", fixture.BaseFolder, "--adapter", adapter, "--out", output, "--force").Stderr);
        Assert.Contains("--version", Run("merge", "--model", fixture.BaseFolder, "--adapter", adapter, "--out", output, "--type", "f16", "--version", "1.2").Stderr);
        Assert.Contains("--base-weights", Run("merge", "--model", fixture.BaseFolder, "--adapter", adapter, "--out", output, "--type", "f16", "--base-weights", "int8").Stderr);
        Assert.Contains("--type", Run("merge", "--model", fixture.BaseFolder, "--adapter", adapter, "--out", Path.Combine(adapter, "hf"), "--format", "hf", "--type", "f16").Stderr);
        Assert.Contains("error ERTAS1006", Run("merge", "--model", fixture.BaseFolder, "--adapter", adapter, "--out", adapter, "--format", "hf").Stderr);

        var forced = Run("merge", "--model", fixture.BaseFolder, "--adapter", adapter, "--out", output, "--type", "f16", "--force", "--threads", "1");
        Assert.Equal(0, forced.Code);
        Assert.Matches(@"ETA \d\d:\d\d:\d\d", forced.Stderr);
        using var reader = new GgufReader(output);
        Assert.Equal(GgmlType.F16, reader.GetTensor("blk.0.attn_q.weight").Type);
        Assert.Equal(Path.GetFileName(adapter), reader.GetString(Keys.General.Name));
    }
}

using Ertas.Cli;
using Ertas.Core;
using Ertas.Gguf;
using Ertas.Gguf.Adapters;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Presets;
using Ertas.Modeling;
using Ertas.TestSupport;
using Ertas.Training.Merging;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ertas.Training.Tests.Adapters;

/// <summary>
/// Merging a trained adapter and exporting it as a GGUF adapter, judged by llama.cpp (through LLamaSharp) and by our
/// own model: the merged file answers the training prompts, base + adapter in llama.cpp computes what the merged file
/// computes, and the merged HF folder computes what the trainer computed.
/// </summary>
public sealed class MergeAndAdapterTests(MergeFixture fixture, ITestOutputHelper output) : IClassFixture<MergeFixture>
{
    /// <summary>The trainer itself answers all 16 here (seeded), but reaching it over Q8_0 weights may flip one
    /// near-tie in 16 answers of ~10 tokens each; 15 still proves the merge carries what was learned.</summary>
    private const int MinimumCorrectQ8 = 15;

    /// <summary>W x + s B (A x) in llama.cpp against (W + s B A) x: the same f32 numbers summed in another order.
    /// Measured ~1e-5 against logits of magnitude ~10-20.</summary>
    private const float LoraVsMergedTolerance = 1e-3f;

    /// <summary>Our model over the merged HF folder against the trainer's NF4 + LoRA forward, both f32 on libtorch.</summary>
    private const float HfVsTrainerTolerance = 1e-4f;

    // The fixture's run is the one learning proof (shared so the 120 steps run once for the whole assembly's judges).
    [Fact]
    public void Train_TinyModel_LearnsTheCapitals_LossFallsAndTheTrainerAnswersGreedily()
    {
        var result = fixture.Result;
        output.WriteLine($"tok/s {result.TokensPerSecond:F0}, elapsed {result.Elapsed.TotalSeconds:F1} s");
        output.WriteLine("losses: " + string.Join(" ", result.StepLosses.Select(l => l.ToString("F3"))));
        var first = result.StepLosses.Take(3).Average();
        var last = result.StepLosses.TakeLast(3).Average();
        Assert.True(last < 0.3 * first, $"loss fell only from {first:F3} to {last:F3}");
        Assert.Matches(@"^step 1/120 loss \d+\.\d{3} lr [0-9.]+e[-+]\d+ tok/s \d+ ETA \d\d:\d\d:\d\d", fixture.ProgressLines[0]);

        for (var i = 0; i < fixture.Expected.Count; i++) output.WriteLine($"{fixture.Expected[i]} <- {fixture.TrainerAnswers[i]}");
        Assert.Equal(fixture.Expected[0], fixture.TrainerAnswers[0]);
        Assert.True(fixture.Expected.Zip(fixture.TrainerAnswers).Count(p => p.First == p.Second) >= 14,
            "fewer than 14 of the 16 training prompts get their trained answer");
    }

    [Fact]
    public void MergedQ8_0Gguf_InLlamaCpp_AnswersTheTrainingPromptsWithTheTrainedAnswers()
    {
        foreach (var line in fixture.Timings) output.WriteLine(line);
        using var llama = LlamaCppModel.Load(fixture.MergedQ8Gguf, contextSize: 256);
        var correct = 0;
        var agreesWithTrainer = 0;
        for (var i = 0; i < fixture.Prompts.Count; i++)
        {
            var (ids, _) = llama.Greedy(fixture.Prompts[i], MergeFixture.MaxNewTokens, fixture.Data.Tokenizer.EosId);
            var answer = fixture.Decode(ids);
            output.WriteLine($"{fixture.Expected[i]} <- llama.cpp Q8_0: {answer} | trainer: {fixture.TrainerAnswers[i]}");
            if (answer == fixture.Expected[i]) correct++;
            if (answer == fixture.TrainerAnswers[i]) agreesWithTrainer++;
        }
        output.WriteLine($"{correct}/16 trained answers, {agreesWithTrainer}/16 equal to the in-memory trainer's");
        Assert.True(fixture.TrainerAnswers.Count(a => fixture.Expected.Contains(a)) >= MinimumCorrectQ8, "the trainer itself did not learn the capitals");
        Assert.True(correct >= MinimumCorrectQ8, $"llama.cpp over the merged Q8_0 file gave {correct}/16 trained answers, expected at least {MinimumCorrectQ8}");
    }

    [Fact]
    public void MergedQ8_0Gguf_CarriesNameVersionAndQ8_0Weights()
    {
        using var reader = new GgufReader(fixture.MergedQ8Gguf);
        Assert.Equal("capitals", reader.GetString(Keys.General.Name));
        Assert.Equal("1.2.0-rc.1", reader.GetString(Keys.General.Version));
        Assert.Equal("model", reader.GetString(Keys.General.Type));
        Assert.Equal(GgmlType.Q8_0, reader.GetTensor("blk.0.attn_q.weight").Type);
        Assert.Equal(GgmlType.F32, reader.GetTensor("blk.0.attn_norm.weight").Type);
    }

    [Fact]
    public void BaseF32PlusAdapterGguf_InLlamaCpp_MatchesTheMergedF32GgufOverTheExactBase()
    {
        using var withLora = LlamaCppModel.Load(fixture.BaseF32Gguf, contextSize: 256, loraAdapter: fixture.AdapterGguf);
        using var merged = LlamaCppModel.Load(fixture.MergedExactF32Gguf, contextSize: 256);
        using var plainBase = LlamaCppModel.Load(fixture.BaseF32Gguf, contextSize: 256);
        float maxDiff = 0, maxLogit = 0, maxAdapterEffect = 0;
        var correct = 0;
        for (var i = 0; i < fixture.Prompts.Count; i++)
        {
            var (loraIds, loraLogits) = withLora.Greedy(fixture.Prompts[i], MergeFixture.MaxNewTokens, fixture.Data.Tokenizer.EosId);
            var (mergedIds, mergedLogits) = merged.Greedy(fixture.Prompts[i], MergeFixture.MaxNewTokens, fixture.Data.Tokenizer.EosId);
            Assert.Equal(mergedIds, loraIds);
            for (var step = 0; step < loraLogits.Length; step++)
                for (var v = 0; v < loraLogits[step].Length; v++)
                {
                    maxDiff = Math.Max(maxDiff, Math.Abs(loraLogits[step][v] - mergedLogits[step][v]));
                    maxLogit = Math.Max(maxLogit, Math.Abs(mergedLogits[step][v]));
                }
            var (_, baseLogits) = plainBase.Greedy(fixture.Prompts[i], 1, null);
            for (var v = 0; v < baseLogits[0].Length; v++)
                maxAdapterEffect = Math.Max(maxAdapterEffect, Math.Abs(loraLogits[0][v] - baseLogits[0][v]));
            if (fixture.Decode(loraIds) == fixture.Expected[i]) correct++;
        }
        output.WriteLine($"base + adapter vs merged (exact base), f32: max |logit diff| {maxDiff:E2} (max |logit| {maxLogit:F1}); " +
            $"the adapter moves the first logits by up to {maxAdapterEffect:F2}; {correct}/16 trained answers over the exact base");
        Assert.True(maxAdapterEffect > 1, $"the adapter barely changes llama.cpp's logits ({maxAdapterEffect}): was it applied?");
        Assert.True(maxDiff <= LoraVsMergedTolerance, $"max |logit diff| {maxDiff} exceeds {LoraVsMergedTolerance}");
    }

    [Fact]
    public void BaseF32PlusAdapterGguf_InLlamaCpp_GivesTheMergedQ8_0Answers()
    {
        // The merged file adds the update to the NF4 base the adapter trained on; llama.cpp adds it to the exact base.
        // Both must still give the trained answers: the QLoRA update transfers to the unquantized base.
        using var withLora = LlamaCppModel.Load(fixture.BaseF32Gguf, contextSize: 256, loraAdapter: fixture.AdapterGguf);
        using var merged = LlamaCppModel.Load(fixture.MergedQ8Gguf, contextSize: 256);
        var same = 0;
        for (var i = 0; i < fixture.Prompts.Count; i++)
        {
            var lora = fixture.Decode(withLora.Greedy(fixture.Prompts[i], MergeFixture.MaxNewTokens, fixture.Data.Tokenizer.EosId).Ids);
            var q8 = fixture.Decode(merged.Greedy(fixture.Prompts[i], MergeFixture.MaxNewTokens, fixture.Data.Tokenizer.EosId).Ids);
            output.WriteLine($"base+adapter: {lora} | merged Q8_0: {q8}");
            if (lora == q8) same++;
        }
        Assert.True(same >= MinimumCorrectQ8, $"base + adapter and the merged Q8_0 file agree on {same}/16 answers");
    }

    [Fact]
    public void MergedHfFolder_LoadedByOurModel_GivesTheTrainersLogits()
    {
        using var checkpoint = HfCheckpoint.Open(fixture.MergedHfFolder);
        Assert.True(File.Exists(Path.Combine(fixture.MergedHfFolder, "tokenizer.model")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(fixture.Data.BaseFolder, "tokenizer.model")),
            File.ReadAllBytes(Path.Combine(fixture.MergedHfFolder, "tokenizer.model")));
        using (var baseCheckpoint = HfCheckpoint.Open(fixture.Data.BaseFolder))
            foreach (var name in checkpoint.TensorNames)
                Assert.Equal(baseCheckpoint.GetDType(name), checkpoint.GetDType(name));
        using var merged = MistralModel.Load(checkpoint.Config, checkpoint);
        using var noGrad = no_grad();
        fixture.Trainer.Model.eval();
        double maxDiff = 0, maxLogit = 0;
        for (var i = 0; i < fixture.Prompts.Count; i++)
        {
            using var scope = NewDisposeScope();
            var answer = fixture.Data.Tokenizer.Encode(" " + fixture.Expected[i], addBos: false);
            var ids = tensor(fixture.Prompts[i].Concat(answer).Select(x => (long)x).ToArray()).unsqueeze(0);   // (1, T)
            var expected = fixture.Trainer.Model.forward(ids);                                                  // (1, T, vocab)
            var actual = merged.forward(ids);
            maxDiff = Math.Max(maxDiff, (expected - actual).abs().max().item<float>());
            maxLogit = Math.Max(maxLogit, expected.abs().max().item<float>());
        }
        output.WriteLine($"merged HF folder vs trainer (NF4 + LoRA): max |logit diff| {maxDiff:E2} (max |logit| {maxLogit:F1})");
        Assert.True(maxDiff <= HfVsTrainerTolerance, $"max |logit diff| {maxDiff} exceeds {HfVsTrainerTolerance}");
    }

    [Fact]
    public void MergeOverTheExactBase_DiffersFromTheNf4Merge_ByTheNf4RoundingOnlyInAdaptedTensors()
    {
        using var adapter = PeftAdapter.Open(fixture.AdapterFolder);
        using var checkpoint = HfCheckpoint.Open(fixture.Data.BaseFolder);
        var nf4 = new MergedTensorSource(checkpoint, adapter, BaseWeights.Nf4);
        var exact = new MergedTensorSource(checkpoint, adapter, BaseWeights.Exact);
        foreach (var name in checkpoint.TensorNames)
        {
            var count = (int)checkpoint.GetShape(name).Aggregate(1L, (a, b) => a * b);
            var (a, b, raw) = (new float[count], new float[count], new float[count]);
            nf4.ReadFloat32(name, a);
            exact.ReadFloat32(name, b);
            checkpoint.ReadFloat32(name, raw);
            if (adapter.ForBaseTensor(name) is null)
            {
                Assert.Equal(raw, a);
                Assert.Equal(raw, b);
                continue;
            }
            // Exact: W + s B A; NF4: round trip of W + s B A. Their difference is the NF4 error, at most half a code
            // step of the block absmax (< 0.17 * absmax), and never zero everywhere.
            var maxAbs = raw.Max(MathF.Abs);
            var diff = a.Zip(b, (x, y) => MathF.Abs(x - y)).Max();
            Assert.InRange(diff, 1e-6f, 0.17f * maxAbs);
            Assert.NotEqual(raw, b);
        }
        Assert.Equal(adapter.Modules.Count, exact.MergedReads);
    }

    [Fact]
    public void AdapterGguf_HasTheLayoutLlamaCppLoads_WithQAndKRowsOfBPermuted()
    {
        using var reader = new GgufReader(fixture.AdapterGguf);
        using var adapter = PeftAdapter.Open(fixture.AdapterFolder);
        Assert.Equal("adapter", reader.GetString(Keys.General.Type));
        Assert.Equal("lora", reader.GetString(Keys.Adapter.Type));
        Assert.Equal("llama", reader.GetString(Keys.General.Architecture));
        Assert.Equal(16f, reader.GetFloat32(Keys.Adapter.LoraAlpha));
        Assert.Equal(2 * adapter.Modules.Count, reader.Tensors.Count);
        Assert.Equal(2 * 2 * 7, reader.Tensors.Count); // 2 layers, 7 projections, A and B

        var q = adapter.ForBaseTensor("model.layers.1.self_attn.q_proj.weight")!;
        var a = reader.GetTensor("blk.1.attn_q.weight.lora_a");
        var b = reader.GetTensor("blk.1.attn_q.weight.lora_b");
        Assert.Equal(GgmlType.F32, a.Type);
        Assert.Equal([q.InFeatures, 8L], a.Dimensions);   // ggml ne: innermost first; row-major (r, in)
        Assert.Equal([8L, q.OutFeatures], b.Dimensions);  // (out, r)
        var peftB = new float[q.OutFeatures * q.Rank];
        adapter.ReadB(q, peftB);
        var ggufB = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(reader.GetTensorBytes(b)).ToArray();
        var headDim = (int)(q.OutFeatures / 4);
        for (var row = 0; row < q.OutFeatures; row++)
            Assert.Equal(peftB.AsSpan(RopePermutation.HfRowForGgufRow(row, headDim) * 8, 8).ToArray(), ggufB.AsSpan(row * 8, 8).ToArray());
        Assert.NotEqual(peftB, ggufB);

        var v = adapter.ForBaseTensor("model.layers.1.self_attn.v_proj.weight")!;
        var peftV = new float[v.OutFeatures * v.Rank];
        adapter.ReadB(v, peftV);
        Assert.Equal(peftV, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(
            reader.GetTensorBytes(reader.GetTensor("blk.1.attn_v.weight.lora_b"))).ToArray());
    }

    [Fact]
    public void AdapterFromABaseOfOtherShape_IsAdapterBaseMismatch_ForExportAndMerge()
    {
        var otherBase = fixture.Data.NewFolder("other-base");
        BaseModelFactory.Create(new BaseModelRequest
        {
            Preset = "tiny", Seed = 3, HiddenSize = 128, IntermediateSize = 384, Layers = 2, Heads = 4, KvHeads = 2,
        }, otherBase, NullProgressSink.Instance);
        var outFile = Path.Combine(fixture.Data.NewFolder("mismatch"), "out.gguf");

        var export = fixture.RunCli("adapter", "export", "--model", otherBase, "--adapter", fixture.AdapterFolder, "--out", outFile);
        Assert.Equal((int)ExitCode.Failure, export.ExitCode);
        Assert.Contains("error ERTAS7022", export.Stderr);
        Assert.Contains("model.layers.0.mlp.down_proj.weight", export.Stderr);
        Assert.Contains("[128, 384]", export.Stderr);

        var merge = fixture.RunCli("merge", "--model", otherBase, "--adapter", fixture.AdapterFolder, "--out", outFile, "--type", "f16");
        Assert.Equal((int)ExitCode.Failure, merge.ExitCode);
        Assert.Contains("error ERTAS7022", merge.Stderr);
        Assert.False(File.Exists(outFile));
    }

    [Fact]
    public void AdapterForMoreLayersThanTheBase_IsAdapterBaseMismatch()
    {
        var oneLayer = fixture.Data.NewFolder("one-layer-base");
        BaseModelFactory.Create(new BaseModelRequest
        {
            Preset = "tiny", Seed = 3, HiddenSize = 128, IntermediateSize = 256, Layers = 1, Heads = 4, KvHeads = 2,
        }, oneLayer, NullProgressSink.Instance);
        using var adapter = PeftAdapter.Open(fixture.AdapterFolder);
        using var checkpoint = HfCheckpoint.Open(oneLayer);
        var error = Assert.Throws<ErtasException>(() => adapter.VerifyBase(checkpoint.Config));
        Assert.Equal(ErrorCode.AdapterBaseMismatch, error.Code);
        Assert.Contains("model.layers.1.", error.Message);
    }

    [Fact]
    public void MissingAdapterFolderOrFile_IsAdapterMissing_AndBadJson_IsAdapterInvalid()
    {
        var outFile = Path.Combine(fixture.Data.NewFolder("missing"), "out.gguf");
        var missing = fixture.RunCli("adapter", "export", "--model", fixture.Data.BaseFolder,
            "--adapter", Path.Combine(fixture.Data.Root, "no-such-adapter"), "--out", outFile);
        Assert.Equal((int)ExitCode.Failure, missing.ExitCode);
        Assert.Contains("error ERTAS7020", missing.Stderr);

        var noWeights = fixture.Data.NewFolder("config-only");
        File.Copy(Path.Combine(fixture.AdapterFolder, PeftAdapter.ConfigFileName), Path.Combine(noWeights, PeftAdapter.ConfigFileName));
        var merge = fixture.RunCli("merge", "--model", fixture.Data.BaseFolder, "--adapter", noWeights, "--out", outFile, "--type", "q8_0");
        Assert.Equal((int)ExitCode.Failure, merge.ExitCode);
        Assert.Contains("error ERTAS7020", merge.Stderr);
        Assert.Contains(PeftAdapter.WeightsFileName, merge.Stderr);

        var badJson = fixture.Data.NewFolder("bad-json");
        File.Copy(Path.Combine(fixture.AdapterFolder, PeftAdapter.WeightsFileName), Path.Combine(badJson, PeftAdapter.WeightsFileName));
        File.WriteAllText(Path.Combine(badJson, PeftAdapter.ConfigFileName), "{\"r\": 8,\n \"lora_alpha\": }");
        var invalid = Assert.Throws<ErtasException>(() => PeftAdapter.Open(badJson));
        Assert.Equal(ErrorCode.AdapterInvalid, invalid.Code);
        Assert.Equal(2, invalid.Line);

        File.WriteAllText(Path.Combine(badJson, PeftAdapter.ConfigFileName), "{\"r\": 4, \"lora_alpha\": 16}");
        var wrongRank = Assert.Throws<ErtasException>(() => PeftAdapter.Open(badJson));
        Assert.Equal(ErrorCode.AdapterInvalid, wrongRank.Code);
        Assert.Contains("r = 4", wrongRank.Message);
        Assert.False(File.Exists(outFile));
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using Ertas.Core;
using Ertas.Mistral;
using Ertas.Modeling;
using Ertas.Training;
using TorchSharp;

namespace Ertas.Bench;

public sealed record QloraStepBenchResult(
    string Checkpoint, int SequenceLength, int Rank, int Threads, string Compute, double Bf16ProbeGFlops, double F32ProbeGFlops,
    double EmptyModelRssMb, double StartRssMb, double LoadSeconds, double AfterLoadRssMb, double AfterLoadPeakMb,
    double StepSeconds, double StepLoss, long StepTokens, double AfterStepRssMb, double PeakRssInProcessMb,
    ChildRun? Create = null, double PeakRssMb = 0, double MaxAnonMb = 0, double MaxFileMb = 0, double WallSeconds = 0,
    string LoadBefore = "", string LoadAfter = "", IReadOnlyList<StepPhase>? Phases = null);

/// <summary>
/// <c>qlora-7b-step</c>: one QLoRA optimizer step on the 7b preset (Mistral 7B's shapes, bf16 safetensors) on this CPU:
/// seq 512, batch 1, r 16, all seven projections, activation checkpointing, bf16 compute, NF4 base loaded by
/// <see cref="Trainer.Load"/> (streaming: each projection quantized as it is read). A child process; its peak RSS is
/// the kernel's high-water mark. Target: at most <see cref="TargetPeakRssMb"/> MB.
/// </summary>
public static class QloraStepBenchmark
{
    public const int SequenceLength = 512, Rank = 16, Threads = 2;
    public const double TargetPeakRssMb = 5500; // issue 14 (was 8 GB); the floor is ~5 GB: NF4 base, embeddings and head, LoRA + AdamW

    public static QloraStepBenchResult Run(BenchEnvironment env)
    {
        var folder = ExportBenchmark.EnsureCheckpoint(env);
        var loadBefore = GenerateBenchmark.LoadAverage();
        var (result, run) = TrainingWorker.Launch<QloraStepBenchResult>(env, "qlora-7b-step", "qlora-step", folder,
            Path.Combine(env.WorkDir, "qlora-7b-data"));
        return result with
        {
            PeakRssMb = run.PeakRssMb, MaxAnonMb = run.MaxRssAnonMb, MaxFileMb = run.MaxRssFileMb, WallSeconds = run.WallSeconds,
            LoadBefore = loadBefore, LoadAfter = GenerateBenchmark.LoadAverage(),
        };
    }

    public static QloraStepBenchResult Measure(string baseFolder, string workFolder, TextWriter log)
    {
        torch.set_num_threads(Threads);
        var (compute, bf16Probe, f32Probe) = TrainingWorker.ChooseCompute(log);
        var start = TrainingWorker.Memory().RssMb;
        log.WriteLine($"start: {TrainingWorker.DescribeMemory()}");

        // torch.empty only reserves address space: building the whole bf16 7B network must not raise RSS.
        var config = MistralConfig.Load(baseFolder);
        double emptyModelRss;
        var dtype = compute == ComputePrecision.BF16 ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;
        using (var empty = new MistralModel(config, new ModelOptions { DType = dtype }))
        {
            emptyModelRss = TrainingWorker.Memory().RssMb;
            log.WriteLine($"empty {dtype} network ({config.NumHiddenLayers} layers) built: {TrainingWorker.DescribeMemory()}");
        }

        var data = TrainingWorker.SyntheticData(baseFolder, workFolder, SequenceLength, examples: 16);
        var options = new TrainingOptions
        {
            Rank = Rank,
            Alpha = 16,
            Compute = compute,
            GradientCheckpointing = true,
            BatchSize = 1,
            MaxSteps = 1,
            SequenceLength = SequenceLength,
            QuantizeBase = true,
        };
        using var phases = new PhaseMemory("load + quantize");
        var clock = Stopwatch.StartNew();
        using var trainer = Trainer.Load(baseFolder, options);
        var loadSeconds = clock.Elapsed.TotalSeconds;
        phases.Enter("data");
        var (afterLoad, afterLoadPeak) = TrainingWorker.Memory();
        log.WriteLine($"loaded + quantized in {loadSeconds:F1} s: {TrainingWorker.DescribeMemory()}");

        var progress = new TextProgressSink(log);
        clock.Restart();
        var result = trainer.Train(data.Train, data.Eval, progress, new TrainingRunSettings { Phase = phases.Enter });
        var stepSeconds = clock.Elapsed.TotalSeconds;
        phases.Enter("end");
        var (afterStep, peak) = TrainingWorker.Memory();
        log.WriteLine($"one step in {stepSeconds:F1} s, loss {result.StepLosses[0]:F3}: {TrainingWorker.DescribeMemory()}");
        foreach (var phase in phases.Phases)
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"phase {phase.Name}: {phase.Seconds:F1} s, RSS {phase.StartRssMb:F0} -> max {phase.MaxRssMb:F0} -> {phase.EndRssMb:F0} MB, peak {phase.PeakAfterMb:F0} MB{(phase.SetPeak ? " (rose)" : "")}"));
        return new QloraStepBenchResult(baseFolder, SequenceLength, Rank, Threads, compute.ToString(), bf16Probe, f32Probe, emptyModelRss, start, loadSeconds, afterLoad,
            afterLoadPeak, stepSeconds, result.StepLosses[0], result.ProcessedTokens, afterStep, peak, Phases: phases.Phases);
    }

    public static void AppendMarkdown(StringBuilder md, QloraStepBenchResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine("## qlora-7b-step: one QLoRA step on Mistral 7B's shapes, CPU");
        md.AppendLine();
        md.AppendLine(inv, $"`Trainer.Load` + `Train` for one optimizer step in a child process: seq {r.SequenceLength}, batch 1, r {r.Rank}, alpha 16, all seven projections,");
        md.AppendLine(inv, $"activation checkpointing, **{r.Compute} compute**, NF4 (double-quantized) base, AdamW; {r.Threads} torch threads. The base is `ertas base create --preset 7b`");
        md.AppendLine(inv, $"(bf16 safetensors, 14.5 GB; reused when present). The loader never holds the bf16 base: the network is built with `torch.empty`");
        md.AppendLine(inv, $"(untouched pages cost no RSS), then each projection is read, quantized to NF4 and its bf16 weight freed.");
        if (r.Compute != "BF16")
            md.AppendLine(inv, $"bf16 compute was asked for, but this CPU has no native bf16 matmul: a 512^3 matmul ran at {r.Bf16ProbeGFlops:F1} GFLOP/s in bf16 against {r.F32ProbeGFlops:F1} in float32, so the step runs in float32 (bigger embedding, lm_head, LoRA and activations: the bf16 run would need less memory).");
        md.AppendLine(inv, $"Target: peak RSS at most {TargetPeakRssMb / 1000:F1} GB. Load average before: {r.LoadBefore}, after: {r.LoadAfter}.");
        md.AppendLine();
        md.AppendLine("| measure | value |");
        md.AppendLine("|---|---:|");
        md.AppendLine(inv, $"| **peak RSS (kernel high-water mark)** | **{r.PeakRssMb:F0} MB** ({(r.PeakRssMb <= TargetPeakRssMb ? "meets" : "misses")} the {TargetPeakRssMb / 1000:F1} GB target) |");
        md.AppendLine(inv, $"| max anonymous / file-backed RSS (sampled) | {r.MaxAnonMb:F0} / {r.MaxFileMb:F0} MB |");
        md.AppendLine(inv, $"| RSS at start / after building the empty {r.Compute} 7B network (torch.empty) | {r.StartRssMb:F0} / {r.EmptyModelRssMb:F0} MB |");
        md.AppendLine(inv, $"| load + quantize time | {r.LoadSeconds:F1} s |");
        md.AppendLine(inv, $"| RSS after load (peak so far) | {r.AfterLoadRssMb:F0} MB ({r.AfterLoadPeakMb:F0} MB) |");
        md.AppendLine(inv, $"| **one optimizer step** ({r.StepTokens} tokens) | **{r.StepSeconds:F1} s** ({r.StepTokens / r.StepSeconds:F1} tokens/s) |");
        md.AppendLine(inv, $"| RSS after the step | {r.AfterStepRssMb:F0} MB |");
        md.AppendLine(inv, $"| child wall time (create excluded) | {r.WallSeconds:F1} s |");
        if (r.Create is { } c)
            md.AppendLine(inv, $"| `base create --preset 7b` | {c.WallSeconds:F1} s, peak RSS {c.PeakRssMb:F0} MB |");
        if (r.Phases is { Count: > 0 } phases)
        {
            md.AppendLine();
            md.AppendLine("Where the peak comes from: the trainer names each part of the step as it starts; the kernel's high-water mark");
            md.AppendLine("(VmHWM) read at each change shows which part raised the peak (bold).");
            md.AppendLine();
            PhaseMemory.AppendTable(md, phases);
        }
    }

    /// <summary>Diagnostics: the streaming load alone, RSS after each layer's last projection is read.</summary>
    public static string LoadTrace(string baseFolder, TextWriter log)
    {
        torch.set_num_threads(Threads);
        using var checkpoint = Ertas.Mistral.Checkpoints.HfCheckpoint.Open(baseFolder);
        var traced = new TracingSource(checkpoint, log);
        var (model, _) = QuantizedLoading.Load(checkpoint.Config, traced, new ModelOptions { DType = torch.ScalarType.Float32 }, new LoraOptions());
        log.WriteLine($"loaded: {TrainingWorker.DescribeMemory()}");
        model.Dispose();
        return "done";
    }

    private sealed class TracingSource(ITensorSource inner, TextWriter log) : ITensorSource
    {
        private string? _previous;
        public IReadOnlyList<string> TensorNames => inner.TensorNames;
        public long[] GetShape(string name) => inner.GetShape(name);
        public void ReadFloat32(string name, Span<float> destination)
        {
            if (_previous is not null && (_previous.EndsWith("down_proj.weight", StringComparison.Ordinal) || _previous.Contains("embed", StringComparison.Ordinal)))
                log.WriteLine($"after {_previous}: {TrainingWorker.DescribeMemory()}");
            inner.ReadFloat32(name, destination);
            _previous = name;
        }
    }
}

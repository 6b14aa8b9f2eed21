using Ertas.Core;
using TorchSharp;

namespace Ertas.Training;

public enum ComputePrecision { F32, BF16 }

/// <summary>
/// Every setting of a training run (the data settings, sequence length and eval split, belong to
/// <c>Ertas.Data.PreparationOptions</c>; <see cref="SequenceLength"/> is kept here for the record and the CLI).
/// Defaults follow the common QLoRA recipe: r 16, alpha 16, dropout 0.05, all seven projections, lr 2e-4 cosine.
/// </summary>
public sealed record TrainingOptions
{
    public int Rank { get; init; } = 16;
    public double Alpha { get; init; } = 16;
    public double Dropout { get; init; } = 0.05;
    public IReadOnlyList<string> TargetModules { get; init; } = LoraOptions.AllProjections;

    /// <summary>Store target projections as NF4 (QLoRA); false trains plain LoRA over the loaded weights.</summary>
    public bool QuantizeBase { get; init; } = true;

    public double LearningRate { get; init; } = 2e-4;
    public LrSchedulerKind Scheduler { get; init; } = LrSchedulerKind.Cosine;
    /// <summary>Explicit warmup steps; when 0, <see cref="WarmupRatio"/> of the total is used.</summary>
    public long WarmupSteps { get; init; }
    public double WarmupRatio { get; init; }
    public double WeightDecay { get; init; }
    /// <summary>Gradient-norm clip (L2); 0 turns clipping off.</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    public int Epochs { get; init; } = 1;
    /// <summary>Optimizer steps to run; 0 means "as many as <see cref="Epochs"/> give". When set it wins, cycling
    /// through further epochs as needed.</summary>
    public long MaxSteps { get; init; }
    /// <summary>Packed rows per micro-batch.</summary>
    public int BatchSize { get; init; } = 1;
    /// <summary>Micro-batches per optimizer step.</summary>
    public int GradientAccumulation { get; init; } = 1;
    public int SequenceLength { get; init; } = 2048;

    /// <summary>Seeds LoRA A's initialisation, dropout (torch's default generator) and the per-epoch row order.</summary>
    public ulong Seed { get; init; } = 42;

    public ComputePrecision Compute { get; init; } = ComputePrecision.F32;
    /// <summary>Eval loss every N optimizer steps (and after the last); 0: only after the last step.</summary>
    public int EvalEvery { get; init; }
    /// <summary>Recompute each layer in backward instead of keeping its activations.</summary>
    public bool GradientCheckpointing { get; init; }
    /// <summary>"cpu", "cuda" or "auto" (cuda when TorchSharp sees a CUDA device, else cpu).</summary>
    public string Device { get; init; } = "auto";

    /// <summary>Written into adapter_config.json as <c>base_model_name_or_path</c>; null: the base folder's full path.</summary>
    public string? BaseModelName { get; init; }

    public torch.ScalarType DType => Compute == ComputePrecision.BF16 ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;

    public LoraOptions ToLoraOptions() => new()
    {
        Rank = Rank,
        Alpha = Alpha,
        Dropout = Dropout,
        TargetModules = TargetModules,
        QuantizeBase = QuantizeBase,
        Seed = (long)(Seed & long.MaxValue),
    };

    /// <summary>
    /// The settings that change what a run computes, by name, in invariant text: what a checkpoint records and a
    /// resume must match. Left out on purpose: <see cref="EvalEvery"/> (eval draws no random numbers and changes no
    /// weight), <see cref="GradientCheckpointing"/> (recomputes the same values), <see cref="Device"/> and
    /// <see cref="BaseModelName"/> (a label).
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, string>> ResultAffectingSettings() =>
    [
        new("rank", Text(Rank)),
        new("alpha", Text(Alpha)),
        new("dropout", Text(Dropout)),
        new("targets", string.Join(",", TargetModules)),
        new("quantize_base", QuantizeBase ? "true" : "false"),
        new("lr", Text(LearningRate)),
        new("scheduler", Scheduler.ToString().ToLowerInvariant()),
        new("warmup_steps", Text(WarmupSteps)),
        new("warmup_ratio", Text(WarmupRatio)),
        new("weight_decay", Text(WeightDecay)),
        new("max_grad_norm", Text(MaxGradNorm)),
        new("epochs", Text(Epochs)),
        new("max_steps", Text(MaxSteps)),
        new("batch_size", Text(BatchSize)),
        new("grad_accum", Text(GradientAccumulation)),
        new("seq_len", Text(SequenceLength)),
        new("seed", Text(Seed)),
        new("compute", Compute == ComputePrecision.BF16 ? "bf16" : "f32"),
    ];

    /// <summary>The torch device this run uses: <see cref="Device"/> with "auto" resolved. A CUDA device that
    /// TorchSharp cannot see is <see cref="ErrorCode.DeviceUnavailable"/> here, before any data or weights load.</summary>
    public string ResolveDevice()
    {
        var requested = Device.Trim().ToLowerInvariant();
        if (requested == "auto") return Ertas.Modeling.ModelOptions.AutoDevice();
        if (requested.StartsWith("cuda", StringComparison.Ordinal) && Ertas.Modeling.ModelOptions.AutoDevice() != "cuda")
            throw new ErtasException(ErrorCode.DeviceUnavailable,
                $"device '{Device}' was requested but torch.cuda.is_available() is false: no CUDA GPU or driver is visible, " +
                "or this build uses TorchSharp-cpu. Use --device cpu, or --device auto to take a GPU only when there is one");
        if (requested != "cpu" && !requested.StartsWith("cuda", StringComparison.Ordinal))
            throw new ErtasException(ErrorCode.InvalidArgument, $"unknown device '{Device}'; valid: auto, cpu, cuda");
        return requested;
    }

    private static string Text<T>(T value) where T : IFormattable => value.ToString(null, System.Globalization.CultureInfo.InvariantCulture);

    public void Validate()
    {
        ToLoraOptions().Validate();
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate))
            throw Invalid($"learning rate must be a positive number, got {LearningRate}");
        if (WarmupSteps < 0) throw Invalid($"warmup steps must be >= 0, got {WarmupSteps}");
        if (!(WarmupRatio >= 0 && WarmupRatio <= 1)) throw Invalid($"warmup ratio must lie in [0, 1], got {WarmupRatio}");
        if (!(WeightDecay >= 0)) throw Invalid($"weight decay must be >= 0, got {WeightDecay}");
        if (!(MaxGradNorm >= 0)) throw Invalid($"max grad norm must be >= 0 (0 = off), got {MaxGradNorm}");
        if (Epochs < 1) throw Invalid($"epochs must be at least 1, got {Epochs}");
        if (MaxSteps < 0) throw Invalid($"max steps must be >= 0 (0 = use epochs), got {MaxSteps}");
        if (BatchSize < 1) throw Invalid($"batch size must be at least 1, got {BatchSize}");
        if (GradientAccumulation < 1) throw Invalid($"gradient accumulation must be at least 1, got {GradientAccumulation}");
        if (SequenceLength < 2) throw Invalid($"sequence length must be at least 2, got {SequenceLength}");
        if (EvalEvery < 0) throw Invalid($"eval every must be >= 0, got {EvalEvery}");
        if (!Enum.IsDefined(Scheduler) || !Enum.IsDefined(Compute)) throw Invalid("an enum setting holds an undefined value");
    }

    private static ErtasException Invalid(string message) => new(ErrorCode.InvalidArgument, message);
}

/// <summary>What a run did: losses per optimizer step, eval losses by step (for a resumed run, from the first step on),
/// throughput. <see cref="ProcessedTokens"/> and <see cref="Elapsed"/> count this call's work only, so
/// <see cref="TokensPerSecond"/> stays true after a resume.</summary>
public sealed record TrainingResult(
    IReadOnlyList<double> StepLosses,
    IReadOnlyList<(long Step, double Loss)> EvalLosses,
    long TotalSteps,
    long TrainedTokens,
    long ProcessedTokens,
    TimeSpan Elapsed)
{
    public double TokensPerSecond => ProcessedTokens / Math.Max(Elapsed.TotalSeconds, 1e-9);
}

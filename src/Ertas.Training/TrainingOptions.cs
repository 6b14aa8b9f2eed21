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
    /// <summary>"cpu", "cuda" or "auto".</summary>
    public string Device { get; init; } = "cpu";

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

/// <summary>What a run did: losses per optimizer step, eval losses by step, throughput.</summary>
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

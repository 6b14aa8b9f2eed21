using Ertas.Core;
using Ertas.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training;

public enum LrSchedulerKind { Constant, Linear, Cosine }

/// <summary>
/// Learning rate as a pure function of the optimizer step, equal to Hugging Face transformers'
/// <c>get_constant_schedule_with_warmup</c>, <c>get_linear_schedule_with_warmup</c> and
/// <c>get_cosine_schedule_with_warmup</c> (num_cycles 0.5) under <c>LambdaLR</c>: <see cref="At"/>(k) is the rate the
/// k-th optimizer step (0-based) uses, so with warmup the first step runs at 0, as in the HF Trainer.
/// </summary>
public sealed record LrSchedule(LrSchedulerKind Kind, double PeakLr, long WarmupSteps, long TotalSteps)
{
    /// <summary>Warmup given as a ratio of the total, rounded up as HF's <c>TrainingArguments.get_warmup_steps</c> does;
    /// explicit <paramref name="warmupSteps"/> &gt; 0 win.</summary>
    public static LrSchedule Create(LrSchedulerKind kind, double peakLr, long totalSteps, long warmupSteps = 0, double warmupRatio = 0)
    {
        if (!(peakLr > 0) || double.IsInfinity(peakLr))
            throw new ErtasException(ErrorCode.InvalidArgument, $"learning rate must be a positive number, got {peakLr}");
        if (totalSteps < 1)
            throw new ErtasException(ErrorCode.InvalidArgument, $"the run must have at least one optimizer step, got {totalSteps}");
        if (warmupSteps < 0)
            throw new ErtasException(ErrorCode.InvalidArgument, $"warmup steps must be >= 0, got {warmupSteps}");
        if (!(warmupRatio >= 0 && warmupRatio <= 1))
            throw new ErtasException(ErrorCode.InvalidArgument, $"warmup ratio must lie in [0, 1], got {warmupRatio}");
        var warmup = warmupSteps > 0 ? warmupSteps : (long)Math.Ceiling(totalSteps * warmupRatio);
        return new LrSchedule(kind, peakLr, warmup, totalSteps);
    }

    public double At(long step) => PeakLr * Factor(step);

    /// <summary>The LambdaLR multiplier, term for term as transformers writes it (float division in double).</summary>
    public double Factor(long step)
    {
        if (step < WarmupSteps)
            return (double)step / Math.Max(1, WarmupSteps);
        switch (Kind)
        {
            case LrSchedulerKind.Constant:
                return 1.0;
            case LrSchedulerKind.Linear:
                return Math.Max(0.0, (double)(TotalSteps - step) / Math.Max(1, TotalSteps - WarmupSteps));
            default:
                var progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
                return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * 0.5 * 2.0 * progress)));
        }
    }
}

/// <summary>
/// AdamW with decoupled weight decay, exactly PyTorch's single-tensor <c>torch.optim.AdamW</c> step:
/// <code>
/// p *= 1 - lr * wd;  m = lerp(m, g, 1 - b1);  v = v * b2 + (1 - b2) g^2
/// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// </code>
/// Our own rather than TorchSharp's <c>optim.AdamW</c> so that the state (step and both moments per parameter) is
/// plain tensors we can write to a checkpoint and read back bit for bit, and so the learning rate is set per step
/// from <see cref="LrSchedule"/> with no scheduler object to keep in sync.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly Tensor[] _parameters;
    private readonly Tensor[] _expAvg, _expAvgSq;

    public AdamW(IEnumerable<Tensor> parameters, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.0)
    {
        _parameters = [.. parameters];
        if (_parameters.Length == 0) throw new ArgumentException("AdamW needs at least one parameter");
        if (_parameters.Any(p => !p.requires_grad)) throw new ArgumentException("AdamW got a parameter that does not require grad");
        (Beta1, Beta2, Eps, WeightDecay) = (beta1, beta2, eps, weightDecay);
        _expAvg = [.. _parameters.Select(p => zeros_like(p, ScalarType.Float32))];
        _expAvgSq = [.. _parameters.Select(p => zeros_like(p, ScalarType.Float32))];
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }

    /// <summary>Optimizer steps taken (PyTorch's per-parameter <c>state["step"]</c>, the same for all here).</summary>
    public long StepCount { get; private set; }

    public IReadOnlyList<Tensor> Parameters => _parameters;
    public IReadOnlyList<Tensor> ExpAvg => _expAvg;
    public IReadOnlyList<Tensor> ExpAvgSq => _expAvgSq;

    /// <summary>One update with learning rate <paramref name="lr"/>; parameters without a gradient are skipped.</summary>
    public void Step(double lr)
    {
        StepCount++;
        var biasCorrection1 = 1 - Math.Pow(Beta1, StepCount);
        var biasCorrection2Sqrt = Math.Sqrt(1 - Math.Pow(Beta2, StepCount));
        var stepSize = lr / biasCorrection1;
        using var noGrad = no_grad();
        for (var i = 0; i < _parameters.Length; i++)
        {
            var p = _parameters[i];
            using var grad = p.grad;
            if (grad is null || grad.IsInvalid) continue;
            using var scope = NewDisposeScope();
            // The moments stay float32 for bf16 parameters too (the update is computed in float32 and rounded once).
            var g = grad.dtype == ScalarType.Float32 ? grad : grad.to(ScalarType.Float32);
            var master = p.dtype == ScalarType.Float32 ? p : p.to(ScalarType.Float32);
            master.MulInPlace(1 - lr * WeightDecay);
            _expAvg[i].lerp_(g, 1 - Beta1);
            _expAvgSq[i].MulInPlace(Beta2).AddcmulInPlace(g, g, 1 - Beta2);
            var denom = _expAvgSq[i].sqrt().DividedBy(biasCorrection2Sqrt).AddInPlace(Eps);
            master.AddcdivInPlace(_expAvg[i], denom, -stepSize);
            if (!ReferenceEquals(master, p)) p.copy_(master);
        }
    }

    /// <summary>Sets every gradient to none (PyTorch's default <c>zero_grad(set_to_none=True)</c>).</summary>
    public void ZeroGrad()
    {
        foreach (var p in _parameters)
        {
            using var grad = p.grad;
            if (grad is not null && !grad.IsInvalid) p.grad = null;
        }
    }

    /// <summary>Restores a saved state (a resumed run); tensors are copied into the existing moments.</summary>
    public void Restore(long stepCount, IReadOnlyList<Tensor> expAvg, IReadOnlyList<Tensor> expAvgSq)
    {
        if (expAvg.Count != _parameters.Length || expAvgSq.Count != _parameters.Length)
            throw new ArgumentException($"the saved state has {expAvg.Count} moments for {_parameters.Length} parameters");
        using var noGrad = no_grad();
        for (var i = 0; i < _parameters.Length; i++)
        {
            _expAvg[i].copy_(expAvg[i]);
            _expAvgSq[i].copy_(expAvgSq[i]);
        }
        StepCount = stepCount;
    }

    public void Dispose()
    {
        foreach (var t in _expAvg) t.Dispose();
        foreach (var t in _expAvgSq) t.Dispose();
    }
}

public static class GradientClipping
{
    /// <summary>
    /// <c>torch.nn.utils.clip_grad_norm_</c> (L2): the total norm is the norm of the per-parameter gradient norms
    /// (computed in float32), and when it exceeds <paramref name="maxNorm"/> every gradient is multiplied by
    /// maxNorm / (total + 1e-6). Returns the total norm before clipping (what gets logged).
    /// </summary>
    public static double ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grads = parameters.Select(p => p.grad).Where(g => g is not null && !g.IsInvalid).Cast<Tensor>().ToList();
        if (grads.Count == 0) return 0.0;
        var norms = stack(grads.Select(g => g.to(ScalarType.Float32).L2Norm()).ToArray());
        var total = norms.L2Norm();
        var coefficient = ScalarSafe.Divide(maxNorm, total.Plus(1e-6)).ClampMax(1.0);
        foreach (var g in grads)
            g.mul_(coefficient.to(g.dtype));
        return total.item<float>();
    }
}

/// <summary>
/// Gradient accumulation with token-weighted losses: each micro-batch's mean loss is multiplied by
/// (its trained tokens / the step's trained tokens), so the summed gradients equal those of one batch holding every
/// micro-batch, whatever their sizes (the plain 1/N scaling is only right when every micro-batch has as many trained
/// tokens, which packing does not give).
/// </summary>
public sealed record GradientAccumulation(int MicroBatchesPerStep)
{
    public int MicroBatchesPerStep { get; } = MicroBatchesPerStep >= 1
        ? MicroBatchesPerStep
        : throw new ErtasException(ErrorCode.InvalidArgument, $"gradient accumulation must be at least 1, got {MicroBatchesPerStep}");

    /// <summary>True when micro-batch <paramref name="microBatchIndex"/> (0-based over the run) ends an optimizer step.</summary>
    public bool EndsStep(long microBatchIndex) => (microBatchIndex + 1) % MicroBatchesPerStep == 0;

    /// <summary>The optimizer step micro-batch <paramref name="microBatchIndex"/> contributes to.</summary>
    public long StepOf(long microBatchIndex) => microBatchIndex / MicroBatchesPerStep;

    /// <summary>The factor for a micro-batch's mean loss.</summary>
    public static double LossWeight(long microBatchTrainedTokens, long stepTrainedTokens) =>
        stepTrainedTokens == 0 ? 0.0 : (double)microBatchTrainedTokens / stepTrainedTokens;
}

using Ertas.Core;
using TorchSharp;
using TorchSharp.Modules;
using static Ertas.Modeling.ScalarSafe;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Training;

#pragma warning disable IDE1006 // snake_case fields: TorchSharp turns field names into parameter names (PEFT's)

/// <summary>LoRA settings (PEFT's <c>LoraConfig</c> names in comments). Defaults: r 16, alpha 16, dropout 0.05, all
/// seven Mistral projections.</summary>
public sealed record LoraOptions
{
    public static readonly IReadOnlyList<string> AllProjections =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary><c>r</c>: rank of A (r, in) and B (out, r).</summary>
    public int Rank { get; init; } = 16;

    /// <summary><c>lora_alpha</c>: the update is scaled by Alpha / Rank.</summary>
    public double Alpha { get; init; } = 16;

    /// <summary><c>lora_dropout</c>: dropout on the LoRA input path only, off in eval mode.</summary>
    public double Dropout { get; init; } = 0.05;

    /// <summary><c>target_modules</c>: module names (the last part of the dotted name) that get an adapter.</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = AllProjections;

    /// <summary>Store the frozen base weights as NF4 (QLoRA); false keeps them as they are (plain LoRA).</summary>
    public bool QuantizeBase { get; init; } = true;

    /// <summary>Seeds lora_A's initialisation (its own generator, so nothing else draws from it).</summary>
    public long Seed { get; init; } = 42;

    public double Scaling => Alpha / Rank;

    public void Validate()
    {
        if (Rank < 1)
            throw new ErtasException(ErrorCode.InvalidArgument, $"LoRA rank must be at least 1, got {Rank}");
        if (!(Alpha > 0) || double.IsInfinity(Alpha))
            throw new ErtasException(ErrorCode.InvalidArgument, $"LoRA alpha must be a positive number, got {Alpha}");
        if (!(Dropout >= 0 && Dropout < 1))
            throw new ErtasException(ErrorCode.InvalidArgument, $"LoRA dropout must lie in [0, 1), got {Dropout}");
        if (TargetModules.Count == 0)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"LoRA needs at least one target module (choose from {string.Join(", ", AllProjections)})");
    }
}

/// <summary>One LoRA factor: y = x W^T with W trainable. A module of its own so its parameter is named
/// <c>lora_A.weight</c> / <c>lora_B.weight</c>, as in PEFT.</summary>
public sealed class LoraFactor : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;

    public LoraFactor(Tensor initial) : base(nameof(LoraFactor))
    {
        weight = new Parameter(initial, requires_grad: true);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => F.linear(x, weight);
}

/// <summary>
/// y = x W^T + (alpha / r) * dropout(x) A^T B^T with W frozen (NF4 or a plain tensor) and only A, B trainable, computed
/// by one autograd node (<see cref="LoraFunction"/>). A and B are float32 masters under every compute type; both LoRA
/// products run in the compute type (bf16 under bf16 compute, as PEFT's layers do under autocast) and their gradients
/// reach A and B as float32. Dropout is <see cref="CounterDropout"/>'s, seeded from torch's default generator.
/// A (r, in) is Kaiming-uniform with a = sqrt(5) (PEFT's default, bound 1/sqrt(in)); B (out, r) starts at zero, so a
/// fresh adapter leaves the output unchanged. The NF4 base is dequantized inside each forward and again in backward
/// (<see cref="LoraFunction"/>); no dequantized copy is kept.
/// </summary>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
    public readonly LoraFactor lora_A; // weight (r, in)
    public readonly LoraFactor lora_B; // weight (out, r)

    // Behind a holder, not a Tensor field: TorchSharp registers every Tensor field (private ones too) as a buffer, and
    // the frozen base must be no parameter or buffer, so optimizers, state dicts and adapter files see only A and B.
    private readonly LoraFunction.Frozen _base;
    private readonly double _dropout;

    private LoraLinear(Nf4Tensor? quantizedBase, Tensor? plainBase, long inFeatures, long outFeatures, LoraOptions options,
        Generator generator, ScalarType dtype, Device device) : base(nameof(LoraLinear))
    {
        options.Validate();
        _base = new LoraFunction.Frozen(quantizedBase, plainBase);
        (InFeatures, OutFeatures, Rank, Scaling, _dropout) = (inFeatures, outFeatures, options.Rank, options.Scaling, options.Dropout);
        ComputeType = dtype;
        // The factors stay float32 whatever the compute type (PEFT under autocast does the same): bf16 has 8 mantissa
        // bits, so lr * update steps of 1e-4 relative size would round away and B, which starts at zero, barely moves.
        lora_A = new LoraFactor(KaimingUniformSqrt5([options.Rank, inFeatures], generator).to(ScalarType.Float32, device));
        lora_B = new LoraFactor(zeros([outFeatures, options.Rank], ScalarType.Float32, device));
        RegisterComponents();
    }

    /// <summary>Wraps a frozen NF4 weight (out, in). The module takes ownership of <paramref name="weight"/>.</summary>
    public static LoraLinear FromQuantized(Nf4Tensor weight, LoraOptions options, Generator generator, ScalarType dtype)
    {
        if (weight.Shape.Length != 2)
            throw new ArgumentException($"a linear weight is (out, in), got [{string.Join(", ", weight.Shape)}]");
        return new LoraLinear(weight, null, weight.Shape[1], weight.Shape[0], options, generator, dtype, weight.Device);
    }

    /// <summary>Wraps a plain weight (out, in), used as is (no copy) and never trained.</summary>
    public static LoraLinear FromPlain(Tensor weight, LoraOptions options, Generator generator)
    {
        if (weight.dim() != 2)
            throw new ArgumentException($"a linear weight is (out, in), got [{string.Join(", ", weight.shape)}]");
        var frozen = weight.detach();
        return new LoraLinear(null, frozen, weight.shape[1], weight.shape[0], options, generator, weight.dtype, weight.device);
    }

    /// <summary>Where backward leaves the handles of the gradients it returns, released when the next node's backward
    /// starts (the trainer sets its holder for each backward pass); null: the caller's dispose scope keeps them.</summary>
    public Ertas.Modeling.ReturnedGradients? ReturnedGradients { get; set; }

    /// <summary>The type of the frozen base and of the activations; lora_A and lora_B are always float32.</summary>
    public ScalarType ComputeType { get; }

    public long InFeatures { get; }
    public long OutFeatures { get; }
    public int Rank { get; }
    public double Scaling { get; }

    /// <summary>The frozen NF4 base, or null for a plain base.</summary>
    public Nf4Tensor? QuantizedBase => _base.Quantized;

    /// <summary>The frozen base weight as <paramref name="dtype"/>: a fresh dequantized tensor for NF4 (the caller
    /// disposes it), the held tensor converted otherwise. For merging and tests, never used by forward.</summary>
    public Tensor BaseWeight(ScalarType dtype) =>
        _base.Quantized is { } quantized ? quantized.Dequantize(dtype) : _base.Plain!.to(dtype);

    public override Tensor forward(Tensor x)                                        // x (..., in) -> (..., out)
    {
        var dropout = training ? _dropout : 0;
        var settings = new LoraFunction.Settings(dropout, Scaling, dropout > 0 ? CounterDropout.DrawSeed() : 0, ReturnedGradients);
        if (is_grad_enabled())
            return LoraFunction.Apply(x, lora_A.weight, lora_B.weight, _base, settings);
        // No graph to record (inference, or a checkpointed layer's first pass): the node's arithmetic without the node.
        using var scope = NewDisposeScope();
        var (y, _) = LoraFunction.Forward(x, lora_A.weight, lora_B.weight, _base, settings);
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>PEFT's default init: <c>kaiming_uniform_(A, a=sqrt(5))</c> = U(-b, b) with
    /// b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + 5)), i.e. b = 1 / sqrt(fan_in).</summary>
    internal static Tensor KaimingUniformSqrt5(long[] shape, Generator generator)
    {
        var fanIn = shape[1];
        var gain = Math.Sqrt(2.0 / (1 + 5.0));
        var bound = gain * Math.Sqrt(3.0 / fanIn);
        return empty(shape, ScalarType.Float32).uniform_(-bound, bound, generator);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _base.Quantized?.Dispose();
            _base.Plain?.Dispose();
        }
        base.Dispose(disposing);
    }
}

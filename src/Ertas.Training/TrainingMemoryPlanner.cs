using Ertas.Mistral;

namespace Ertas.Training;

/// <summary>Where a planned run trains: the CPU (resident memory of the process) or a CUDA GPU (device memory).</summary>
public enum PlanDevice { Cpu, Cuda }

/// <summary>One part of a training run's peak memory.</summary>
public sealed record MemoryPart(string Name, long Bytes);

/// <summary>
/// A training run's estimated peak memory, by part, on one device with one compute type. The activations of both
/// checkpointing choices are given, whichever the run uses, so a plan can say what switching would change.
/// </summary>
public sealed record TrainingMemoryEstimate(
    PlanDevice Device,
    ComputePrecision Compute,
    bool GradientCheckpointing,
    IReadOnlyList<MemoryPart> Parts,
    long ActivationBytesWithCheckpointing,
    long ActivationBytesWithoutCheckpointing)
{
    public long PeakBytes => Parts.Sum(p => p.Bytes);
}

/// <summary>
/// Parameter counts and the peak memory of a QLoRA run of <see cref="Trainer"/>, from the config and the settings
/// alone (nothing is loaded). The parts follow what the trainer holds:
/// <list type="bullet">
/// <item>the target projections as NF4 with double quantization (4 bits, one 8-bit absmax per 64 weights, one float32
/// scale per 256 absmax values), or in the compute type without quantization;</item>
/// <item>the embedding, lm_head, norms and projections that are not targets, in the compute type;</item>
/// <item>LoRA A and B, their gradients and AdamW's two moments, all float32 whatever the compute type;</item>
/// <item>what autograd saves per layer for backward (norm inputs and outputs, the LoRA inputs after dropout and its
/// mask, q/k/v/attention output, the SwiGLU intermediates; the NF4 matmuls save nothing), for every layer, or with
/// checkpointing each layer's input plus one layer recomputed; and the float32 logits, log-softmax and their gradients;</item>
/// <item>workspace: on the CPU the reused dequantization buffers (one per weight shape, <see cref="Nf4Workspace"/>),
/// on a GPU a dequantized weight in flight; plus the runtime itself.</item>
/// </list>
/// The coefficients that are not exact byte counts (the runtime, allocator slack) are calibrated against measured
/// peak RSS on the CPU (bench plan-memory); the GPU figures are the same tensors in bf16 plus a CUDA context.
/// </summary>
public static class TrainingMemoryPlanner
{
    /// <summary>The .NET runtime, libtorch and its thread pools, measured before any tensor exists (bench plan-memory).</summary>
    public const long CpuRuntimeBytes = 320L << 20;

    /// <summary>A CUDA context, cuBLAS workspaces and PyTorch's kernels resident on the device.</summary>
    public const long CudaRuntimeBytes = 600L << 20;

    /// <summary>Every weight of the checkpoint (embedding and lm_head included).</summary>
    public static long TotalParameters(MistralConfig config) => config.ExpectedTensors().Sum(t => Elements(t.Shape));

    /// <summary>LoRA's trainable parameters: r (in + out) per adapted projection.</summary>
    public static long LoraParameters(MistralConfig config, int rank, IReadOnlyCollection<string> targets) =>
        Targets(config, targets).Sum(t => (long)rank * (t.Shape[0] + t.Shape[1]));

    /// <summary>The weights the adapter is trained on, by name and shape [out, in].</summary>
    public static IEnumerable<(string Name, long[] Shape)> Targets(MistralConfig config, IReadOnlyCollection<string> targets) =>
        Ertas.Gguf.Adapters.LoraGgufExporter.TargetTensors(config, targets);

    /// <summary>Bytes of one NF4 weight of <paramref name="elements"/> values with double quantization.</summary>
    public static long Nf4Bytes(long elements)
    {
        var blocks = (elements + Nf4.BlockSize - 1) / Nf4.BlockSize;
        var scaleBlocks = (blocks + Nf4.AbsmaxBlockSize - 1) / Nf4.AbsmaxBlockSize;
        return (elements + 1) / 2 + blocks + scaleBlocks * 4 + 4;
    }

    public static TrainingMemoryEstimate Estimate(MistralConfig config, TrainingOptions options, PlanDevice device)
    {
        options.Validate();
        var s = options.Compute == ComputePrecision.BF16 ? 2L : 4L;
        var targets = Targets(config, options.TargetModules).ToList();
        var targetNames = targets.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var h = (long)config.HiddenSize;
        var vocab = (long)config.VocabSize;

        var quantizedBase = options.QuantizeBase ? targets.Sum(t => Nf4Bytes(Elements(t.Shape))) : targets.Sum(t => Elements(t.Shape) * s);
        var embeddings = vocab * h * s * (config.TieWordEmbeddings ? 1 : 2);
        var otherFrozen = config.ExpectedTensors()
            .Where(t => !targetNames.Contains(t.Name) && t.Name is not ("model.embed_tokens.weight" or "lm_head.weight"))
            .Sum(t => Elements(t.Shape) * s);
        var lora = LoraParameters(config, options.Rank, options.TargetModules) * 4;

        var positions = (long)options.BatchSize * options.SequenceLength;
        var perLayer = LayerActivationBytes(config, options, s, targets) * positions / config.NumHiddenLayers;
        var attentionScores = AttentionScoreBytes(config, options, s, device);
        var withoutCheckpointing = config.NumHiddenLayers * (perLayer + attentionScores);
        // Checkpointing keeps each layer's input and recomputes one layer at a time in backward.
        var withCheckpointing = config.NumHiddenLayers * positions * h * s + perLayer + attentionScores;
        // Logits come out float32 (B, T, vocab); cross-entropy saves its log-softmax, and backward holds the gradients
        // of both while they are alive; bf16 compute adds lm_head's own bf16 output.
        var logits = positions * vocab * (3 * 4 + (s == 2 ? 2 : 0));

        long workspace;
        if (device == PlanDevice.Cpu && options.QuantizeBase)
            workspace = targets.Select(t => Elements(t.Shape)).Distinct().Sum() * s;
        else if (options.QuantizeBase)
            workspace = 2 * targets.Select(t => Elements(t.Shape)).DefaultIfEmpty(0).Max() * s;
        else
            workspace = 0;
        // One layer's transient forward/backward tensors beyond what is saved: its largest intermediate and gradients.
        workspace += positions * (3 * config.IntermediateSize + 2 * h) * s;

        var activations = options.GradientCheckpointing ? withCheckpointing : withoutCheckpointing;
        var parts = new List<MemoryPart>
        {
            new(options.QuantizeBase ? "nf4 base (double-quantized)" : "base projections", quantizedBase),
            new("embeddings and lm_head", embeddings),
            new("norms and other frozen weights", otherFrozen),
            new("lora weights (f32)", lora),
            new("lora gradients (f32)", lora),
            new("adamw state (f32, 2 moments)", 2 * lora),
            new(options.GradientCheckpointing ? "activations (checkpointed)" : "activations", activations),
            new("logits and loss", logits),
            new("workspace", workspace),
            new(device == PlanDevice.Cpu ? "runtime (.NET, libtorch)" : "runtime (CUDA context)", device == PlanDevice.Cpu ? CpuRuntimeBytes : CudaRuntimeBytes),
        };
        return new TrainingMemoryEstimate(device, options.Compute, options.GradientCheckpointing, parts, withCheckpointing, withoutCheckpointing);
    }

    /// <summary>
    /// What autograd saves per position over all layers (without checkpointing), attention scores aside: per RMSNorm its
    /// float32 input and its output; per adapted projection the float32 LoRA input after dropout, dropout's byte mask and
    /// A's output; q, the repeated k and v and the attention output; SwiGLU's gate, silu(gate) and up outputs.
    /// </summary>
    private static long LayerActivationBytes(MistralConfig config, TrainingOptions options, long s, List<(string Name, long[] Shape)> targets)
    {
        var h = (long)config.HiddenSize;
        var attentionWidth = (long)config.NumAttentionHeads * config.HeadDim;
        var norms = 2 * (4 * h + s * h);
        var attention = 4 * attentionWidth * s;
        var mlp = 3L * config.IntermediateSize * s;
        var loraInputs = targets.Sum(t => t.Shape[1] * (4 + (options.Dropout > 0 ? 1 : 0)) + 4L * options.Rank);
        return config.NumHiddenLayers * (norms + attention + mlp) + loraInputs;
    }

    /// <summary>
    /// The masked attention of packed rows: on the CPU libtorch's SDPA takes the math path for an explicit mask and saves
    /// the (B, heads, T, T) softmax output; CUDA's memory-efficient kernel keeps one float per query row instead.
    /// </summary>
    private static long AttentionScoreBytes(MistralConfig config, TrainingOptions options, long s, PlanDevice device)
    {
        var rows = (long)options.BatchSize * config.NumAttentionHeads * options.SequenceLength;
        return device == PlanDevice.Cpu ? rows * options.SequenceLength * s : rows * 4;
    }

    private static long Elements(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);
}

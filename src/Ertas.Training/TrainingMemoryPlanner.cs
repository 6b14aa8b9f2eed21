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
/// What one decoder layer leaves in memory during a training step, in bytes per position (batch x sequence), for one
/// compute type and LoRA setting; <see cref="TrainingMemoryPlanner"/> multiplies it out. Counted tensor by tensor from
/// the model code and checked against the resident memory each layer adds on the 100m preset (bench plan-memory and the
/// training-worker diagnostics activation-probe, layer-backward and module-probe).
/// </summary>
/// <param name="Saved">What the layer leaves behind until backward: the tensors autograd saved plus its output.</param>
/// <param name="Intermediates">What else the layer's forward holds until it returns (its dispose scope then ends).</param>
/// <param name="InFlight">The forward's peak above <paramref name="Saved"/> + <paramref name="Intermediates"/>: the last
/// projection's LoRA sum while its parts are still alive.</param>
/// <param name="FirstLayerDiscount">How much less the first layer saves: its input (the frozen embedding) needs no
/// gradient, so its input norm is not recorded and dropout's masks on q/k/v inputs are not kept.</param>
public sealed record LayerActivationBytes(long Saved, long Intermediates, long InFlight, long FirstLayerDiscount)
{
    /// <summary>The layer's forward peak over what earlier layers left.</summary>
    public long ForwardPeak => Saved + Intermediates + InFlight;
}

/// <summary>
/// Parameter counts and the peak memory of a QLoRA run of <see cref="Trainer"/>, from the config and the settings
/// alone (nothing is loaded). The parts follow what the trainer holds:
/// <list type="bullet">
/// <item>the target projections as NF4 with double quantization (4 bits, one 8-bit absmax per 64 weights, one float32
/// scale per 256 absmax values), or in the compute type without quantization;</item>
/// <item>the embedding, lm_head, norms and projections that are not targets, in the compute type;</item>
/// <item>LoRA A and B, their gradients and AdamW's two moments, all float32 whatever the compute type;</item>
/// <item>the activations (<see cref="LayerActivations"/> for every layer, or with checkpointing each layer's input), the
/// packed rows' attention mask, the final hidden states the loss reads, and the step's largest transient: one chunk
/// of the loss's backward (<see cref="LinearCrossEntropy"/>), the last layer's forward, or with checkpointing one layer
/// recomputed;</item>
/// <item>workspace: on the CPU the reused dequantization buffers (one per weight shape, <see cref="Nf4Workspace"/>),
/// on a GPU a dequantized weight in flight; plus the runtime itself.</item>
/// </list>
/// Activations are exact byte counts of the tensors alive at the peak; the runtime is calibrated against measured
/// peak RSS on the CPU (bench plan-memory). The GPU figures are the same tensors in bf16 plus a CUDA context.
/// </summary>
public static class TrainingMemoryPlanner
{
    /// <summary>
    /// The .NET runtime, libtorch (about 110 MB of it file-backed code) and what training adds beside the tensors (thread
    /// pools, BLAS buffers, allocator slack): resident memory after loading the tiny and 100m presets was 176 and 202 MB
    /// above their weights, and 25-40 MB more by the end of training (bench plan-memory).
    /// </summary>
    public const long CpuRuntimeBytes = 220L << 20;

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
        var layers = (long)config.NumHiddenLayers;

        var quantizedBase = options.QuantizeBase ? targets.Sum(t => Nf4Bytes(Elements(t.Shape))) : targets.Sum(t => Elements(t.Shape) * s);
        var embeddings = vocab * h * s * (config.TieWordEmbeddings ? 1 : 2);
        var otherFrozen = config.ExpectedTensors()
            .Where(t => !targetNames.Contains(t.Name) && t.Name is not ("model.embed_tokens.weight" or "lm_head.weight"))
            .Sum(t => Elements(t.Shape) * s);
        var lora = LoraParameters(config, options.Rank, options.TargetModules) * 4;

        var positions = (long)options.BatchSize * options.SequenceLength;
        var layer = LayerActivations(config, options, device);
        // Without checkpointing every layer's saved tensors live until backward reaches it; the embedding output (the
        // first layer's input) is held by the step's dispose scope.
        var withoutCheckpointing = positions * (h * s + layers * layer.Saved - layer.FirstLayerDiscount);
        // Checkpointing keeps each layer's input (the embedding output and every layer's output) and nothing else.
        var withCheckpointing = positions * (layers + 1) * h * s;
        var attentionInputs = AttentionInputBytes(config, options, s);

        // Held from the forward to the end of the step: the final norm's output (and, in bf16, its float32 input copy;
        // its rsqrt) and the gradient the loss made for the rows with a label (every position, at most). The loss never
        // holds the logits (LinearCrossEntropy).
        var finalHidden = positions * (2 * h * s + 4 + (s == 2 ? 4 * h : 0));
        // The step's largest transient on top of the above ("backward working set"). The loss: one chunk's logits in
        // the compute type, their float32 log-softmax (and, in bf16, the float32 copy of the logits and the gradient
        // rounded back); in backward the hidden gradient of the labelled rows, scaled, and its scatter to every position.
        var chunkElements = LinearCrossEntropy.ChunkRows(vocab) * vocab;
        var lossBackward = chunkElements * (s == 2 ? 2 * s + 8 : 8) + 2 * positions * h * s;
        // Before the loss, the last layer's forward: its intermediates and the projection in flight.
        var lastLayerForward = positions * (layer.Intermediates + layer.InFlight) - finalHidden;
        // With checkpointing, backward recomputes one layer at a time: its forward peak comes back while the gradient
        // of its output, (B, T, H), waits to be used.
        var recompute = options.GradientCheckpointing ? positions * (layer.ForwardPeak + h * s) : 0;
        var transient = Math.Max(lossBackward, Math.Max(lastLayerForward, recompute));

        long workspace;
        if (device == PlanDevice.Cpu && options.QuantizeBase)
            workspace = targets.Select(t => Elements(t.Shape)).Distinct().Sum() * s;
        else if (options.QuantizeBase)
            workspace = 2 * targets.Select(t => Elements(t.Shape)).DefaultIfEmpty(0).Max() * s;
        else
            workspace = 0;

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
            new("rope rows, attention mask", attentionInputs),
            new("final hidden states", finalHidden),
            // One name whichever term is larger: plan tables show the CPU and GPU estimates' parts side by side by position.
            new("backward working set", transient),
            new("workspace", workspace),
            new(device == PlanDevice.Cpu ? "runtime (.NET, libtorch)" : "runtime (CUDA context)", device == PlanDevice.Cpu ? CpuRuntimeBytes : CudaRuntimeBytes),
        };
        return new TrainingMemoryEstimate(device, options.Compute, options.GradientCheckpointing, parts, withCheckpointing, withoutCheckpointing);
    }

    /// <summary>
    /// One decoder layer's activation bytes per position (see <see cref="LayerActivationBytes"/>), tensor by tensor as
    /// Ertas.Modeling's DecoderLayer and <see cref="LoraLinear"/> create them. H hidden, A attention width (heads x
    /// head_dim), K key/value width, I intermediate, r rank, s bytes of the compute type; norms work in float32 (4 bytes)
    /// whatever s is. The NF4 and frozen weights are never saved (<see cref="LoraFunction"/>). Attention differs by
    /// device: on the CPU one <see cref="Ertas.Modeling.SegmentAttention"/> node saves q, k and v as they are and its output (o_proj's
    /// input); elsewhere, and for rows that may hold a segment longer than the node takes or than the sliding window
    /// (the masked path), SDPA saves keys and values repeated to every query head and its outputs, which are then joined.
    /// </summary>
    public static LayerActivationBytes LayerActivations(MistralConfig config, TrainingOptions options, PlanDevice device = PlanDevice.Cpu)
    {
        var node = device == PlanDevice.Cpu && Ertas.Modeling.SegmentAttention.Takes(options.SequenceLength)
            && !(config.SlidingWindow is { } window && options.SequenceLength > window);
        var s = options.Compute == ComputePrecision.BF16 ? 2L : 4L;
        var bf16 = s == 2;
        var (h, i, r) = ((long)config.HiddenSize, (long)config.IntermediateSize, (long)options.Rank);
        var a = (long)config.NumAttentionHeads * config.HeadDim;
        var k = (long)config.NumKeyValueHeads * config.HeadDim;
        var grouped = config.NumAttentionHeads != config.NumKeyValueHeads;
        var dropout = options.Dropout > 0;
        bool Targeted(string name) => options.TargetModules.Contains(name, StringComparer.Ordinal);
        var qkv = new[] { "q_proj", "k_proj", "v_proj" }.Count(Targeted);
        var gateUp = new[] { "gate_proj", "up_proj" }.Count(Targeted);
        var (o, down) = (Targeted("o_proj"), Targeted("down_proj"));
        var targets = qkv + gateUp + (o ? 1 : 0) + (down ? 1 : 0);

        // Each LoRA node (LoraFunction) saves its input x, which the q/k/v targets share (the input norm's output),
        // gate/up share (the post-attention norm's output), o_proj has alone (the per-segment attention outputs joined)
        // and down_proj has alone (silu(gate) * up); and its (positions, r) product x A^T in the compute type. Dropout
        // saves nothing (the mask is recomputed from its seed).
        long[] saved =
        [
            h * s,                                          // the layer's output: the next layer's input (held by the step's scope)
            4 + (bf16 ? 4 * h : 0),                         // input norm: rsqrt (float32) and, in bf16, its float32 copy of x (f32: x is the output above)
            4 + 4 * h,                                      // post-attention norm: rsqrt and h = x + attention in float32 (the residual in f32, its float32 copy in bf16)
            a * s,                                          // q after RoPE
            2 * (grouped && !node ? a : k) * s,             // k after RoPE and v; SDPA's repeated to every query head when grouped
            a * s,                                          // the attention output (the node's, which o_proj's LoRA node saves too; SDPA's per segment)
            o && !node ? a * s : 0,                         // o_proj's input: SDPA's segment outputs joined (a copy), saved by its LoRA node
            4L * config.NumAttentionHeads,                  // the logsumexp, float32 per query row and head (no (T, T) scores are kept)
            3 * i * s,                                      // gate_proj's output (SiLU's input), silu(gate) and up_proj's output (the product's inputs)
            qkv > 0 ? h * s : 0,                            // the input norm's output (q/k/v's input)
            gateUp > 0 ? h * s : 0,                         // the post-attention norm's output (gate/up's input)
            down ? i * s : 0,                               // silu(gate) * up (down_proj's input)
            r * s * targets,                                // each target's x A^T
        ];
        long[] intermediates =
        [
            qkv > 0 ? 0 : h * s,                            // the input norm's output when no LoRA node saves it
            a * s + k * s,                                  // q_proj's and k_proj's outputs before RoPE
            grouped && !node ? 2 * k * s : 0,               // v_proj's output and the rotated k before repeat_interleave (SDPA saves the repeats)
            3 * a * s + 3 * k * s,                          // RoPE's x * cos, roll(x) and roll(x) * signed sin, for q and k
            o || node ? 0 : a * s,                          // SDPA's joined output when no LoRA node saves it
            h * s,                                          // o_proj's output
            bf16 ? h * s : 0,                               // h = x + attention in bf16 (the norm saved its float32 copy)
            gateUp > 0 ? 0 : h * s,                         // the post-attention norm's output, likewise
            down ? 0 : i * s,                               // silu(gate) * up, likewise
            h * s,                                          // down_proj's output
        ];
        // down_proj's LoRA node in flight: with dropout, the masked copy of its input, alive while x A^T runs and
        // freed before the output (counted above) exists. The update is added inside the base output (addmm).
        var inFlight = down && dropout ? i * s - h * s : 0;
        // The segment attention node's scores and their gradient (backward), (heads, L, L) each for a segment as long as
        // a row: per position of a batch of rows, 2 heads T s / B. Never alive with down_proj's copy. (Counted with the
        // last layer's forward, though the pair lives in backward: the difference is at most the final hidden states.)
        if (node)
            inFlight = Math.Max(inFlight, 2L * config.NumAttentionHeads * options.SequenceLength * s / Math.Max(1, options.BatchSize));
        var firstLayerDiscount = 4 + (bf16 ? 4 * h : 0);
        return new LayerActivationBytes(saved.Sum(), intermediates.Sum(), Math.Max(0, inFlight), firstLayerDiscount);
    }

    /// <summary>
    /// RoPE's cos and sin rows (B, 1, T, head_dim) in the compute type, made once per forward and shared by every layer.
    /// Packed rows need no attention mask: attention runs per segment (MistralModel.ForwardPackedHidden), unless a
    /// segment (an example or the padding) can be longer than the sliding window: then the model builds the shared
    /// block-diagonal mask, counted here as it is made: the additive (B, 1, T, T) mask in the compute type, the bool
    /// (B, T, T) same-segment test, the allowed mask and its negation, and the (T, T) int64 query-key distance with its
    /// bool comparisons. (Segment ids that are not one run each also need the mask; the dataset packer never makes them.)
    /// </summary>
    private static long AttentionInputBytes(MistralConfig config, TrainingOptions options, long s)
    {
        var (b, t) = ((long)options.BatchSize, (long)options.SequenceLength);
        var rope = 2 * b * t * config.HeadDim * s;
        return config.SlidingWindow is { } window && t > window ? rope + b * t * t * (s + 3) + t * t * (8 + 1 + 2) : rope;
    }

    private static long Elements(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);
}

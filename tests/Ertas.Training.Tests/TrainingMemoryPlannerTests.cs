using Ertas.Mistral;
using Ertas.Mistral.Presets;

namespace Ertas.Training.Tests;

/// <summary>
/// <see cref="TrainingMemoryPlanner"/>'s activation terms: each is a tensor the training forward holds, so each responds
/// to exactly the settings that shape that tensor. The 100m figures were measured as the resident memory each decoder
/// layer adds (training-worker activation-probe, 2 x 512 positions, glibc's mmap threshold at 64 KB so that freed tensors
/// leave RSS): 96.4 KB per position in f32, 79.6-79.9 KB in bf16, 57.4 KB in f32 without dropout.
/// </summary>
public sealed class TrainingMemoryPlannerTests
{
    private static readonly MistralConfig Config100M = BaseModelFactory.Preset100M;
    private static readonly TrainingOptions F32 = new() { Rank = 16, Alpha = 16, BatchSize = 4, SequenceLength = 512 };

    private static long Part(TrainingMemoryEstimate estimate, string name) =>
        estimate.Parts.Single(p => p.Name.StartsWith(name, StringComparison.Ordinal)).Bytes;

    [Fact]
    public void A_100m_layer_saves_what_was_measured_per_position()
    {
        // activation-probe, 2 x 512 positions, layers 2-4 (2026-12-06, the segment attention node): 53,340-53,624 bytes per
        // position in f32, 31,292-32,056 in bf16 (60,600 and 35,000 with SDPA per segment).
        // f32: 16 H + 8 A + 8 K + 16 I + 28 r + 8 + 4 heads bytes (H = A = 768, K = 256, I = 2048, r = 16, 12 heads).
        Assert.Equal(53_752, TrainingMemoryPlanner.LayerActivations(Config100M, F32).Saved);
        // bf16: 14 H + 4 A + 4 K + 8 I + 14 r + 8 + 4 heads (the norms keep float32 copies; x A^T is bf16).
        Assert.Equal(31_512, TrainingMemoryPlanner.LayerActivations(Config100M, F32 with { Compute = ComputePrecision.BF16 }).Saved);
        // The LoRA inputs are the norms' outputs, the attention output and the SwiGLU product, dropout or not.
        Assert.Equal(53_752, TrainingMemoryPlanner.LayerActivations(Config100M, F32 with { Dropout = 0 }).Saved);
        // Off the CPU one SDPA per segment saves keys and values repeated to every head and outputs joined by a copy; so
        // do rows that may hold a segment longer than the node takes, or than the sliding window (the masked path).
        Assert.Equal(60_920, TrainingMemoryPlanner.LayerActivations(Config100M, F32, PlanDevice.Cuda).Saved);
        Assert.Equal(60_920, TrainingMemoryPlanner.LayerActivations(Config100M, F32 with { BatchSize = 1, SequenceLength = 2048 }).Saved);
        Assert.Equal(60_920, TrainingMemoryPlanner.LayerActivations(Config100M with { SlidingWindow = 256 }, F32).Saved);
    }

    [Fact]
    public void Saved_bytes_grow_by_four_per_rank_step_and_target_for_x_a() // x A^T, (B, T, r) in f32 compute, saved by the LoRA node
    {
        var r16 = TrainingMemoryPlanner.LayerActivations(Config100M, F32).Saved;
        var r32 = TrainingMemoryPlanner.LayerActivations(Config100M, F32 with { Rank = 32, Alpha = 32 }).Saved;
        Assert.Equal(7 * 16 * 4, r32 - r16);
    }

    [Fact]
    public void Dropout_saves_nothing_its_mask_is_recomputed_from_the_seed()
    {
        foreach (var targets in new[] { new[] { "q_proj" }, LoraOptions.AllProjections.ToArray() })
        {
            var options = F32 with { TargetModules = targets };
            var withDropout = TrainingMemoryPlanner.LayerActivations(Config100M, options, PlanDevice.Cuda);
            var without = TrainingMemoryPlanner.LayerActivations(Config100M, options with { Dropout = 0 }, PlanDevice.Cuda);
            Assert.Equal(without.Saved, withDropout.Saved);
            Assert.Equal(without.Intermediates, withDropout.Intermediates);
            // Only down_proj's masked input copy is in flight, before its output (counted among the intermediates) exists.
            Assert.Equal(targets.Contains("down_proj") ? (2048L - 768) * 4 : 0, withDropout.InFlight - without.InFlight);
            // On the CPU the segment attention node's scores and their gradient, (12, 512, 512) each for a row-long
            // segment, are larger per position of 4 rows: 2 x 12 x 512 x 4 / 4.
            Assert.Equal(2L * 12 * 512, TrainingMemoryPlanner.LayerActivations(Config100M, options).InFlight);
        }
    }

    [Fact]
    public void Grouped_attention_on_the_cpu_saves_keys_and_values_once_per_kv_head()
    {
        var grouped = TrainingMemoryPlanner.LayerActivations(Config100M, F32);            // 12 query heads over 4 KV heads
        var full = TrainingMemoryPlanner.LayerActivations(Config100M with { NumKeyValueHeads = 12 }, F32);
        // The node reads the rotated k and v as they are: 2 x (256 - 768) wide fewer saved, and k_proj's output and
        // RoPE's three products for k (4 x (256 - 768)) fewer in flight.
        Assert.Equal(2L * (768 - 256) * 4, full.Saved - grouped.Saved);
        Assert.Equal(4L * (768 - 256) * 4, full.Intermediates - grouped.Intermediates);
    }

    [Fact]
    public void Grouped_attention_off_the_cpu_saves_the_repeated_keys_and_values()
    {
        var grouped = TrainingMemoryPlanner.LayerActivations(Config100M, F32, PlanDevice.Cuda);
        var full = TrainingMemoryPlanner.LayerActivations(Config100M with { NumKeyValueHeads = 12 }, F32, PlanDevice.Cuda);
        // SDPA saves keys and values as wide as the queries either way (repeated when grouped).
        Assert.Equal(grouped.Saved, full.Saved);
        // Grouped: k and v (256 wide) live as projection outputs, three RoPE products and the rotated k before
        // repeat_interleave (6 x 256); ungrouped: k_proj's output and RoPE's three products (4 x 768), v being SDPA's.
        Assert.Equal((6L * 256 - 4 * 768) * 4, grouped.Intermediates - full.Intermediates);
    }

    [Fact]
    public void Activations_and_rope_rows_have_no_sequence_squared_term_attention_runs_per_segment_without_a_mask()
    {
        var at512 = TrainingMemoryPlanner.Estimate(Config100M, F32 with { BatchSize = 2 }, PlanDevice.Cpu);
        var at1024 = TrainingMemoryPlanner.Estimate(Config100M, F32 with { BatchSize = 1, SequenceLength = 1024 }, PlanDevice.Cpu);
        Assert.Equal(Part(at512, "activations"), Part(at1024, "activations"));
        // cos/sin rows (B, 1, T, head_dim), float32; no mask while rows fit the sliding window (100m has none).
        Assert.Equal(2L * 1024 * 64 * 4, Part(at1024, "rope rows"));
        Assert.Equal(Part(at512, "rope rows"), Part(at1024, "rope rows"));
        // Rows longer than the window may hold a segment longer than it: the model builds the mask, and the plan counts
        // the additive float32 (B, 1, T, T) mask, its bool sources (3 bytes) and the (T, T) distance tests (11 bytes).
        var windowed = TrainingMemoryPlanner.Estimate(Config100M with { SlidingWindow = 512 }, F32 with { BatchSize = 1, SequenceLength = 1024 }, PlanDevice.Cpu);
        Assert.Equal(2L * 1024 * 64 * 4 + 1024L * 1024 * 7 + 1024L * 1024 * 11, Part(windowed, "rope rows"));
    }

    [Fact]
    public void Without_checkpointing_every_layer_and_the_embedding_output_stay_and_the_first_layer_saves_less()
    {
        var estimate = TrainingMemoryPlanner.Estimate(Config100M, F32, PlanDevice.Cpu);
        var layer = TrainingMemoryPlanner.LayerActivations(Config100M, F32);
        const long positions = 4 * 512;
        // The first layer's input needs no gradient: no input-norm rsqrt (its LoRA nodes still save their input for A).
        Assert.Equal(4, layer.FirstLayerDiscount);
        Assert.Equal(positions * (768 * 4 + 12 * layer.Saved - layer.FirstLayerDiscount), Part(estimate, "activations"));
        Assert.Equal(estimate.ActivationBytesWithoutCheckpointing, Part(estimate, "activations"));
    }

    [Fact]
    public void Checkpointing_keeps_each_layers_input_and_recomputes_one_layer()
    {
        var options = F32 with { GradientCheckpointing = true };
        var estimate = TrainingMemoryPlanner.Estimate(Config100M, options, PlanDevice.Cpu);
        Assert.Equal(4L * 512 * 13 * 768 * 4, Part(estimate, "activations (checkpointed)"));
        // The chunked loss needs one chunk of logits, so even 100m's 32000-way head leaves the recomputed layer larger...
        var layer100M = TrainingMemoryPlanner.LayerActivations(Config100M, options);
        Assert.Equal(4L * 512 * (layer100M.ForwardPeak + 768 * 4), Part(estimate, "backward working set"));
        // ...and 7B's all the more.
        var mistral = TrainingMemoryPlanner.Estimate(MistralConfig.Mistral7B, options with { BatchSize = 1 }, PlanDevice.Cpu);
        var layer = TrainingMemoryPlanner.LayerActivations(MistralConfig.Mistral7B, options with { BatchSize = 1 });
        Assert.Equal(512 * (layer.ForwardPeak + 4096 * 4), Part(mistral, "backward working set"));
    }

    [Fact]
    public void The_loss_holds_no_logits_only_the_final_hidden_states_and_one_chunk()
    {
        var f32 = TrainingMemoryPlanner.Estimate(Config100M, F32, PlanDevice.Cpu);
        var bf16 = TrainingMemoryPlanner.Estimate(Config100M, F32 with { Compute = ComputePrecision.BF16 }, PlanDevice.Cpu);
        const long positions = 4 * 512;
        // The final norm's output and rsqrt (bf16: plus its float32 input copy) and the loss's copy of the labelled rows.
        Assert.Equal(positions * (2 * 768 * 4 + 4), Part(f32, "final hidden states"));
        Assert.Equal(positions * (2 * 768 * 2 + 4 + 768 * 4), Part(bf16, "final hidden states"));
        // Without checkpointing the larger transient is the last layer's forward or the loss backward: one chunk of
        // logits (about 4M elements: float32 logits and log-softmax), the labelled rows' gradient and its scatter.
        var chunk = LinearCrossEntropy.ChunkRows(32000) * 32000L;
        Assert.InRange(chunk, 4_000_000, 4_200_000);
        var layer = TrainingMemoryPlanner.LayerActivations(Config100M, F32);
        var lastLayer = positions * (layer.Intermediates + layer.InFlight) - Part(f32, "final hidden states");
        Assert.Equal(Math.Max(chunk * 8 + 2 * positions * 768 * 4, lastLayer), Part(f32, "backward working set"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_cpu_and_gpu_estimates_name_the_same_parts_in_the_same_order(bool checkpointing)
    {
        // ertas plan prints them side by side by position, the CPU in f32 and the GPU in bf16.
        var options = F32 with { GradientCheckpointing = checkpointing };
        foreach (var config in new[] { Config100M, MistralConfig.Mistral7B, BaseModelFactory.Tiny })
        {
            var cpu = TrainingMemoryPlanner.Estimate(config, options, PlanDevice.Cpu);
            var gpu = TrainingMemoryPlanner.Estimate(config, options with { Compute = ComputePrecision.BF16 }, PlanDevice.Cuda);
            // The last, the runtime, says which one it is.
            Assert.Equal(cpu.Parts.SkipLast(1).Select(p => p.Name), gpu.Parts.SkipLast(1).Select(p => p.Name));
            Assert.All([cpu.Parts[^1].Name, gpu.Parts[^1].Name], name => Assert.StartsWith("runtime", name, StringComparison.Ordinal));
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using Ertas.Modeling;
using Ertas.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Bench;

/// <summary>One row of <see cref="StepBreakdown"/>: seconds per optimizer step.</summary>
public sealed record StepPart(string Name, double Seconds, string How);

/// <summary>
/// Where a training step's time goes (train-100m, checkpointing off). The trainer's phases (forward, loss, backward,
/// optimizer, ...) are timed in the run itself through <see cref="TrainingRunSettings.Phase"/>. The parts inside a
/// layer are timed in isolation on the same model, at the step's shapes, and multiplied by the layer count: NF4
/// dequantization (twice per projection per step), the base matmuls in the compute type (forward and input gradient),
/// each LoRA-wrapped projection forward and backward (so its LoRA path is that minus the two above), the segment
/// attention node forward and backward, the elementwise work (norms, RoPE, SwiGLU), and the chunked loss. What the step
/// took beyond their sum is the rest: residual adds, copies, dispose scopes and allocation.
/// </summary>
public static class StepBreakdown
{
    public const int Repeats = 3;

    /// <summary>Phase name -> seconds, summed over the steps seen, and how many steps that was.</summary>
    public sealed class PhaseClock
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private string? _current;
        private double _since;
        public Dictionary<string, double> Seconds { get; } = [];
        public int Steps { get; private set; }

        public void Enter(string phase)
        {
            var now = _clock.Elapsed.TotalSeconds;
            if (_current is not null) Seconds[_current] = Seconds.GetValueOrDefault(_current) + now - _since;
            if (phase == "forward" && _current is "between-steps" or "setup" or null) Steps++;
            (_current, _since) = (phase, now);
        }

        /// <summary>Forgets what was timed so far (the warm-up step).</summary>
        public void Reset()
        {
            Seconds.Clear();
            Steps = 0;
        }
    }

    /// <param name="segments">The run lengths of one batch's packed segments, as the model attends them.</param>
    public static IReadOnlyList<StepPart> Measure(Trainer trainer, long batch, long sequence, long[] segments, double labelledFraction, TextWriter log)
    {
        var model = trainer.Model;
        var c = model.Config;
        var dtype = model.OutputWeight.dtype;
        var layers = c.NumHiddenLayers;
        var layer = model.model.layers[0];
        var projections = new (string Name, nn.Module<Tensor, Tensor> Module)[]
        {
            ("q_proj", layer.self_attn.q_proj), ("k_proj", layer.self_attn.k_proj), ("v_proj", layer.self_attn.v_proj),
            ("o_proj", layer.self_attn.o_proj), ("gate_proj", layer.mlp.gate_proj), ("up_proj", layer.mlp.up_proj),
            ("down_proj", layer.mlp.down_proj),
        };
        double dequantize = 0, baseMatmul = 0, wholeProjection = 0;
        foreach (var (name, module) in projections)
        {
            var lora = (LoraLinear)module;
            var nf4 = lora.QuantizedBase ?? throw new InvalidOperationException("the breakdown expects an NF4 base");
            using var scope = NewDisposeScope();
            var x = randn([batch, sequence, lora.InFeatures], ScalarType.Float32).to(dtype);
            var dy = randn([batch, sequence, lora.OutFeatures], ScalarType.Float32).to(dtype).mul_(1e-3);
            // Twice per step: the forward's and the backward's.
            dequantize += 2 * Time(() =>
            {
                if (nf4.Workspace is { } workspace)
                {
                    using var lease = workspace.Dequantize(nf4, dtype);
                }
                else
                {
                    nf4.Dequantize(dtype).Dispose();
                }
            });
            using var w = nf4.Dequantize(dtype);
            baseMatmul += Time(() => { using var y = F.linear(x, w); using var dx = dy.matmul(w); });
            wholeProjection += Time(() =>
            {
                using var inner = NewDisposeScope();
                var input = x.detach().requires_grad_();
                var y = lora.call(input);
                y.backward([dy]);
                foreach (var p in lora.parameters()) p.grad?.zero_();
            });
        }

        var (heads, kvHeads, headDim) = (c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim);
        double attention;
        using (var scope = NewDisposeScope())
        {
            // As the model attends packed rows on the CPU: one SegmentAttention node over the segments (q (B, H, T, d),
            // k and v (B, H_kv, T, d), laid out as the projections' transposed views).
            var q = randn([batch, sequence, heads, headDim]).to(dtype).transpose(1, 2);
            var k = randn([batch, sequence, kvHeads, headDim]).to(dtype).transpose(1, 2);
            var v = randn([batch, sequence, kvHeads, headDim]).to(dtype).transpose(1, 2);
            var dy = randn([batch, sequence, heads * headDim]).to(dtype);
            attention = Time(() =>
            {
                using var inner = NewDisposeScope();
                var (qq, kk, vv) = (q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_());
                SegmentAttention.Apply(qq, kk, vv, segments).backward([dy]);
            });
        }

        // The layer's elementwise work as the model does it: both norms, RoPE on q and k (the model's 4-op form:
        // x cos + roll(x) signed sin), SwiGLU's silu(gate) * up. (The attention node reads keys and values per KV head.)
        double elementwise;
        using (var scope = NewDisposeScope())
        {
            var hidden = randn([batch, sequence, c.HiddenSize]).to(dtype);
            var gate = randn([batch, sequence, c.IntermediateSize]).to(dtype);
            var up = randn([batch, sequence, c.IntermediateSize]).to(dtype);
            var q = randn([batch, heads, sequence, headDim]).to(dtype);
            var k = randn([batch, kvHeads, sequence, headDim]).to(dtype);
            var (cos, sin) = Rope.CosSin(Rope.InverseFrequencies(headDim, c.RopeTheta), arange(sequence, dtype: ScalarType.Int64), dtype);
            var half = headDim / 2;
            var signedSin = cat([sin.narrow(-1, 0, half).neg(), sin.narrow(-1, half, half)], dim: -1);
            Tensor RopeOf(Tensor x) => x * cos + x.roll(half, -1) * signedSin;
            elementwise = Time(() =>
            {
                using var inner = NewDisposeScope();
                var (hh, gg, uu, qq, kk) = (hidden.detach().requires_grad_(), gate.detach().requires_grad_(), up.detach().requires_grad_(),
                    q.detach().requires_grad_(), k.detach().requires_grad_());
                var norms = layer.input_layernorm.call(hh) + layer.post_attention_layernorm.call(hh);
                var rotated = RopeOf(qq).sum() + RopeOf(kk).sum();
                var swiglu = F.silu(gg) * uu;
                (norms.sum() + rotated + swiglu.sum()).backward();
            });
        }

        double loss;
        using (var scope = NewDisposeScope())
        {
            var rows = (long)Math.Round(batch * sequence * labelledFraction);
            var hidden = randn([rows, c.HiddenSize]).to(dtype);
            var labels = randint(0, c.VocabSize, [rows], dtype: ScalarType.Int64);
            loss = Time(() =>
            {
                using var inner = NewDisposeScope();
                var h = hidden.detach().requires_grad_();
                var (sum, _) = LinearCrossEntropy.Sum(h, model.OutputWeight, labels, -100);
                sum.backward();
            });
        }

        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"per layer: dequantize {dequantize:F3} s, base matmuls {baseMatmul:F3} s, projections {wholeProjection:F3} s, attention {attention:F3} s, elementwise {elementwise:F3} s; loss {loss:F3} s"));
        return
        [
            new("base matmuls (forward, input gradient)", layers * baseMatmul, $"F.linear(x, W) and dy W for the 7 projections, {dtype}, x {layers} layers"),
            new("NF4 dequantization", layers * dequantize, "2 per projection per step (forward, backward), into the reused workspace"),
            new("LoRA paths", layers * Math.Max(0, wholeProjection - baseMatmul - dequantize), "each projection's forward + backward (one LoraFunction node) minus the two above: dropout mask, x A^T, the addmm of (s B)^T, the gradients of A, B and x through them"),
            new("attention", layers * attention, $"forward + backward of the segment attention node over the {segments.Length} packed segments (batched matmuls, float32 causal softmax)"),
            new("elementwise", layers * elementwise, "forward + backward of both RMSNorms, RoPE on q and k, SiLU(gate) * up"),
            new("loss (chunked lm_head + cross-entropy)", loss, $"forward + backward over the labelled rows ({labelledFraction:P0})"),
        ];
    }

    /// <summary>Median seconds of <see cref="Repeats"/> runs after one warm-up.</summary>
    private static double Time(Action action) => Timing.MedianSeconds(action, Repeats);

    public static void AppendMarkdown(StringBuilder md, double stepSeconds, IReadOnlyDictionary<string, double> phases, IReadOnlyList<StepPart> parts)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine(inv, $"Where a step's time goes (checkpointing off, median step {stepSeconds:F2} s). The trainer's own phases, per step:");
        string[] inStep = ["forward", "loss", "backward", "release", "clip", "optimizer", "zero-grad"];
        md.AppendLine(inv, $"{string.Join(", ", inStep.Where(phases.ContainsKey).Select(p => $"{p} {phases[p]:F2} s"))}.");
        md.AppendLine("Inside them, each part timed alone on the same model at the step's shapes (median of 3), times the layer count:");
        md.AppendLine();
        md.AppendLine("| part | s per step | share of the step | measured as |");
        md.AppendLine("|---|---:|---:|---|");
        foreach (var p in parts)
            md.AppendLine(inv, $"| {p.Name} | {p.Seconds:F2} | {p.Seconds / stepSeconds:P0} | {p.How} |");
        var optimizer = phases.Where(p => p.Key is "clip" or "optimizer" or "zero-grad").Sum(p => p.Value);
        md.AppendLine(inv, $"| clip, AdamW, zero-grad | {optimizer:F2} | {optimizer / stepSeconds:P0} | the trainer's phases |");
        var rest = stepSeconds - parts.Sum(p => p.Seconds) - optimizer;
        md.AppendLine(inv, $"| the rest | {rest:F2} | {rest / stepSeconds:P0} | residual adds, reshapes and copies, dispose scopes, allocation and page faults |");
    }
}

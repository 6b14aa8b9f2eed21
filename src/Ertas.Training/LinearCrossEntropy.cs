using Ertas.Modeling;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Training;

/// <summary>
/// The training loss, <c>cross_entropy(F.linear(hidden, W).float(), labels, ignore_index, reduction: sum)</c>, without
/// ever holding the (positions, vocab) logits: rows are taken a chunk at a time. When a gradient will be wanted, each
/// chunk's gradient for its hidden rows is computed right after its loss, from the same logits, and backward only
/// scales it: the head's logits are computed once per step instead of twice. Only rows with a label are computed at
/// all: a row whose label is ignored contributes no loss and a zero gradient, so its share of the 32768-way head is
/// skipped (prompt turns, padding).
/// </summary>
/// <remarks>
/// The plain form allocates three float32 (B, T, vocab) tensors per micro-batch (logits, log-probabilities, their
/// gradient; 262 MB each for 2048 positions of a 32000 vocabulary) plus a copy in the compute type. Besides memory,
/// fresh pages that large come straight from the kernel, zeroed, on every step. Per row the arithmetic is
/// autograd's: log_softmax of the float32 logits, the label's entry; for the gradient softmax * g with g subtracted at
/// the label, rounded to the compute type, times W, where g is the incoming gradient the caller expects (another one
/// arriving is scaled to: one rounding more in bf16). W must be frozen (QLoRA never trains the head).
/// </remarks>
public static class LinearCrossEntropy
{
    /// <summary>Rows per chunk: a chunk's float32 logits stay near 16 MB whatever the vocabulary.</summary>
    public static long ChunkRows(long vocabSize) => Math.Max(1, (4L << 20) / vocabSize);

    /// <summary>Summed loss (a float32 scalar) over rows of <paramref name="hidden"/> (..., H) whose
    /// <paramref name="labels"/> (...) differ from <paramref name="ignoreIndex"/>, and how many rows that was.
    /// <paramref name="expectedGradient"/> is the gradient backward will bring (1 / N for a loss divided by N): the
    /// hidden rows' gradient is made with it in forward, with autograd's arithmetic; another value is scaled to.</summary>
    public static (Tensor Sum, long Rows) Sum(Tensor hidden, Tensor weight, Tensor labels, long ignoreIndex, float expectedGradient = 1f)
    {
        if (weight.requires_grad)
            throw new ArgumentException("the output weight must be frozen: the chunked loss computes no gradient for it", nameof(weight));
        if (!float.IsFinite(expectedGradient) || expectedGradient == 0)
            throw new ArgumentOutOfRangeException(nameof(expectedGradient), expectedGradient, "the gradient backward brings must be finite and not zero");
        using var flatLabels = labels.reshape(-1);
        using var keep = flatLabels.NotEqual(ignoreIndex).nonzero().squeeze(1);                  // (N) rows with a label
        var rows = keep.shape[0];
        if (rows == 0)
            return (hidden.sum().Times(0).to(ScalarType.Float32), 0); // zero, but still on the graph, as cross_entropy's would be
        using var flatHidden = hidden.reshape(-1, hidden.shape[^1]);                       // (B*T, H)
        using var selected = flatHidden.index_select(0, keep);                            // (N, H)
        using var targets = flatLabels.index_select(0, keep).unsqueeze(1);               // (N, 1)
        var withGradient = is_grad_enabled() && hidden.requires_grad; // else (evaluation) the loss alone
        return (Function.apply(selected, weight, targets, withGradient ? expectedGradient : (float?)null), rows);
    }

    /// <summary>The hidden rows' gradient for an incoming gradient of <paramref name="For"/>, made in forward. Kept as
    /// data (a holder: TorchSharp prints a warning for every bare tensor), owned by the caller's dispose scope.</summary>
    private sealed record MadeGradient(Tensor Tensor, float For);

    private sealed class Function : autograd.SingleTensorFunction<Function>
    {
        public override string Name => nameof(LinearCrossEntropy);

        /// <summary>vars: hidden (N, H), weight (V, H), targets (N, 1) int64, the expected incoming gradient or null
        /// for none (no gradient made).</summary>
        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (hidden, weight, targets, expected) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (float?)vars[3]);
            using var scope = NewDisposeScope();
            var chunk = ChunkRows(weight.shape[0]);
            var total = zeros([], ScalarType.Float32, hidden.device);
            var gradient = expected is null ? null : empty_like(hidden);
            var g = (double)(expected ?? 0f);
            using var negG = ones([chunk, 1], ScalarType.Float32, hidden.device).MulInPlace(-g);
            for (long start = 0; start < hidden.shape[0]; start += chunk)
            {
                using var inner = NewDisposeScope();
                var n = Math.Min(chunk, hidden.shape[0] - start);
                var rows = targets.narrow(0, start, n);
                var logProbs = LogProbs(hidden.narrow(0, start, n), weight);                 // (n, V) float32
                total.sub_(logProbs.gather(1, rows).sum());
                if (gradient is null) continue;
                var gradLogits = logProbs.exp_().MulInPlace(g);                               // softmax * g
                gradLogits.scatter_add_(1, rows, negG.narrow(0, 0, n));                      // - g at the label
                var rounded = gradLogits.dtype == hidden.dtype ? gradLogits : gradLogits.to(hidden.dtype);
                gradient.narrow(0, start, n).copy_(rounded.matmul(weight));                   // (n, H)
            }
            if (gradient is not null) ctx.save_data("gradient", new MadeGradient(gradient.MoveToOuterDisposeScope(), expected!.Value));
            return total.MoveToOuterDisposeScope();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            using var scope = NewDisposeScope();
            var made = (MadeGradient)ctx.get_data("gradient");
            var g = grad_output.to(ScalarType.Float32).item<float>();
            grad_output.Dispose(); // TorchSharp's handle, made in the caller's scope
            // The gradient expected: exactly what autograd would give. Another one: scaled, one rounding more in bf16.
            var gradHidden = g == made.For ? made.Tensor.alias() : made.Tensor.Times((double)g / made.For);
            return [gradHidden.MoveToOuterDisposeScope(), null!, null!, null!];
        }

        private static Tensor LogProbs(Tensor hidden, Tensor weight)
        {
            var logits = F.linear(hidden, weight);                                           // (n, V)
            if (logits.dtype != ScalarType.Float32) logits = logits.to(ScalarType.Float32);
            return F.log_softmax(logits, 1);
        }
    }
}

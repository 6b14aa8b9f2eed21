using Ertas.Modeling;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Training;

/// <summary>
/// The training loss, <c>cross_entropy(F.linear(hidden, W).float(), labels, ignore_index, reduction: sum)</c>, without
/// ever holding the (positions, vocab) logits: rows are taken a chunk at a time, and backward computes each chunk's
/// logits again. Only rows with a label are computed at all: a row whose label is ignored contributes no loss and a
/// zero gradient, so its share of the 32768-way head is skipped (prompt turns, padding).
/// </summary>
/// <remarks>
/// The plain form allocates three float32 (B, T, vocab) tensors per micro-batch (logits, log-probabilities, their
/// gradient; 262 MB each for 2048 positions of a 32000 vocabulary) plus a copy in the compute type. Besides memory,
/// fresh pages that large come straight from the kernel, zeroed, on every step. Per row the arithmetic is
/// autograd's: log_softmax of the float32 logits, the label's entry; backward softmax * g with g subtracted at the
/// label, rounded to the compute type, times W. Only the order in which row losses are summed differs. W must be
/// frozen (QLoRA never trains the head).
/// </remarks>
public static class LinearCrossEntropy
{
    /// <summary>Rows per chunk: a chunk's float32 logits stay near 16 MB whatever the vocabulary.</summary>
    public static long ChunkRows(long vocabSize) => Math.Max(1, (4L << 20) / vocabSize);

    /// <summary>Summed loss (a float32 scalar) over rows of <paramref name="hidden"/> (..., H) whose
    /// <paramref name="labels"/> (...) differ from <paramref name="ignoreIndex"/>, and how many rows that was.</summary>
    public static (Tensor Sum, long Rows) Sum(Tensor hidden, Tensor weight, Tensor labels, long ignoreIndex)
    {
        if (weight.requires_grad)
            throw new ArgumentException("the output weight must be frozen: the chunked loss computes no gradient for it", nameof(weight));
        using var flatLabels = labels.reshape(-1);
        using var keep = flatLabels.NotEqual(ignoreIndex).nonzero().squeeze(1);                  // (N) rows with a label
        var rows = keep.shape[0];
        if (rows == 0)
            return (hidden.sum().Times(0).to(ScalarType.Float32), 0); // zero, but still on the graph, as cross_entropy's would be
        using var flatHidden = hidden.reshape(-1, hidden.shape[^1]);                       // (B*T, H)
        using var selected = flatHidden.index_select(0, keep);                            // (N, H)
        using var targets = flatLabels.index_select(0, keep).unsqueeze(1);               // (N, 1)
        return (Function.apply(selected, weight, targets), rows);
    }

    /// <summary>lm_head's weight needs no gradient, so it is kept as data rather than a saved variable.</summary>
    private sealed record FrozenWeight(Tensor Tensor);

    private sealed class Function : autograd.SingleTensorFunction<Function>
    {
        public override string Name => nameof(LinearCrossEntropy);

        /// <summary>vars: hidden (N, H), weight (V, H), targets (N, 1) int64.</summary>
        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (hidden, weight, targets) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
            ctx.save_for_backward([hidden, targets]);
            ctx.save_data("weight", new FrozenWeight(weight)); // a holder: TorchSharp prints a warning for every bare tensor
            using var scope = NewDisposeScope();
            var chunk = ChunkRows(weight.shape[0]);
            var total = zeros([], ScalarType.Float32, hidden.device);
            for (long start = 0; start < hidden.shape[0]; start += chunk)
            {
                using var inner = NewDisposeScope();
                var n = Math.Min(chunk, hidden.shape[0] - start);
                var logProbs = LogProbs(hidden.narrow(0, start, n), weight);                 // (n, V) float32
                total.sub_(logProbs.gather(1, targets.narrow(0, start, n)).sum());
            }
            return total.MoveToOuterDisposeScope();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            var saved = ctx.get_saved_variables();
            var (hidden, targets) = (saved[0], saved[1]);
            var weight = ((FrozenWeight)ctx.get_data("weight")).Tensor;
            using var scope = NewDisposeScope();
            var g = grad_output.to(ScalarType.Float32);
            var negG = g.neg();
            var gradHidden = empty_like(hidden);
            var chunk = ChunkRows(weight.shape[0]);
            for (long start = 0; start < hidden.shape[0]; start += chunk)
            {
                using var inner = NewDisposeScope();
                var n = Math.Min(chunk, hidden.shape[0] - start);
                var gradLogits = LogProbs(hidden.narrow(0, start, n), weight).exp_().mul_(g); // softmax * g
                var rows = targets.narrow(0, start, n);
                gradLogits.scatter_add_(1, rows, negG.expand(n, 1));                        // - g at the label
                var rounded = gradLogits.dtype == hidden.dtype ? gradLogits : gradLogits.to(hidden.dtype);
                gradHidden.narrow(0, start, n).copy_(rounded.matmul(weight));               // (n, H)
            }
            grad_output.Dispose(); // TorchSharp's handle, made in the caller's scope
            return [gradHidden.MoveToOuterDisposeScope(), null!, null!];
        }

        private static Tensor LogProbs(Tensor hidden, Tensor weight)
        {
            var logits = F.linear(hidden, weight);                                           // (n, V)
            if (logits.dtype != ScalarType.Float32) logits = logits.to(ScalarType.Float32);
            return F.log_softmax(logits, 1);
        }
    }
}

using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Training;

/// <summary>
/// y = x W^T for a frozen W held as NF4, as a custom autograd function: forward dequantizes W, multiplies and drops
/// it; backward dequantizes again for dx = dy W. Autograd therefore never holds a dequantized copy between forward and
/// backward (F.linear would save W for the input gradient), and nothing is saved at all: W needs no gradient, so x is
/// not needed either. This is bitsandbytes' MatMul4Bit trade: a second dequantization for 4 bits instead of 16 held.
/// With a <see cref="Nf4Tensor.Workspace"/> the dequantized weight goes into a buffer reused across calls.
/// </summary>
internal sealed class Nf4LinearFunction : autograd.SingleTensorFunction<Nf4LinearFunction>
{
    public override string Name => nameof(Nf4LinearFunction);

    /// <summary>vars: input Tensor, <see cref="Nf4Tensor"/> weight.</summary>
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, weight) = ((Tensor)vars[0], (Nf4Tensor)vars[1]);
        ctx.save_data("weight", weight);
        ctx.save_data("dtype", x.dtype);
        using var w = Dequantize(weight, x.dtype);
        var y = F.linear(x, w.Weight);
        TensorBlockCache.BeginOutputMetadata(); // apply() now allocates an unwritten copy of y (see TensorBlockCache)
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var weight = (Nf4Tensor)ctx.get_data("weight");
        using var w = Dequantize(weight, (ScalarType)ctx.get_data("dtype"));
        var gradInput = grad_output.matmul(w.Weight);
        // TorchSharp wraps the incoming gradient in a handle of the current dispose scope, which on the CPU is the
        // caller's of backward(): left there it would hold every projection's output gradient until the step ends.
        // The engine keeps its own reference for as long as it needs one.
        grad_output.Dispose();
        return [gradInput, null!]; // no gradient for the (non-tensor) weight argument
    }

    // The weight lives only until the matmul returns, so a shared workspace buffer can hold it.
    private static Nf4Workspace.Lease Dequantize(Nf4Tensor weight, ScalarType dtype) =>
        weight.Workspace is { } workspace ? workspace.Dequantize(weight, dtype) : new Nf4Workspace.Lease(null, weight.Dequantize(dtype));

    public static Tensor Apply(Tensor x, Nf4Tensor weight)
    {
        // apply() hands back a second handle on forward's output and leaves forward's own in the current dispose scope,
        // where it would keep the output's storage alive after the caller has disposed the handle it was given. This
        // scope takes forward's handle (and the dequantized weight's) and lets only the returned one out.
        using var scope = NewDisposeScope();
        try
        {
            return apply(x, weight).MoveToOuterDisposeScope();
        }
        finally
        {
            TensorBlockCache.EndOutputMetadata();
        }
    }
}

using Ertas.Modeling;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Training;

/// <summary>
/// One LoRA projection, y = x Wᵀ + dropout(x) Aᵀ (s B)ᵀ, as a single autograd node. W is frozen: NF4 (dequantized on
/// each use, into the model's shared workspace when it has one) or a plain tensor. A (r, in) and B (out, r) are the
/// float32 masters; both products run in x's type (bf16 under bf16 compute, as PEFT's layers run under autocast), and
/// their gradients reach A and B as float32.
/// <para>
/// Why one node: autograd over the separate ops kept, per projection, a float32 copy of x, dropout's float32 noise and
/// the dropped float32 input, and wrote the update, its rounding and the sum as three full (positions, out) tensors.
/// This node keeps x (which the sibling projections share) and the (positions, r) product; adds the update inside the
/// base GEMM's output (addmm); recomputes the masked input in backward from the mask's seed (<see cref="CounterDropout"/>),
/// whose 1 / (1 - p) is folded into A. On the 100m preset's shapes the LoRA path's cost over the plain projection falls
/// from 14-42 ms to 3-9 ms per projection (forward + backward, bf16, 2 threads).
/// </para>
/// <para>
/// Like bitsandbytes' MatMul4Bit, an NF4 W is dequantized again in backward for dx = dy W instead of being held, and
/// nothing of W is saved. With dropout p = 0, or in eval mode, the node computes x Wᵀ + (x Aᵀ)(s B)ᵀ exactly as with
/// dropout minus the mask.
/// </para>
/// </summary>
internal sealed class LoraFunction : autograd.SingleTensorFunction<LoraFunction>
{
    public override string Name => nameof(LoraFunction);

    /// <summary>The frozen weight: exactly one of the two is set.</summary>
    public sealed record Frozen(Nf4Tensor? Quantized, Tensor? Plain);

    /// <summary>Dropout probability (0: none), the update's scale alpha / r, and the mask's seed.</summary>
    /// <param name="Returned">Where backward leaves its returned gradients' handles to be released by the next node
    /// (the trainer's holder for the pass); null leaves them in the caller's dispose scope.</param>
    public sealed record Settings(double Dropout, double Scaling, ulong Seed, ReturnedGradients? Returned = null)
    {
        /// <summary>Dropout's 1 / (1 - p) for kept elements.</summary>
        public double KeptScale => 1 / (1 - Dropout);
    }

    /// <summary>y (..., out) in x's type for x (..., in), A (r, in) and B (out, r) float32.</summary>
    public static Tensor Apply(Tensor x, Tensor a, Tensor b, Frozen frozen, Settings settings)
    {
        // apply() hands back a second handle on forward's output and leaves forward's own in the current dispose scope,
        // where it would keep the output's storage alive after the caller has disposed the handle it was given. This
        // scope takes forward's handle and lets only the returned one out.
        using var scope = NewDisposeScope();
        try
        {
            return apply(x, a, b, frozen, settings).MoveToOuterDisposeScope();
        }
        finally
        {
            TensorBlockCache.EndOutputMetadata();
        }
    }

    /// <summary>The node's forward arithmetic: y (..., out) and the saved product dropout(x) Aᵀ (..., r).</summary>
    public static (Tensor Y, Tensor Down) Forward(Tensor x, Tensor a, Tensor b, Frozen frozen, Settings settings)
    {
        using var scope = NewDisposeScope();
        var masked = settings.Dropout > 0 ? CounterDropout.Mask(x, settings.Seed, settings.Dropout) : x;
        var down = masked.matmul(ScaledInType(a, settings.KeptScale, x.dtype).t());     // (..., r)
        if (settings.Dropout > 0) masked.Dispose();
        var y = Base(x, frozen, backward: false);                                     // (..., out)
        var rank = a.shape[0];
        y.view(-1, y.shape[^1]).addmm_(down.view(-1, rank), ScaledInType(b, settings.Scaling, x.dtype).t());
        return (y.MoveToOuterDisposeScope(), down.MoveToOuterDisposeScope());
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, a, b) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
        var (frozen, settings) = ((Frozen)vars[3], (Settings)vars[4]);
        var (y, down) = Forward(x, a, b, frozen, settings);
        ctx.save_for_backward([x, down, a, b]);
        ctx.save_data("frozen", frozen);
        ctx.save_data("settings", settings);
        ctx.save_data("inputGrad", x.requires_grad);
        // down's handle stays in Apply's scope until apply() has made the native saved variable from it.
        TensorBlockCache.BeginOutputMetadata(); // apply() now allocates an unwritten copy of y (see TensorBlockCache)
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var settings = (Settings)ctx.get_data("settings");
        settings.Returned?.ReleaseEarlier();
        // Opened before the saved tensors are unpacked: their handles (x is a layer's input) must not outlive this call.
        using var scope = NewDisposeScope();
        var saved = ctx.get_saved_variables();
        var (x, down, a, b) = (saved[0], saved[1], saved[2], saved[3]);
        var frozen = (Frozen)ctx.get_data("frozen");
        var inputGrad = (bool)ctx.get_data("inputGrad");
        var (rank, inFeatures) = (a.shape[0], a.shape[1]);
        var dtype = x.dtype;
        var grad = grad_output.reshape(-1, grad_output.shape[^1]);                     // (N, out)
        var down2 = down.view(-1, rank);                                              // (N, r)

        Tensor? gradB = null;
        if (b.requires_grad)
            gradB = grad.t().mm(down2).to(ScalarType.Float32).MulInPlace(settings.Scaling).MoveToOuterDisposeScope(); // (out, r)
        var gradDown = grad.mm(ScaledInType(b, settings.Scaling, dtype));             // (N, r): dy (s B)
        Tensor? gradA = null;
        if (a.requires_grad)
        {
            var masked = settings.Dropout > 0 ? CounterDropout.Mask(x, settings.Seed, settings.Dropout) : x;
            gradA = gradDown.t().mm(masked.reshape(-1, inFeatures)).to(ScalarType.Float32); // (r, in)
            if (settings.Dropout > 0)
            {
                masked.Dispose(); // an (N, in) copy: gone before the input gradient's two
                gradA.MulInPlace(settings.KeptScale);
            }
            gradA.MoveToOuterDisposeScope();
        }
        Tensor? gradX = null;
        if (inputGrad)
        {
            var throughLora = gradDown.mm(ScaledInType(a, settings.KeptScale, dtype));  // (N, in)
            if (settings.Dropout > 0) CounterDropout.Mask(throughLora, throughLora, settings.Seed, settings.Dropout);
            var throughBase = Base(grad_output, frozen, backward: true);               // (..., in): dy W
            gradX = throughBase.AddInPlace(throughLora.view(throughBase.shape)).MoveToOuterDisposeScope();
        }
        // TorchSharp wraps the incoming gradient in a handle of the current dispose scope, which on the CPU is the
        // caller's of backward(): left there it would hold every projection's output gradient until the step ends.
        // The engine keeps its own reference for as long as it needs one.
        grad_output.Dispose();
        // The returned handles are the caller's too; the holder releases them when the next node's backward starts,
        // by when the engine has taken its own references.
        settings.Returned?.Keep(new[] { gradX, gradA, gradB }.OfType<Tensor>());
        return [gradX!, gradA!, gradB!, null!, null!];
    }

    /// <summary>x Wᵀ (forward) or dy W (backward). The weight lives only until the matmul returns, so a shared
    /// workspace buffer can hold a dequantized NF4 weight.</summary>
    private static Tensor Base(Tensor input, Frozen frozen, bool backward)
    {
        if (frozen.Plain is { } plain)
            return backward ? input.matmul(plain) : F.linear(input, plain);
        var quantized = frozen.Quantized!;
        using var w = quantized.Workspace is { } workspace
            ? workspace.Dequantize(quantized, input.dtype)
            : new Nf4Workspace.Lease(null, quantized.Dequantize(input.dtype));
        return backward ? input.matmul(w.Weight) : F.linear(input, w.Weight);
    }

    /// <summary>
    /// A float32 factor times <paramref name="scale"/>, in the compute type: A / (1 - p) (dropout's scale, applied to
    /// the r x in factor instead of the (positions, in) input: <see cref="CounterDropout"/> only masks) and s B. A scale
    /// of 1 (no dropout; alpha = r, the default) multiplies nothing, and under float32 compute the factor itself comes
    /// back as a fresh handle, never a copy.
    /// </summary>
    private static Tensor ScaledInType(Tensor factor, double scale, ScalarType dtype)
    {
        if (scale == 1) return dtype == factor.dtype ? factor.alias() : factor.to(dtype);
        using var scaled = factor.Times(scale);
        return dtype == scaled.dtype ? scaled.alias() : scaled.to(dtype);
    }
}

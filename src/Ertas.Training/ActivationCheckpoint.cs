using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;
using ReturnedGradients = Ertas.Modeling.ReturnedGradients;

namespace Ertas.Training;

/// <summary>
/// Activation (gradient) checkpointing, which TorchSharp lacks: <see cref="Run"/> computes <c>fn(input)</c> without
/// recording a graph, keeps only <c>input</c> (and the CPU RNG state), and in backward runs <c>fn</c> again with grad
/// enabled to get the gradients. Memory per checkpointed layer drops from all its activations to its input, for
/// one extra forward per layer.
/// </summary>
/// <remarks>
/// Like PyTorch's reentrant <c>checkpoint</c>, with two differences that matter for LoRA:
/// <list type="bullet">
/// <item>The trainable parameters used inside <c>fn</c> are passed in and are inputs of the node. The input of the
/// first layer (frozen embeddings) needs no gradient, and a node none of whose inputs needs one would never be called
/// in backward (PyTorch's "None of the inputs have requires_grad=True" case); with the parameters as inputs it is.</item>
/// <item>The CPU default generator's state is saved before the forward and restored around the recompute, so dropout
/// draws the same mask twice; the generator is put back afterwards, so backward consumes no random numbers. LoRA
/// dropout draws its seed from this CPU generator on every device (<see cref="CounterDropout"/>), so it repeats on CUDA
/// too; other CUDA randomness would not (TorchSharp exposes no CUDA default generator).</item>
/// </list>
/// </remarks>
public static class ActivationCheckpoint
{
    /// <summary><c>fn(input)</c>, recomputed in backward. <paramref name="parameters"/>: every tensor <c>fn</c> reads
    /// that needs a gradient (the LoRA factors of a layer). Under no_grad it simply calls <c>fn</c>.
    /// <paramref name="returned"/>: where the gradients handed back to autograd are released; one per backward pass
    /// (see <see cref="ReturnedGradients"/>). Without one they stay in the dispose scope around backward().</summary>
    public static Tensor Run(Func<Tensor, Tensor> fn, Tensor input, IReadOnlyList<Tensor> parameters, ReturnedGradients? returned = null)
    {
        if (!is_grad_enabled()) return fn(input);
        var vars = new object[2 + parameters.Count];
        vars[0] = input;
        vars[1] = new Recipe(fn, parameters.Count, returned);
        for (var i = 0; i < parameters.Count; i++) vars[2 + i] = parameters[i];
        try
        {
            return CheckpointFunction.apply(vars);
        }
        finally
        {
            TensorBlockCache.EndOutputMetadata();
        }
    }

    /// <summary>What backward needs besides the saved tensors.</summary>
    private sealed class Recipe(Func<Tensor, Tensor> fn, int parameterCount, ReturnedGradients? returned)
    {
        public Func<Tensor, Tensor> Fn { get; } = fn;
        public int ParameterCount { get; } = parameterCount;
        public ReturnedGradients? Returned { get; } = returned;
        public Tensor? RngState { get; set; }
    }

    private sealed class CheckpointFunction : autograd.SingleTensorFunction<CheckpointFunction>
    {
        public override string Name => nameof(CheckpointFunction);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var input = (Tensor)vars[0];
            var recipe = (Recipe)vars[1];
            recipe.RngState = Generator.Default.get_state();
            var saved = new List<Tensor> { input };
            for (var i = 0; i < recipe.ParameterCount; i++) saved.Add((Tensor)vars[2 + i]);
            ctx.save_for_backward(saved);
            ctx.save_data("recipe", recipe);
            // apply() runs this with grad disabled: no graph. The scope frees the layer's temporaries now; left to the
            // caller's scope they would live until the whole step ends, and checkpointing would save nothing.
            using var scope = NewDisposeScope();
            var output = recipe.Fn(input).MoveToOuterDisposeScope();
            TensorBlockCache.BeginOutputMetadata(); // apply() now allocates an unwritten copy of the output
            return output;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            var recipe = (Recipe)ctx.get_data("recipe");
            recipe.Returned?.ReleaseEarlier();
            var saved = ctx.get_saved_variables();
            var input = saved[0].detach().requires_grad_(saved[0].requires_grad);
            var parameters = saved.Skip(1).ToList();

            // Backward may run on autograd's own thread, outside any scope of the caller: without this one the
            // recomputed activations would wait for the garbage collector.
            using var scope = NewDisposeScope();
            var generator = Generator.Default;
            var current = generator.get_state();
            Tensor output;
            using (enable_grad())
            {
                generator.set_state(recipe.RngState!);
                try
                {
                    output = recipe.Fn(input);
                }
                finally
                {
                    generator.set_state(current);
                }
            }

            var wrt = new List<Tensor>();
            if (input.requires_grad) wrt.Add(input);
            wrt.AddRange(parameters.Where(p => p.requires_grad));
            var grads = wrt.Count == 0
                ? []
                : autograd.grad([output], wrt, [grad_output], allow_unused: true);

            foreach (var g in grads) g?.MoveToOuterDisposeScope();
            recipe.Returned?.Keep(grads.Where(g => g is not null));
            grad_output.Dispose(); // TorchSharp's handle on the incoming gradient, made in the caller's scope
            var result = new List<Tensor>();
            var next = 0;
            result.Add(input.requires_grad ? grads[next++] : null!);
            result.Add(null!); // the recipe
            foreach (var p in parameters)
                result.Add(p.requires_grad ? grads[next++] : null!);
            recipe.RngState?.Dispose();
            recipe.RngState = null;
            current.Dispose();
            return result;
        }
    }
}

using Ertas.Core;
using Ertas.Mistral;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling;

/// <summary>
/// Fills a module's parameters from a checkpoint by name, like PyTorch's <c>load_state_dict(strict=True)</c>: every
/// parameter must be present with exactly its shape and no tensor may be left over. All problems are checked (from
/// shapes alone) before any data is read, and reported together.
/// </summary>
public static class StrictLoader
{
    public static void Load(nn.Module module, ITensorSource source)
    {
        var parameters = module.named_parameters().ToList();
        CheckNames(parameters.Select(p => (p.name, p.parameter.shape)).ToList(), source);

        // One float32 staging tensor, reused: a 7B load then needs one extra tensor's worth of memory, not a model's.
        var largest = parameters.Count == 0 ? 0 : parameters.Max(p => p.parameter.numel());
        using var staging = empty([largest], ScalarType.Float32);
        using var noGrad = no_grad();
        foreach (var (name, parameter) in parameters)
        {
            // The slice, its view and FloatSpan's storage alias each hold the staging buffer; disposed here they let it
            // go with the loader instead of with the garbage collector's finalizers (a 7B embedding's 524 MB).
            using var scope = NewDisposeScope();
            var count = parameter.numel();
            var slice = staging.narrow(0, 0, count);
            source.ReadFloat32(name, FloatSpan(slice));
            parameter.copy_(slice.view(parameter.shape)); // converts to the parameter's dtype and device
        }
    }

    /// <summary>Throws one <see cref="ErtasException"/> naming every missing, unexpected and mis-shaped tensor.</summary>
    public static void CheckNames(IReadOnlyList<(string Name, long[] Shape)> expected, ITensorSource source)
    {
        var available = new HashSet<string>(StringComparer.Ordinal);
        var duplicates = source.TensorNames.Where(n => !available.Add(n)).Distinct().ToList();
        if (duplicates.Count > 0)
            throw new ErtasException(ErrorCode.CheckpointDuplicateTensor,
                $"the checkpoint holds these tensors more than once: {string.Join(", ", duplicates)}");

        var expectedNames = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        var missing = expected.Where(e => !available.Contains(e.Name)).Select(e => e.Name).ToList();
        var unexpected = source.TensorNames.Where(n => !expectedNames.Contains(n)).ToList();
        var mismatched = new List<string>();
        foreach (var (name, shape) in expected.Where(e => available.Contains(e.Name)))
        {
            var actual = source.GetShape(name);
            if (!actual.SequenceEqual(shape))
                mismatched.Add($"{name} has shape [{string.Join(", ", actual)}], expected [{string.Join(", ", shape)}]");
        }
        if (missing.Count + unexpected.Count + mismatched.Count == 0) return;

        var problems = new List<string>();
        if (mismatched.Count > 0) problems.Add($"wrong shape: {string.Join("; ", mismatched)}");
        if (missing.Count > 0) problems.Add($"missing: {string.Join(", ", missing)}");
        if (unexpected.Count > 0) problems.Add($"unexpected: {string.Join(", ", unexpected)}");
        var code = mismatched.Count > 0 ? ErrorCode.CheckpointShapeMismatch
            : missing.Count > 0 ? ErrorCode.CheckpointMissingTensor
            : ErrorCode.CheckpointUnexpectedTensor;
        throw new ErtasException(code,
            $"the checkpoint does not match the model config: {string.Join(" | ", problems)}");
    }

    /// <summary>The CPU memory of a contiguous float32 tensor as a span (no copy).</summary>
    private static unsafe Span<float> FloatSpan(Tensor contiguousFloat32)
    {
        var start = (float*)contiguousFloat32.storage<float>().data_ptr() + contiguousFloat32.storage_offset();
        return new Span<float>(start, checked((int)contiguousFloat32.numel()));
    }
}

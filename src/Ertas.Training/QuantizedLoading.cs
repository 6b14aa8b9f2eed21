using System.Reflection;
using Ertas.Core;
using Ertas.Mistral;
using Ertas.Modeling;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;
using ModelingLinear = Ertas.Modeling.Linear;

namespace Ertas.Training;

/// <summary>
/// Loads a checkpoint into a <see cref="MistralModel"/> with LoRA injected as it goes, so a QLoRA base never exists
/// in full precision: the network is built with <c>torch.empty</c> weights (address space only: the kernel maps a page
/// on its first write, so unread weights cost no RSS), every non-target tensor is read into place, and each target
/// projection is read, quantized to NF4 and its full-precision weight freed before the next tensor is read. For 7B
/// in bf16 that is about 4 GB resident instead of 14.5 GB plus the NF4 copy.
/// <para>
/// The result is the one <see cref="MistralModel.Load"/> followed by <see cref="LoraInjection.Inject"/> gives, bit for
/// bit: the same strict name and shape checks before any read, each weight rounded to the model's dtype before it is
/// quantized (as the loaded parameter was), the targets wrapped in module order from one generator seeded with
/// <see cref="LoraOptions.Seed"/> (so each lora_A gets the same draws), and the same modes (the network in eval, the new
/// LoRA modules as constructed). The NF4 weights share one <see cref="Nf4Workspace"/>, so training dequantizes into
/// reused buffers.
/// </para>
/// </summary>
public static class QuantizedLoading
{
    /// <summary>Builds the network for <paramref name="config"/>, fills it from <paramref name="source"/> and injects
    /// LoRA per <paramref name="lora"/> tensor by tensor. The caller owns the returned model.</summary>
    public static (MistralModel Model, IReadOnlyList<LoraTarget> Targets) Load(MistralConfig config, ITensorSource source,
        ModelOptions modelOptions, LoraOptions lora)
    {
        lora.Validate();
        var network = new MistralModel(config, modelOptions);
        try
        {
            network.eval(); // MistralModel.Load leaves the network in eval before injection; so does this
            var targets = LoadAndInject(network, source, lora);
            return (network, targets);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    private static List<LoraTarget> LoadAndInject(MistralModel network, ITensorSource source, LoraOptions lora)
    {
        var parameters = network.named_parameters().ToList();
        StrictLoader.CheckNames([.. parameters.Select(p => (p.name, p.parameter.shape))], source);

        var modules = network.named_modules().ToList();
        var byName = modules.ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        var targetNames = modules
            .Where(m => m.module is ModelingLinear && lora.TargetModules.Contains(LastPart(m.name), StringComparer.Ordinal))
            .Select(m => m.name)
            .ToList();
        CheckTargets(modules, targetNames, lora);
        var targetByWeight = targetNames.ToDictionary(n => n + ".weight", n => n, StringComparer.Ordinal);

        // One float32 staging tensor sized for the largest tensor, reused: the reader converts into it, copy_ rounds
        // into the parameter's dtype exactly as StrictLoader does.
        var largest = parameters.Max(p => p.parameter.numel());
        using var staging = empty([largest], ScalarType.Float32);
        using var generator = new torch.Generator((ulong)lora.Seed);
        var workspace = new Nf4Workspace(); // one set of dequantization buffers for all the model's NF4 weights
        var injected = new List<LoraTarget>(targetNames.Count);
        foreach (var (name, parameter) in parameters)
        {
            // The scope disposes the slice, its view and FloatSpan's storage alias, which would otherwise hold the staging
            // buffer (the embedding's size in float32) until the garbage collector finalizes them.
            using (no_grad())
            using (NewDisposeScope())
            {
                var slice = staging.narrow(0, 0, parameter.numel());
                source.ReadFloat32(name, FloatSpan(slice));
                parameter.copy_(slice.view(parameter.shape));
            }
            if (!targetByWeight.TryGetValue(name, out var moduleName)) continue;
            // Parameters come in module registration order, so targets are met in named_modules order, as Inject meets them.
            if (injected.Count >= targetNames.Count || targetNames[injected.Count] != moduleName)
                throw new InvalidOperationException($"LoRA target {moduleName} was reached out of module order");
            injected.Add(InjectOne(network, byName, moduleName, lora, generator, workspace));
            if (lora.QuantizeBase) parameter.Dispose(); // our reference too, should named_parameters() hand out its own
        }

        foreach (var (name, parameter) in network.named_parameters())
            parameter.requires_grad = LoraInjection.IsLoraParameter(name);
        return injected;
    }

    /// <summary>Replaces the loaded Linear <paramref name="name"/> by a LoraLinear; with an NF4 base the full-precision
    /// weight is freed here, before the next tensor is read.</summary>
    private static LoraTarget InjectOne(nn.Module root, Dictionary<string, nn.Module> byName, string name, LoraOptions options,
        torch.Generator generator, Nf4Workspace workspace)
    {
        var linear = (ModelingLinear)byName[name];
        var dot = name.LastIndexOf('.');
        var parent = dot < 0 ? root : byName[name[..dot]];
        var childName = name[(dot + 1)..];
        var field = parent.GetType().GetField(childName, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance);
        if (field is null || !field.FieldType.IsAssignableFrom(typeof(LoraLinear)))
            throw new InvalidOperationException($"{parent.GetType().Name}.{childName} cannot hold a LoraLinear (see LoraInjection.Inject)");
        var lora = options.QuantizeBase
            ? LoraLinear.FromQuantized(Nf4.Quantize(linear.weight) with { Workspace = workspace.Attach() }, options, generator, linear.weight.dtype)
            : LoraLinear.FromPlain(linear.weight, options, generator);
        field.SetValue(parent, lora);
        parent.register_module(childName, null!); // TorchSharp refuses to re-register a name: remove, then add
        parent.register_module(childName, lora);
        if (options.QuantizeBase)
        {
            linear.Dispose();
            // The weights not read yet are address space only, yet count as live to the tensor block cache, whose bound
            // (live + cached under the most ever live) is on mapped bytes: kept cached, each freed weight would stay
            // resident beside them (14.8 GB for 7B in place of 4.3). Give it back to the kernel now.
            TensorBlockCache.Trim();
        }
        return new LoraTarget(name, lora);
    }

    /// <summary>The errors <see cref="LoraInjection.Inject"/> gives for targets that match nothing.</summary>
    private static void CheckTargets(List<(string name, nn.Module module)> modules, List<string> targetNames, LoraOptions options)
    {
        if (targetNames.Count == 0)
        {
            var linears = modules.Where(m => m.module is ModelingLinear).Select(m => LastPart(m.name)).Distinct();
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"no module matches the LoRA targets {string.Join(", ", options.TargetModules)}; the network's linear modules are: {string.Join(", ", linears)}");
        }
        var unknown = options.TargetModules.Where(t => !targetNames.Any(n => LastPart(n) == t)).ToList();
        if (unknown.Count > 0)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"LoRA target module(s) {string.Join(", ", unknown)} match nothing in the network");
    }

    private static string LastPart(string name) => name[(name.LastIndexOf('.') + 1)..];

    private static unsafe Span<float> FloatSpan(Tensor contiguousFloat32)
    {
        var start = (float*)contiguousFloat32.storage<float>().data_ptr() + contiguousFloat32.storage_offset();
        return new Span<float>(start, checked((int)contiguousFloat32.numel()));
    }
}

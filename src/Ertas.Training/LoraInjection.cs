using System.Reflection;
using Ertas.Core;
using TorchSharp;
using static TorchSharp.torch;
using ModelingLinear = Ertas.Modeling.Linear;

namespace Ertas.Training;

/// <summary>An injected adapter: the module's dotted name in the network (HF's, e.g.
/// <c>model.layers.0.self_attn.q_proj</c>) and the module now in its place.</summary>
public sealed record LoraTarget(string Name, LoraLinear Module)
{
    /// <summary>PEFT's key for A in <c>adapter_model.safetensors</c>.</summary>
    public string PeftKeyA => PeftNames.AdapterKey(Name, "lora_A");

    /// <summary>PEFT's key for B in <c>adapter_model.safetensors</c>.</summary>
    public string PeftKeyB => PeftNames.AdapterKey(Name, "lora_B");
}

/// <summary>
/// Parameter names as PEFT writes them. PEFT wraps the HF model twice (<c>PeftModel.base_model</c> is a
/// <c>LoraModel</c> whose <c>.model</c> is the <c>MistralForCausalLM</c>), so a HF module name gets the prefix
/// <c>base_model.model.</c>; inside the wrapped Linear the factors are <c>lora_A</c>/<c>lora_B</c> ModuleDicts keyed by
/// adapter name, and the saved file drops that key (<c>.default</c>). Our module tree has the HF names, and LoraLinear's
/// children are named <c>lora_A</c>/<c>lora_B</c>, so named_parameters() gives
/// <c>model.layers.0.self_attn.q_proj.lora_A.weight</c> and the file key is
/// <c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c>.
/// </summary>
public static class PeftNames
{
    public const string Prefix = "base_model.model.";

    public static string AdapterKey(string moduleName, string factor) => $"{Prefix}{moduleName}.{factor}.weight";

    /// <summary>Our parameter name (as named_parameters() yields it) to PEFT's file key.</summary>
    public static string FromParameterName(string parameterName) => Prefix + parameterName;

    /// <summary>PEFT's file key back to our parameter name; null when the key is not PEFT's.</summary>
    public static string? ToParameterName(string peftKey) =>
        peftKey.StartsWith(Prefix, StringComparison.Ordinal) ? peftKey[Prefix.Length..] : null;
}

/// <summary>Swaps target <see cref="ModelingLinear"/> modules of a network for <see cref="LoraLinear"/> and freezes the rest.</summary>
public static class LoraInjection
{
    /// <summary>
    /// Replaces every <see cref="ModelingLinear"/> whose last name part is in <see cref="LoraOptions.TargetModules"/>
    /// (in module order, which fixes which draws of the seeded generator each A gets), quantizing its weight to NF4 when
    /// <see cref="LoraOptions.QuantizeBase"/> (the full-precision weight is then freed). Afterwards only lora_A and lora_B
    /// require grad. The parent must hold the child in a field of the child's name whose type accepts a LoraLinear
    /// (e.g. <c>nn.Module&lt;Tensor, Tensor&gt;</c>); the forward must call that field.
    /// </summary>
    public static IReadOnlyList<LoraTarget> Inject(nn.Module root, LoraOptions options)
    {
        options.Validate();
        var modules = root.named_modules().ToList();
        var byName = modules.ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        var targets = modules
            .Where(m => m.module is ModelingLinear && options.TargetModules.Contains(LastPart(m.name), StringComparer.Ordinal))
            .ToList();
        if (targets.Count == 0)
        {
            var linears = modules.Where(m => m.module is ModelingLinear).Select(m => LastPart(m.name)).Distinct();
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"no module matches the LoRA targets {string.Join(", ", options.TargetModules)}; the network's linear modules are: {string.Join(", ", linears)}");
        }
        var unknown = options.TargetModules.Where(t => !targets.Any(m => LastPart(m.name) == t)).ToList();
        if (unknown.Count > 0)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"LoRA target module(s) {string.Join(", ", unknown)} match nothing in the network");

        using var generator = new Generator((ulong)options.Seed);
        var injected = new List<LoraTarget>(targets.Count);
        foreach (var (name, module) in targets)
        {
            var linear = (ModelingLinear)module;
            var dot = name.LastIndexOf('.');
            var parent = dot < 0 ? root : byName[name[..dot]];
            var childName = name[(dot + 1)..];
            var field = FindField(parent, childName);
            LoraLinear lora;
            if (options.QuantizeBase)
                lora = LoraLinear.FromQuantized(Nf4.Quantize(linear.weight), options, generator, linear.weight.dtype);
            else
                lora = LoraLinear.FromPlain(linear.weight, options, generator);
            field.SetValue(parent, lora);
            parent.register_module(childName, null!);  // TorchSharp refuses to re-register a name: remove, then add
            parent.register_module(childName, lora);
            if (options.QuantizeBase) linear.Dispose();
            injected.Add(new LoraTarget(name, lora));
        }

        foreach (var (name, parameter) in root.named_parameters())
            parameter.requires_grad = IsLoraParameter(name);
        return injected;
    }

    /// <summary>True for the trainable parameters an injection creates.</summary>
    public static bool IsLoraParameter(string parameterName) =>
        parameterName.EndsWith(".lora_A.weight", StringComparison.Ordinal) || parameterName.EndsWith(".lora_B.weight", StringComparison.Ordinal);

    /// <summary>Whether <paramref name="parent"/>'s field <paramref name="childName"/> can hold a LoraLinear.</summary>
    public static bool CanReplace(nn.Module parent, string childName)
    {
        var field = parent.GetType().GetField(childName, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance);
        return field is not null && field.FieldType.IsAssignableFrom(typeof(LoraLinear));
    }

    private static FieldInfo FindField(nn.Module parent, string childName)
    {
        var field = parent.GetType().GetField(childName, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance);
        if (field is null || !field.FieldType.IsAssignableFrom(typeof(LoraLinear)))
            throw new InvalidOperationException(
                $"{parent.GetType().Name}.{childName} is {(field is null ? "not a field" : $"typed {field.FieldType.Name}")}; LoRA needs it " +
                "to be a field typed nn.Module<Tensor, Tensor> (and the forward to call it) so a LoraLinear can take its place");
        return field;
    }

    private static string LastPart(string name) => name[(name.LastIndexOf('.') + 1)..];
}

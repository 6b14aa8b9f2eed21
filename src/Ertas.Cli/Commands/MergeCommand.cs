using Ertas.Core;
using Ertas.Gguf;
using Ertas.Gguf.Mixes;
using Ertas.Training.Merging;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas merge</c>: base + LoRA adapter folded into one model, as GGUF (any type or mix) or a Hugging Face folder.</summary>
public sealed class MergeCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["merge"];
    public string Usage =>
        "ertas merge --model BASEDIR --adapter ADAPTERDIR --out FILE.gguf --type q8_0|f16|f32|q4_k_m|... [--name NAME] [--version SEMVER] [--threads N] [--base-weights nf4|exact] [--force]\n" +
        "       ertas merge --model BASEDIR --adapter ADAPTERDIR --format hf --out DIR [--base-weights nf4|exact] [--force]";
    public string Summary => "Merge a LoRA adapter into its base (W + alpha/r * B A) and write GGUF or a Hugging Face folder.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "The base model's Hugging Face folder the adapter was trained on.", "DIR", Required: true),
        new("--adapter", "Adapter folder (adapter_config.json, adapter_model.safetensors[, ertas_adapter.json]).", "DIR", Required: true),
        new("--out", "GGUF file, or folder with --format hf.", "PATH", Required: true),
        new("--format", "gguf (default) or hf (config.json, safetensors in the base's dtype, tokenizer files).", "FORMAT"),
        new("--type", $"GGUF type or llama.cpp mix (required for gguf): {QuantizationMixes.ValidNames}.", "TYPE"),
        new("--base-weights", "nf4: add the update to the NF4 round trip of the base (what QLoRA trained against); exact: to the " +
            "checkpoint's weights (plain LoRA). Default: from ertas_adapter.json, else nf4.", "KIND"),
        new("--name", "general.name (default: the adapter folder's name).", "NAME"),
        VersionOption.Spec,
        new("--description", "general.description of the GGUF.", "TEXT"),
        new("--license", "general.license of the GGUF (an SPDX id, e.g. apache-2.0).", "ID"),
        new("--base-model-name", "general.base_model.0.name: the model this one was fine-tuned from (not written unless given).", "NAME"),
        new("--threads", "Threads for the merge and quantization (default: all cores); the output does not depend on it.", "N"),
        new("--force", "Overwrite an existing output."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var baseFolder = args.Require("--model");
        var adapterFolder = args.Require("--adapter");
        var output = args.Require("--out");
        var format = (args.Get("--format") ?? "gguf").ToLowerInvariant();
        if (format is not ("gguf" or "hf"))
            throw new ErtasException(ErrorCode.InvalidArgument, $"--format must be gguf or hf, got '{args.Get("--format")}'");
        BaseWeights? baseWeights = args.Get("--base-weights")?.ToLowerInvariant() switch
        {
            null => null,
            "nf4" => BaseWeights.Nf4,
            "exact" => BaseWeights.Exact,
            var other => throw new ErtasException(ErrorCode.InvalidArgument, $"--base-weights must be nf4 or exact, got '{other}'"),
        };
        var version = VersionOption.Read(args);
        var threads = args.GetInt("--threads", Environment.ProcessorCount, min: 1, max: 1024);
        if (!Directory.Exists(baseFolder))
            throw new ErtasException(ErrorCode.DirectoryNotFound, $"model folder '{baseFolder}' does not exist", baseFolder);
        // Loaded through Ertas.Modeling first: set_num_threads reaches MKL, whose setup (MklCpuDispatch) must come before.
        Ertas.Modeling.Native.TorchSharpNativeFix.EnsureTorchLoaded();
        TorchSharp.torch.set_num_threads(threads);
        var progress = ProgressSinks.For(context.Error);
        var options = new MergeOptions { BaseWeights = baseWeights, Progress = progress };

        MergeResult result;
        if (format == "hf")
        {
            if (args.Has("--type"))
                throw new ErtasException(ErrorCode.InvalidArgument, "--type applies to GGUF output; a Hugging Face folder keeps the base's dtype");
            if (File.Exists(output))
                throw new ErtasException(ErrorCode.OutputExists, $"'{output}' is a file; --format hf writes a folder", output);
            if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any() && !args.Has("--force"))
                throw new ErtasException(ErrorCode.OutputExists, $"'{output}' exists and is not empty; pass --force to write into it", output);
            result = AdapterMerger.MergeToHf(baseFolder, adapterFolder, output, options, ct: context.Cancellation);
        }
        else
        {
            var type = args.Get("--type") ?? throw new ErtasException(ErrorCode.MissingArgument, "missing required option --type (TYPE) for GGUF output");
            var mix = QuantizationMixes.Parse(type);
            if (File.Exists(output) && !args.Has("--force"))
                throw new ErtasException(ErrorCode.OutputExists, $"'{output}' exists; pass --force to overwrite it", output);
            var exportOptions = new GgufExportOptions
            {
                ModelName = args.Get("--name") ?? Path.GetFileName(Path.GetFullPath(adapterFolder).TrimEnd(Path.DirectorySeparatorChar)),
                Version = version,
                Description = args.Get("--description"),
                License = args.Get("--license"),
                BaseModelName = args.Get("--base-model-name"),
                Threads = threads,
            };
            result = AdapterMerger.MergeToGguf(baseFolder, adapterFolder, output, mix, options, exportOptions, context.Cancellation);
        }
        context.Error.WriteLine($"merge: wrote {output} ({result.OutputBytes / 1e6:F1} MB, {result.MergedModules} modules merged into the " +
            $"{result.BaseWeights.ToString().ToLowerInvariant()} base) in {result.Elapsed.TotalSeconds:F1} s");
        return 0;
    }
}

using System.Diagnostics;
using Ertas.Core;
using Ertas.Gguf.Adapters;
using Ertas.Mistral;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas adapter export</c>: a PEFT LoRA adapter folder to a llama.cpp LoRA GGUF (<c>--lora</c>, Ollama <c>ADAPTER</c>).</summary>
public sealed class AdapterExportCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["adapter", "export"];
    public string Usage => "ertas adapter export --model BASEDIR --adapter ADAPTERDIR --out FILE.gguf [--name NAME] [--version SEMVER] [--force]";
    public string Summary => "Convert a LoRA adapter (PEFT folder) to a GGUF adapter llama.cpp and Ollama apply to the base GGUF.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "The base model's Hugging Face folder (its config.json fixes the shapes the adapter must fit).", "DIR", Required: true),
        new("--adapter", "Adapter folder (adapter_config.json, adapter_model.safetensors), as ertas train writes it.", "DIR", Required: true),
        new("--out", "GGUF adapter file to write.", "FILE", Required: true),
        new("--name", "general.name (default: the adapter folder's name).", "NAME"),
        VersionOption.Spec,
        new("--force", "Overwrite an existing output file."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var baseFolder = args.Require("--model");
        var adapterFolder = args.Require("--adapter");
        var output = args.Require("--out");
        if (File.Exists(output) && !args.Has("--force"))
            throw new ErtasException(ErrorCode.OutputExists, $"'{output}' exists; pass --force to overwrite it", output);
        if (!Directory.Exists(baseFolder))
            throw new ErtasException(ErrorCode.DirectoryNotFound, $"model folder '{baseFolder}' does not exist", baseFolder);
        var clock = Stopwatch.StartNew();
        var config = MistralConfig.Load(baseFolder);
        using var adapter = PeftAdapter.Open(adapterFolder);
        adapter.VerifyBase(config, Path.GetFullPath(baseFolder));
        var options = new LoraGgufOptions
        {
            Name = args.Get("--name") ?? Path.GetFileName(adapter.Folder.TrimEnd(Path.DirectorySeparatorChar)),
            Version = VersionOption.Read(args),
            Progress = ProgressSinks.For(context.Error),
        };
        LoraGgufExporter.Export(adapter, config, output, options, context.Cancellation);
        context.Error.WriteLine($"adapter export: wrote {output} ({new FileInfo(output).Length / 1e6:F2} MB, {adapter.Modules.Count} modules, " +
            $"r {adapter.Rank}, alpha {adapter.Alpha}) in {clock.Elapsed.TotalSeconds:F1} s; use it with the base GGUF: llama-cli -m base.gguf --lora {Path.GetFileName(output)}");
        return 0;
    }
}

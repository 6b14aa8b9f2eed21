using System.Diagnostics;
using Ertas.Core;
using Ertas.Gguf;
using Ertas.Gguf.Mixes;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Tokenization;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas export</c>: an HF Mistral folder to a GGUF file llama.cpp and Ollama load.</summary>
public sealed class ExportCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["export"];
    public string Usage => "ertas export --model DIR --out FILE.gguf --type f32|f16|bf16|q8_0|q4_k_m|... [--threads N] [--name NAME] [--force]";
    public string Summary => "Convert a Hugging Face Mistral folder to GGUF (streaming, one tensor in memory at a time).";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "Hugging Face Mistral checkpoint folder (config.json, safetensors, tokenizer.model).", "DIR", Required: true),
        new("--out", "GGUF file to write.", "FILE", Required: true),
        new("--type", $"f32, f16, bf16 (2-D weights; norms stay f32) or a llama.cpp quantization mix, quantized straight from the checkpoint: {QuantizationMixes.ValidNames}.", "TYPE", Required: true),
        new("--threads", "Threads quantizing each tensor (default: all cores); the output does not depend on it.", "N"),
        new("--name", "general.name (default: the folder's name).", "NAME"),
        new("--force", "Overwrite an existing output file."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var folder = args.Require("--model");
        var output = args.Require("--out");
        var mix = QuantizationMixes.Parse(args.Require("--type"));
        if (File.Exists(output) && !args.Has("--force"))
            throw new ErtasException(ErrorCode.OutputExists, $"'{output}' exists; pass --force to overwrite it", output);
        if (!Directory.Exists(folder))
            throw new ErtasException(ErrorCode.DirectoryNotFound, $"model folder '{folder}' does not exist", folder);
        using var checkpoint = HfCheckpoint.Open(folder);
        var tokenizerPath = checkpoint.TokenizerPath
            ?? throw new ErtasException(ErrorCode.TokenizerMissing,
                "the checkpoint folder has no tokenizer.model; GGUF needs the vocabulary", Path.Combine(folder, "tokenizer.model"));
        var tokenizer = MistralTokenizer.Load(tokenizerPath);
        if (tokenizer.VocabSize != checkpoint.Config.VocabSize)
            throw new ErtasException(ErrorCode.TokenizerVocabMismatch,
                $"tokenizer.model has {tokenizer.VocabSize} pieces but config.json says vocab_size {checkpoint.Config.VocabSize}; use the tokenizer the model was trained with",
                tokenizerPath);
        var clock = Stopwatch.StartNew();
        var options = new GgufExportOptions
        {
            ModelName = args.Get("--name") ?? Path.GetFileName(Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar)),
            Progress = ProgressSinks.For(context.Error),
            Threads = args.GetInt("--threads", Environment.ProcessorCount, min: 1, max: 1024),
        };
        GgufExporter.Export(checkpoint.Config, checkpoint, TokenizerVocabularies.FromTokenizer(tokenizer), output, mix, options, context.Cancellation);
        context.Error.WriteLine($"export: wrote {output} ({new FileInfo(output).Length / 1e6:F1} MB, {mix}) in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }
}

using System.Diagnostics;
using Ertas.Core;
using Ertas.Gguf;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Tokenization;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas export</c>: an HF Mistral folder to a GGUF file llama.cpp and Ollama load.</summary>
public sealed class ExportCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["export"];
    public string Usage => "ertas export --model DIR --out FILE.gguf --type f32|f16|bf16 [--name NAME] [--force]";
    public string Summary => "Convert a Hugging Face Mistral folder to GGUF (streaming, one tensor in memory at a time).";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "Hugging Face Mistral checkpoint folder (config.json, safetensors, tokenizer.model).", "DIR", Required: true),
        new("--out", "GGUF file to write.", "FILE", Required: true),
        new("--type", "Tensor type for 2-D weights: f32, f16 or bf16 (norms stay f32).", "TYPE", Required: true),
        new("--name", "general.name (default: the folder's name).", "NAME"),
        new("--force", "Overwrite an existing output file."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var folder = args.Require("--model");
        var output = args.Require("--out");
        var type = ParseType(args.Require("--type"));
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
            Progress = new TextProgressSink(context.Error),
        };
        GgufExporter.Export(checkpoint.Config, checkpoint, TokenizerVocabularies.FromTokenizer(tokenizer), output, type, options, context.Cancellation);
        context.Error.WriteLine($"export: wrote {output} ({new FileInfo(output).Length / 1e6:F1} MB, {type}) in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    public static GgmlType ParseType(string text)
    {
        foreach (var type in GgufExporter.SupportedTypes)
            if (string.Equals(type.ToString(), text, StringComparison.OrdinalIgnoreCase))
                return type;
        throw new ErtasException(ErrorCode.InvalidArgument,
            $"unknown --type '{text}'; valid types: {string.Join(", ", GgufExporter.SupportedTypes.Select(t => t.ToString().ToLowerInvariant()))}");
    }
}

using System.Diagnostics;
using Ertas.Core;
using Ertas.Mistral.Presets;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas base create</c>: a complete HF Mistral folder with seeded random weights.</summary>
public sealed class BaseCreateCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["base", "create"];
    public string Usage => "ertas base create --preset tiny|100m|7b|7b-v3 --out DIR [--seed N] [--tokenizer PATH] [shape options]";
    public string Summary => "Write a Hugging Face Mistral folder (config.json, model.safetensors, tokenizer.model) with seeded random weights.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--preset", "tiny (a few million parameters), 100m (124.7M, for training-speed benchmarks, bf16), 7b (Mistral 7B v0.1 shapes, bf16) or 7b-v3 (Mistral 7B v0.3: vocab 32768 with v3's control tokens, rope_theta 1e6, no sliding window).", "NAME", Required: true),
        new("--out", "Folder to write; must be empty or absent unless --force.", "DIR", Required: true),
        new("--seed", "Random seed; same arguments and seed give the same bytes (default 1).", "N"),
        new("--tokenizer", "Use this SentencePiece tokenizer.model instead of training the built-in vocabulary.", "PATH"),
        new("--hidden-size", "Override hidden_size.", "H"),
        new("--intermediate-size", "Override intermediate_size.", "I"),
        new("--layers", "Override num_hidden_layers.", "L"),
        new("--heads", "Override num_attention_heads.", "Q"),
        new("--kv-heads", "Override num_key_value_heads.", "K"),
        new("--vocab-size", "Vocabulary size of the built-in tokenizer (must equal the tokenizer's with --tokenizer).", "V"),
        new("--sliding-window", "Sliding attention window in tokens, or 'none' for full attention.", "W|none"),
        new("--force", "Replace the contents of a non-empty --out folder."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var output = args.Require("--out");
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any() && !args.Has("--force"))
            throw new ErtasException(ErrorCode.OutputExists,
                $"'{output}' is not empty; choose another --out or pass --force to replace it", output);
        var tokenizer = args.Get("--tokenizer");
        if (tokenizer is not null && !File.Exists(tokenizer))
            throw new ErtasException(ErrorCode.TokenizerMissing, $"tokenizer file '{tokenizer}' does not exist", tokenizer);
        var window = args.Get("--sliding-window");
        var request = new BaseModelRequest
        {
            Preset = args.Require("--preset"),
            Seed = args.GetUInt64("--seed", 1),
            TokenizerPath = tokenizer,
            HiddenSize = args.GetIntOrNull("--hidden-size", 1),
            IntermediateSize = args.GetIntOrNull("--intermediate-size", 1),
            Layers = args.GetIntOrNull("--layers", 1),
            Heads = args.GetIntOrNull("--heads", 1),
            KvHeads = args.GetIntOrNull("--kv-heads", 1),
            VocabSize = args.GetIntOrNull("--vocab-size", 260),
            SlidingWindowGiven = window is not null,
            SlidingWindow = window is null || window.Equals("none", StringComparison.OrdinalIgnoreCase)
                ? null
                : args.GetIntOrNull("--sliding-window", 1),
        };
        var clock = Stopwatch.StartNew();
        var config = BaseModelFactory.Create(request, output, new TextProgressSink(context.Error), context.Cancellation);
        context.Error.WriteLine(
            $"base create: wrote {output} (hidden {config.HiddenSize}, layers {config.NumHiddenLayers}, heads {config.NumAttentionHeads}/{config.NumKeyValueHeads}, vocab {config.VocabSize}) in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }
}

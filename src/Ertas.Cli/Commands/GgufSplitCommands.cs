using System.Globalization;
using Ertas.Core;
using Ertas.Gguf;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas gguf split</c>: llama.cpp's split format, for release assets under GitHub's 2 GiB limit.</summary>
public sealed class GgufSplitCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["gguf", "split"];
    public string Usage => "ertas gguf split IN.gguf OUT_PREFIX [--max-size 2000M] [--force]";
    public string Summary => "Split a GGUF into llama.cpp's NAME-0000i-of-0000N.gguf shards (llama.cpp loads them from the first).";
    public int MaxPositionals => 2;
    public string PositionalsName => "IN.gguf OUT_PREFIX";
    public string PositionalsHelp => "The GGUF to split, and the shards' path prefix (OUT_PREFIX-00001-of-00003.gguf ...).";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--max-size", "Most tensor data per shard: bytes, or with K, M, G (decimal; default 2000M, under GitHub's 2 GiB asset limit).", "SIZE"),
        new("--force", "Overwrite existing shards."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        if (args.Positionals.Count < 2)
            throw new ErtasException(ErrorCode.MissingArgument, "give the input GGUF and the output prefix: ertas gguf split IN.gguf OUT_PREFIX");
        var maxSize = args.Get("--max-size") is { } text ? ParseSize(text) : GgufSplit.DefaultMaxShardBytes;
        var shards = GgufSplit.Split(args.Positionals[0], args.Positionals[1], maxSize, args.Has("--force"),
            ProgressSinks.For(context.Error), context.Cancellation);
        context.Error.WriteLine($"gguf split: {shards.Count} shard(s); llama.cpp loads them from {shards[0]}; ertas gguf merge joins them for Ollama");
        return 0;
    }

    internal static long ParseSize(string text)
    {
        var t = text.Trim().ToUpperInvariant();
        long unit = t.EndsWith('K') ? 1_000 : t.EndsWith('M') ? 1_000_000 : t.EndsWith('G') ? 1_000_000_000 : 1;
        var number = unit == 1 ? t : t[..^1];
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !(value > 0) || value * unit > long.MaxValue)
            throw new ErtasException(ErrorCode.InvalidArgument, $"--max-size expects a size such as 2000M, 1.5G or 500000000, got '{text}'");
        return (long)(value * unit);
    }
}

/// <summary><c>ertas gguf merge</c>: split shards back into one GGUF (byte for byte the file that was split).</summary>
public sealed class GgufMergeCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["gguf", "merge"];
    public string Usage => "ertas gguf merge FIRST-00001-of-0000N.gguf OUT.gguf [--force]";
    public string Summary => "Join split GGUF shards into one file (Ollama cannot import split GGUFs).";
    public int MaxPositionals => 2;
    public string PositionalsName => "FIRST_SHARD OUT.gguf";
    public string PositionalsHelp => "The first shard (NAME-00001-of-0000N.gguf; the others are found beside it), and the GGUF to write.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--force", "Overwrite an existing output file."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        if (args.Positionals.Count < 2)
            throw new ErtasException(ErrorCode.MissingArgument, "give the first shard and the output: ertas gguf merge NAME-00001-of-0000N.gguf OUT.gguf");
        GgufSplit.Merge(args.Positionals[0], args.Positionals[1], args.Has("--force"), ProgressSinks.For(context.Error), context.Cancellation);
        context.Error.WriteLine($"gguf merge: wrote {args.Positionals[1]} ({new FileInfo(args.Positionals[1]).Length / 1e6:F1} MB)");
        return 0;
    }
}

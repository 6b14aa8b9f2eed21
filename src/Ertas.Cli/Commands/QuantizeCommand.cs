using Ertas.Core;
using Ertas.Gguf.Mixes;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas quantize</c>: an F32/F16/BF16 GGUF to one of llama.cpp's quantization mixes, as llama-quantize writes it.</summary>
public sealed class QuantizeCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["quantize"];
    public string Usage => "ertas quantize IN.gguf OUT.gguf --type Q4_K_M [--threads N] [--force]";
    public string Summary => "Quantize an F32/F16/BF16 GGUF with llama.cpp's mixes, byte for byte as llama-quantize does.";
    public int MaxPositionals => 2;
    public string PositionalsName => "IN.gguf OUT.gguf";
    public string PositionalsHelp => "The F32/F16/BF16 GGUF to read and the GGUF to write.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--type", $"Mix, any case: {QuantizationMixes.ValidNames}.", "TYPE", Required: true),
        new("--threads", "Threads quantizing each tensor (default: all cores); the output does not depend on it.", "N"),
        new("--force", "Overwrite an existing output file."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        if (args.Positionals.Count < 2)
            throw new ErtasException(ErrorCode.MissingArgument, "give the input and the output file: ertas quantize IN.gguf OUT.gguf --type Q4_K_M");
        var (input, output) = (args.Positionals[0], args.Positionals[1]);
        var mix = QuantizationMixes.Parse(args.Require("--type"));
        var options = new GgufQuantizeOptions
        {
            Threads = args.GetInt("--threads", Environment.ProcessorCount, min: 1, max: 1024),
            Overwrite = args.Has("--force"),
            Progress = ProgressSinks.For(context.Error),
        };
        var result = GgufQuantizer.Quantize(input, output, mix, options, context.Cancellation);
        context.Error.WriteLine(
            $"quantize: wrote {output} ({new FileInfo(output).Length / 1e6:F1} MB, {mix}, {result.BitsPerWeight:F2} bits per weight) in {result.Elapsed.TotalSeconds:F1} s");
        return 0;
    }
}

using System.Globalization;
using Ertas.Core;
using Ertas.Data;
using Ertas.Eval;
using Ertas.Mistral.Templates;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas eval</c>: score suites on GGUF files through llama.cpp, snapshot the results and apply the gate.</summary>
public sealed class EvalCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["eval"];
    public string Usage => "ertas eval --model FILE.gguf [--model ...] --suite FILE.jsonl [--suite ...] --name NAME [--snapshots DIR] [--out DIR] [settings]";
    public string Summary => "Score eval suites on GGUF models through llama.cpp; compare with the committed baseline snapshots and gate regressions.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "A GGUF to score (repeatable): one snapshot per quantization, named by the file's .QUANT.gguf suffix.", "FILE", Required: true, Repeatable: true),
        new("--suite", "An eval suite, JSON Lines, one case per line (repeatable; ids unique across suites).", "FILE", Required: true, Repeatable: true),
        new("--name", "The model's name: snapshots are NAME.QUANT.verified.json.", "NAME", Required: true),
        new("--snapshots", "Folder of the verified (committed) and received snapshots (default: evals).", "DIR"),
        new("--out", "Folder for report.md, report.html and the result cache (default: obj/ertas/evals).", "DIR"),
        new("--template", $"Chat template for chat cases (default {ChatTemplates.AutoName}).", "NAME"),
        new("--context", "llama.cpp context size for every case (default 2048).", "N"),
        new("--batch", "llama.cpp batch size (default: the context size).", "N"),
        new("--threads", "llama.cpp threads (default 4); part of the snapshot's decode settings.", "N"),
        new("--max-tokens", "Tokens to generate when a case sets no max_tokens (default 64).", "N"),
        new("--max-new-failures", "Non-critical cases that may go from pass to fail before the gate fails (default 0).", "N"),
        new("--min-pass-rate", "The least pass rate, 0..1 (default 0).", "X"),
        new("--rule", "A metric limit, e.g. acc_norm:max_drop=0.02 or target_nll:max_increase=0.1 (repeatable).", "RULE", Repeatable: true),
        new("--ci", "Running on CI: never write a verified snapshot (also when the CI environment variable is true)."),
        new("--project", "Project file that errors belonging to no case point at.", "FILE"),
        new("--metrics", "Training metrics.jsonl, for the loss curve in report.html.", "FILE"),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var contextSize = args.GetInt("--context", 2048, min: 16, max: 1 << 20);
        var settings = new DecodeSettings(
            contextSize,
            args.GetInt("--batch", contextSize, min: 1, max: contextSize),
            args.GetInt("--threads", 4, min: 1, max: 1024),
            args.GetInt("--max-tokens", 64, min: 1, max: 1 << 20));
        // The whole prompt goes in one batch (one fresh context per case): a smaller batch would change the logits.
        if (settings.BatchSize < settings.ContextSize)
            throw new ErtasException(ErrorCode.InvalidArgument, "--batch must equal --context: each case's prompt is decoded as one batch");
        var minPassRate = MinPassRate(args);
        var options = new EvalRunOptions
        {
            Models = args.GetAll("--model"),
            Suites = args.GetAll("--suite"),
            ModelName = args.Require("--name"),
            SnapshotDirectory = args.Get("--snapshots") ?? "evals",
            OutputDirectory = args.Get("--out") ?? Path.Combine("obj", "ertas", "evals"),
            Template = args.Get("--template") ?? ChatTemplates.AutoName,
            Decode = settings,
            Gate = new GateOptions(
                args.GetInt("--max-new-failures", 0, min: 0),
                minPassRate,
                args.GetAll("--rule").Select(EvalRule.Parse).ToList(),
                args.Has("--ci") || ContinuousIntegration.IsDetected()),
            ProjectFile = args.Get("--project"),
            TrainingMetrics = args.Get("--metrics"),
            Progress = ProgressSinks.For(context.Error),
        };
        var result = EvalRun.Run(options, context.Cancellation);
        foreach (var message in result.Messages)
            context.Error.WriteLine(message);
        foreach (var diagnostic in result.Diagnostics)
            context.Error.WriteLine(diagnostic.ToDiagnostic());
        if (result.Report is { } report)
            context.Out.WriteLine($"eval-verdict={(result.Failed ? "fail" : report.VerdictWord)}");
        return result.Failed ? (int)ExitCode.Failure : 0;
    }

    internal static double MinPassRate(ParsedArgs args)
    {
        if (args.Get("--min-pass-rate") is not { } text)
            return 0;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var rate) || !(rate is >= 0 and <= 1))
            throw new ErtasException(ErrorCode.InvalidArgument, $"--min-pass-rate expects a number between 0 and 1, got '{text}'");
        return rate;
    }
}

/// <summary><c>ertas eval accept</c>: received snapshots become the verified baseline.</summary>
public sealed class EvalAcceptCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["eval", "accept"];
    public string Usage => "ertas eval accept [DIR] [--name NAME] [--quantization Q4_K_M]";
    public string Summary => "Move received eval snapshots over the verified ones (the new baseline to commit).";
    public int MaxPositionals => 1;
    public string PositionalsName => "DIR";
    public string PositionalsHelp => "The snapshots folder (default: evals).";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--name", "Accept only this model's snapshots (NAME.*.received.json).", "NAME"),
        new("--quantization", "Accept only this quantization's snapshots.", "QUANT"),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var directory = args.Positionals.Count > 0 ? args.Positionals[0] : "evals";
        var accepted = EvalRun.Accept(directory, args.Get("--name"), args.Get("--quantization"));
        if (accepted.Count == 0 && args.Get("--quantization") is { } quantization)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"no received snapshot for {quantization} in {directory}: is the name right (one of the model's quantizations), and did a build write one?");
        if (accepted.Count == 0)
            context.Error.WriteLine($"eval accept: nothing to accept in {directory} (no *.received.json)");
        foreach (var file in accepted)
            context.Error.WriteLine($"eval accept: {file}");
        return 0;
    }
}

/// <summary><c>ertas eval compare</c>: the report for two snapshot files (e.g. the merge base's and the head's).</summary>
public sealed class EvalCompareCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["eval", "compare"];
    public string Usage => "ertas eval compare BASELINE.json NOW.json [--format md|html] [--out FILE] [--max-new-failures N] [--min-pass-rate X] [--rule RULE]";
    public string Summary => "Write the eval report (Markdown or HTML) comparing two snapshot files.";
    public int MaxPositionals => 2;
    public string PositionalsName => "BASELINE.json NOW.json";
    public string PositionalsHelp => "The baseline snapshot and the new one.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--format", "md (default) or html.", "FORMAT"),
        new("--out", "File to write (default: standard output).", "FILE"),
        new("--max-new-failures", "As for ertas eval (default 0).", "N"),
        new("--min-pass-rate", "As for ertas eval (default 0).", "X"),
        new("--rule", "As for ertas eval (repeatable).", "RULE", Repeatable: true),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        if (args.Positionals.Count < 2)
            throw new ErtasException(ErrorCode.MissingArgument, "give the baseline and the new snapshot: ertas eval compare BASELINE.json NOW.json");
        var format = (args.Get("--format") ?? "md").ToLowerInvariant();
        if (format is not ("md" or "html"))
            throw new ErtasException(ErrorCode.InvalidArgument, $"--format must be md or html, got '{format}'");
        foreach (var path in args.Positionals)
            if (!File.Exists(path))
                throw new ErtasException(ErrorCode.FileNotFound, "snapshot file not found", path);
        var baseline = EvalSnapshot.Read(args.Positionals[0]);
        var now = EvalSnapshot.Read(args.Positionals[1]);
        var minPassRate = EvalCommand.MinPassRate(args);
        var comparison = EvalGate.Compare(baseline, now, new GateOptions(
            args.GetInt("--max-new-failures", 0, min: 0), minPassRate, args.GetAll("--rule").Select(EvalRule.Parse).ToList()));
        var report = new EvalReport(now.Model, [comparison]);
        var text = format == "html" ? EvalHtml.Render(report) : EvalMarkdown.Render(report);
        if (args.Get("--out") is { } output)
            AtomicFile.WriteAllText(output, text);
        else
            context.Out.Write(text);
        return 0;
    }
}

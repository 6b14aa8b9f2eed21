using System.Globalization;
using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using Ertas.Training;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas train</c>: JSONL in, a PEFT LoRA adapter folder (and metrics.jsonl, loss.svg, checkpoints) out;
/// settings from the command line and/or a <c>--config</c> train.json.</summary>
public sealed class TrainCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["train"];
    public string Usage => "ertas train --model DIR --data FILE.jsonl [--data ...] --out DIR [options]  |  ertas train --config train.json [options]";
    public string Summary => "QLoRA-train an adapter on JSONL data; writes adapter_config.json, adapter_model.safetensors, metrics.jsonl and loss.svg.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "The base model: a Hugging Face Mistral folder (with tokenizer.model). Required, here or in --config.", "DIR"),
        new("--data", "A JSONL dataset (chat, ShareGPT, Alpaca or completion); repeat for several. Required, here or in --config.", "FILE", Repeatable: true),
        new("--out", "Output folder for the adapter, metrics.jsonl, loss.svg and checkpoints/. Required, here or in --config.", "DIR"),
        new("--config", "A train.json: an object whose keys are these option names without dashes (\"rank\": 16, \"data\": [\"a.jsonl\"]); paths in it are relative to its folder; options given here override it.", "FILE"),
        new("--rank", "LoRA rank r (default 16).", "R"),
        new("--alpha", "LoRA alpha; the update is scaled by alpha / r (default 16).", "A"),
        new("--dropout", "LoRA dropout in [0, 1) (default 0.05).", "P"),
        new("--targets", "Comma-separated projections to adapt (default all seven: q,k,v,o,gate,up,down _proj).", "LIST"),
        new("--no-quantize", "Keep the base weights as loaded (plain LoRA) instead of NF4 (QLoRA)."),
        new("--lr", "Peak learning rate (default 2e-4).", "LR"),
        new("--scheduler", "constant, linear or cosine (default cosine).", "KIND"),
        new("--warmup-steps", "Warmup optimizer steps (default 0).", "N"),
        new("--warmup-ratio", "Warmup as a fraction of all steps, when --warmup-steps is 0 (default 0).", "F"),
        new("--weight-decay", "AdamW weight decay (default 0).", "F"),
        new("--max-grad-norm", "Gradient-norm clip, 0 = off (default 1.0).", "F"),
        new("--epochs", "Passes over the training rows (default 1).", "N"),
        new("--max-steps", "Optimizer steps to run; overrides --epochs (default: from epochs).", "N"),
        new("--batch-size", "Packed rows per micro-batch (default 1).", "N"),
        new("--grad-accum", "Micro-batches per optimizer step (default 1).", "N"),
        new("--seq-len", "Packed row length in tokens (default 2048).", "N"),
        new("--template", $"Chat template that turns conversations into ids: {string.Join(", ", ChatTemplates.Names)} (default {ChatTemplates.AutoName}).", "NAME"),
        new("--seed", "Seed for LoRA init, dropout, shuffling and the split (default 42).", "N"),
        new("--compute", "Compute type of the frozen base: f32 (default) or bf16; LoRA weights are float32 either way.", "TYPE"),
        new("--eval-every", "Eval loss every N optimizer steps (default: after the last only).", "N"),
        new("--eval-fraction", "Fraction of examples held out for eval, in [0, 1) (default 0).", "F"),
        new("--eval-data", "A JSONL dataset used only for eval loss, instead of --eval-fraction; repeat for several.", "FILE", Repeatable: true),
        new("--gradient-checkpointing", "Recompute each layer in backward (less memory, one extra forward)."),
        new("--train-on-prompt", "Train on every token, not only the assistant answers."),
        new("--cache-dir", "Where prepared datasets are cached (default OUT/.dataset-cache).", "DIR"),
        new("--device", "auto (default: cuda when available, else cpu), cpu or cuda (an error when no CUDA device is available).", "DEVICE"),
        new("--checkpoint-every", "Write OUT/checkpoints/step-N (adapter, optimizer, RNG and data position) every N optimizer steps (default 0: off).", "N"),
        new("--keep-checkpoints", "How many of the newest checkpoints to keep (default 2).", "K"),
        new("--resume", "Continue from a checkpoint: a step folder, 'latest' for the newest complete one under OUT/checkpoints, or 'auto' (latest when there is one, else start afresh). The settings and data must match the checkpoint's; the adapter comes out identical to an uninterrupted run's.", "DIR|latest|auto"),
    ];

    /// <summary>What each option takes in a --config file (keys are the names without dashes).</summary>
    private static readonly IReadOnlyDictionary<string, ConfigValueKind> ConfigSchema = new Dictionary<string, ConfigValueKind>(StringComparer.Ordinal)
    {
        ["model"] = ConfigValueKind.Path, ["data"] = ConfigValueKind.PathList, ["out"] = ConfigValueKind.Path,
        ["rank"] = ConfigValueKind.Integer, ["alpha"] = ConfigValueKind.Number, ["dropout"] = ConfigValueKind.Number,
        ["targets"] = ConfigValueKind.TextList, ["no-quantize"] = ConfigValueKind.Flag, ["lr"] = ConfigValueKind.Number,
        ["scheduler"] = ConfigValueKind.Text, ["warmup-steps"] = ConfigValueKind.Integer, ["warmup-ratio"] = ConfigValueKind.Number,
        ["weight-decay"] = ConfigValueKind.Number, ["max-grad-norm"] = ConfigValueKind.Number, ["epochs"] = ConfigValueKind.Integer,
        ["max-steps"] = ConfigValueKind.Integer, ["batch-size"] = ConfigValueKind.Integer, ["grad-accum"] = ConfigValueKind.Integer,
        ["seq-len"] = ConfigValueKind.Integer, ["template"] = ConfigValueKind.Text, ["seed"] = ConfigValueKind.Integer, ["compute"] = ConfigValueKind.Text,
        ["eval-every"] = ConfigValueKind.Integer, ["eval-fraction"] = ConfigValueKind.Number, ["eval-data"] = ConfigValueKind.PathList,
        ["gradient-checkpointing"] = ConfigValueKind.Flag, ["train-on-prompt"] = ConfigValueKind.Flag, ["cache-dir"] = ConfigValueKind.Path,
        ["device"] = ConfigValueKind.Text, ["checkpoint-every"] = ConfigValueKind.Integer, ["keep-checkpoints"] = ConfigValueKind.Integer,
        ["resume"] = ConfigValueKind.PathOrLatest,
    };

    public int Run(ParsedArgs commandLine, CliContext context)
    {
        var (args, config) = WithConfig(commandLine);
        TrainingOptions options;
        PreparationOptions preparation;
        CheckpointPolicy checkpoints;
        string modelFolder, output;
        IReadOnlyList<string> dataFiles, evalFiles;
        try
        {
            modelFolder = Required(args, "--model");
            dataFiles = args.GetAll("--data").Count > 0 ? args.GetAll("--data") : [Required(args, "--data")];
            output = Required(args, "--out");
            options = ReadOptions(args);
            preparation = ReadPreparation(args, options);
            evalFiles = args.GetAll("--eval-data");
            if (evalFiles.Count > 0 && preparation.EvalFraction > 0)
                throw new ErtasException(ErrorCode.InvalidArgument, "give --eval-data or --eval-fraction, not both");
            checkpoints = new CheckpointPolicy
            {
                Every = args.GetInt("--checkpoint-every", 0, min: 0),
                Keep = args.GetInt("--keep-checkpoints", 2, min: 1),
                Resume = ResumeFrom(args.Get("--resume"), output),
            };
        }
        catch (ErtasException e) when (config is not null && ConfigEntryBehind(e, commandLine, config) is { } entry)
        {
            throw new ErtasException(ErrorCode.TrainingConfigInvalid, $"\"{entry.Key}\": {e.Message}", config.FilePath, entry.Line, entry.Column, e);
        }
        options.ResolveDevice(); // an unavailable --device fails here, before data preparation

        string tokenizerPath;
        using (var checkpoint = HfCheckpoint.Open(modelFolder))
            tokenizerPath = checkpoint.TokenizerPath
                ?? throw new ErtasException(ErrorCode.TokenizerMissing, "the model folder has no tokenizer.model", Path.Combine(modelFolder, "tokenizer.model"));
        var tokenizer = MistralTokenizer.Load(tokenizerPath);
        var progress = ProgressSinks.For(context.Error);
        if (config is not null) progress.Report($"train: settings from {config.FilePath} ({config.Entries.Count} keys), command-line options override them");
        var tokenizerBytes = File.ReadAllBytes(tokenizerPath);
        var cacheDir = args.Get("--cache-dir") ?? Path.Combine(output, ".dataset-cache");
        var data = DatasetPreparer.Prepare(dataFiles, tokenizer, tokenizerBytes, preparation, cacheDir, progress, context.Cancellation);
        if (evalFiles.Count > 0)
        {
            // Prepared like training data (validated, templated, packed, cached by content); all of it is the eval split.
            var held = DatasetPreparer.Prepare(evalFiles, tokenizer, tokenizerBytes, preparation, cacheDir, progress, context.Cancellation);
            data = data with { Eval = held.Train, Warnings = [.. data.Warnings, .. held.Warnings] };
        }
        Trainer.Run(modelFolder, data, output, options, checkpoints, progress, context.Cancellation);
        return 0;
    }

    /// <summary>The command line with --config's settings added under it: a key the command line also gives is ignored
    /// (for --data, the whole list), so explicit options win. The file's schema already fixed each value's shape.</summary>
    private (ParsedArgs Args, TrainingConfigFile? Config) WithConfig(ParsedArgs commandLine)
    {
        if (commandLine.Get("--config") is not { } path) return (commandLine, null);
        var config = TrainingConfigFile.Read(path, ConfigSchema);
        var values = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        foreach (var spec in Options.Where(o => o.Name != "--config"))
        {
            // A flag set to false in the file has no values, so it stays off.
            var given = commandLine.Has(spec.Name) ? commandLine.GetAll(spec.Name) : config.Find(spec.Name[2..])?.Values ?? [];
            if (given.Count > 0)
                values[spec.Name] = given;
        }
        return (new ParsedArgs(values, []), config);
    }

    /// <summary>The config entry an option error is about: the error names the option, and the value came from the file.</summary>
    private static TrainingConfigEntry? ConfigEntryBehind(ErtasException error, ParsedArgs commandLine, TrainingConfigFile config) =>
        error.Code is ErrorCode.InvalidArgument or ErrorCode.MissingArgument
            ? config.Entries.FirstOrDefault(e => !commandLine.Has("--" + e.Key) &&
                System.Text.RegularExpressions.Regex.IsMatch(error.Message, $@"--{System.Text.RegularExpressions.Regex.Escape(e.Key)}\b"))
            : null;

    /// <summary>"auto" resumes from the newest complete checkpoint under OUT/checkpoints when there is one, and starts
    /// afresh otherwise (what a build that may have been interrupted wants); anything else is as given.</summary>
    private static string? ResumeFrom(string? resume, string output) =>
        string.Equals(resume, CheckpointPolicy.Auto, StringComparison.OrdinalIgnoreCase)
            ? TrainingCheckpoint.FindLatest(Path.Combine(output, Trainer.CheckpointsFolder))
            : resume;

    /// <summary>The data settings of a run (what the prepared-data cache is keyed by besides the files and tokenizer).</summary>
    internal static PreparationOptions ReadPreparation(ParsedArgs args, TrainingOptions options)
    {
        var preparation = new PreparationOptions
        {
            SequenceLength = options.SequenceLength,
            TemplateName = TemplateName(args),
            Seed = options.Seed,
            EvalFraction = GetDouble(args, "--eval-fraction", 0),
            TrainOnPrompt = args.Has("--train-on-prompt"),
        };
        preparation.Validate();
        return preparation;
    }

    private static string TemplateName(ParsedArgs args)
    {
        var name = args.Get("--template") ?? ChatTemplates.AutoName;
        return ChatTemplates.Names.Contains(name)
            ? name
            : throw new ErtasException(ErrorCode.InvalidArgument, $"unknown --template '{name}'; valid names: {string.Join(", ", ChatTemplates.Names)}");
    }

    private static string Required(ParsedArgs args, string name) =>
        args.Get(name) ?? throw new ErtasException(ErrorCode.MissingArgument, $"missing required option {name} (give it on the command line or in --config)");

    internal static TrainingOptions ReadOptions(ParsedArgs args)
    {
        var defaults = new TrainingOptions();
        var options = new TrainingOptions
        {
            Rank = args.GetInt("--rank", defaults.Rank, min: 1),
            Alpha = GetDouble(args, "--alpha", defaults.Alpha),
            Dropout = GetDouble(args, "--dropout", defaults.Dropout),
            TargetModules = args.Get("--targets") is { } list
                ? [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)]
                : defaults.TargetModules,
            QuantizeBase = !args.Has("--no-quantize"),
            LearningRate = GetDouble(args, "--lr", defaults.LearningRate),
            Scheduler = args.Get("--scheduler")?.ToLowerInvariant() switch
            {
                null => defaults.Scheduler,
                "constant" => LrSchedulerKind.Constant,
                "linear" => LrSchedulerKind.Linear,
                "cosine" => LrSchedulerKind.Cosine,
                var other => throw new ErtasException(ErrorCode.InvalidArgument, $"unknown --scheduler '{other}'; valid: constant, linear, cosine"),
            },
            WarmupSteps = args.GetInt("--warmup-steps", 0, min: 0),
            WarmupRatio = GetDouble(args, "--warmup-ratio", 0),
            WeightDecay = GetDouble(args, "--weight-decay", 0),
            MaxGradNorm = GetDouble(args, "--max-grad-norm", defaults.MaxGradNorm),
            Epochs = args.GetInt("--epochs", defaults.Epochs, min: 1),
            MaxSteps = args.GetInt("--max-steps", 0, min: 0),
            BatchSize = args.GetInt("--batch-size", defaults.BatchSize, min: 1),
            GradientAccumulation = args.GetInt("--grad-accum", defaults.GradientAccumulation, min: 1),
            SequenceLength = args.GetInt("--seq-len", defaults.SequenceLength, min: 2),
            Seed = args.GetUInt64("--seed", defaults.Seed),
            Compute = args.Get("--compute")?.ToLowerInvariant() switch
            {
                null or "f32" or "float32" => ComputePrecision.F32,
                "bf16" or "bfloat16" => ComputePrecision.BF16,
                var other => throw new ErtasException(ErrorCode.InvalidArgument, $"unknown --compute '{other}'; valid: f32, bf16"),
            },
            EvalEvery = args.GetInt("--eval-every", 0, min: 0),
            GradientCheckpointing = args.Has("--gradient-checkpointing"),
            Device = args.Get("--device")?.ToLowerInvariant() switch
            {
                null or "auto" => "auto",
                "cpu" => "cpu",
                "cuda" => "cuda",
                var other => throw new ErtasException(ErrorCode.InvalidArgument, $"unknown --device '{other}'; valid: cpu, cuda, auto"),
            },
        };
        options.Validate();
        return options;
    }

    internal static double GetDouble(ParsedArgs args, string name, double fallback)
    {
        if (args.Get(name) is not { } text) return fallback;
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value)
            ? value
            : throw new ErtasException(ErrorCode.InvalidArgument, $"{name} expects a number, got '{text}'");
    }
}

using System.Globalization;
using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Tokenization;
using Ertas.Training;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas train</c>: JSONL in, a PEFT LoRA adapter folder (and metrics.jsonl) out.</summary>
public sealed class TrainCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["train"];
    public string Usage => "ertas train --model DIR --data FILE.jsonl [--data ...] --out DIR [options]";
    public string Summary => "QLoRA-train an adapter on JSONL data; writes adapter_config.json, adapter_model.safetensors and metrics.jsonl.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "The base model: a Hugging Face Mistral folder (with tokenizer.model).", "DIR", Required: true),
        new("--data", "A JSONL dataset (chat, ShareGPT, Alpaca or completion); repeat for several.", "FILE", Required: true, Repeatable: true),
        new("--out", "Output folder for the adapter and metrics.jsonl.", "DIR", Required: true),
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
        new("--seed", "Seed for LoRA init, dropout, shuffling and the split (default 42).", "N"),
        new("--compute", "Compute type: f32 (default) or bf16.", "TYPE"),
        new("--eval-every", "Eval loss every N optimizer steps (default: after the last only).", "N"),
        new("--eval-fraction", "Fraction of examples held out for eval, in [0, 1) (default 0).", "F"),
        new("--gradient-checkpointing", "Recompute each layer in backward (less memory, one extra forward)."),
        new("--train-on-prompt", "Train on every token, not only the assistant answers."),
        new("--cache-dir", "Where prepared datasets are cached (default OUT/.dataset-cache).", "DIR"),
        new("--device", "cpu (default), cuda or auto.", "DEVICE"),
        new("--config", "Not yet supported: a train.json with these settings.", "FILE"),
        new("--checkpoint-every", "Not yet supported: periodic checkpoints.", "N"),
        new("--resume", "Not yet supported: resume from a checkpoint.", "DIR"),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        foreach (var unsupported in new[] { "--config", "--checkpoint-every", "--resume" })
            if (args.Has(unsupported))
                throw new ErtasException(ErrorCode.InvalidArgument, $"{unsupported} is not supported yet");
        var modelFolder = args.Require("--model");
        var output = args.Require("--out");
        var options = ReadOptions(args);
        var preparation = new PreparationOptions
        {
            SequenceLength = options.SequenceLength,
            Seed = options.Seed,
            EvalFraction = GetDouble(args, "--eval-fraction", 0),
            TrainOnPrompt = args.Has("--train-on-prompt"),
        };
        preparation.Validate();

        string tokenizerPath;
        using (var checkpoint = HfCheckpoint.Open(modelFolder))
            tokenizerPath = checkpoint.TokenizerPath
                ?? throw new ErtasException(ErrorCode.TokenizerMissing, "the model folder has no tokenizer.model", Path.Combine(modelFolder, "tokenizer.model"));
        var tokenizer = MistralTokenizer.Load(tokenizerPath);
        var progress = new TextProgressSink(context.Error);
        var data = DatasetPreparer.Prepare(args.GetAll("--data"), tokenizer, File.ReadAllBytes(tokenizerPath), preparation,
            args.Get("--cache-dir") ?? Path.Combine(output, ".dataset-cache"), progress, context.Cancellation);
        Trainer.Run(modelFolder, data, output, options, progress, context.Cancellation);
        return 0;
    }

    private static TrainingOptions ReadOptions(ParsedArgs args)
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
                null or "cpu" => "cpu",
                "cuda" => "cuda",
                "auto" => "auto",
                var other => throw new ErtasException(ErrorCode.InvalidArgument, $"unknown --device '{other}'; valid: cpu, cuda, auto"),
            },
        };
        options.Validate();
        return options;
    }

    private static double GetDouble(ParsedArgs args, string name, double fallback)
    {
        if (args.Get(name) is not { } text) return fallback;
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value)
            ? value
            : throw new ErtasException(ErrorCode.InvalidArgument, $"{name} expects a number, got '{text}'");
    }
}

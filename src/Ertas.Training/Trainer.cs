using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral;
using Ertas.Mistral.Checkpoints;
using Ertas.Modeling;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training;

/// <summary>
/// QLoRA training of a <see cref="MistralModel"/> on packed rows: the base is loaded, its target projections are
/// quantized to NF4 and wrapped with LoRA (everything else frozen), and AdamW trains the adapters on cross-entropy over
/// the rows' labels (ignore -100; the mean over every trained token of an optimizer step, whatever the micro-batch
/// split). On CPU the same options and data give the same adapter bytes.
/// </summary>
public sealed class Trainer : IDisposable
{
    public const string AdapterConfigFile = "adapter_config.json";
    public const string AdapterWeightsFile = "adapter_model.safetensors";
    public const string MetricsFile = "metrics.jsonl";
    public const string LossCurveFile = "loss.svg";
    public const string CheckpointsFolder = "checkpoints";

    private Trainer(MistralModel model, IReadOnlyList<LoraTarget> targets, TrainingOptions options, string baseModelName)
    {
        // The loader's freed blocks (staging slices, bf16 weights) were written but have none of a step's sizes: kept,
        // they would sit in RSS under the step's peak (7b preset: 5.45 -> 5.57 GB).
        TensorBlockCache.Trim();
        (Model, Targets, Options, BaseModelName) = (model, targets, options, baseModelName);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        Trainable = [.. trainable.Select(p => (Tensor)p.parameter)];
        _trainableNames = [.. trainable.Select(p => p.name)];
        _layerParameters = [.. Enumerable.Range(0, model.Config.NumHiddenLayers).Select(i =>
            (IReadOnlyList<Tensor>)[.. model.named_parameters()
                .Where(p => p.parameter.requires_grad && p.name.StartsWith($"model.layers.{i}.", StringComparison.Ordinal))
                .Select(p => (Tensor)p.parameter)])];
    }

    private readonly IReadOnlyList<Tensor>[] _layerParameters;
    private readonly string[] _trainableNames;

    public MistralModel Model { get; }
    public IReadOnlyList<LoraTarget> Targets { get; }
    public TrainingOptions Options { get; }
    public string BaseModelName { get; }

    /// <summary>The LoRA factors, in module order: the only tensors that require grad.</summary>
    public IReadOnlyList<Tensor> Trainable { get; }

    /// <summary>Loads the HF folder <paramref name="baseFolder"/> and injects LoRA (NF4 base when <see cref="TrainingOptions.QuantizeBase"/>).</summary>
    public static Trainer Load(string baseFolder, TrainingOptions options)
    {
        options.Validate();
        GlibcMalloc.KeepLargeBlocksMapped(); // freed activations must leave RSS (see GlibcMalloc)
        using var checkpoint = HfCheckpoint.Open(baseFolder);
        var device = options.Device.Equals("auto", StringComparison.OrdinalIgnoreCase) ? ModelOptions.AutoDevice() : options.Device;
        var modelOptions = new ModelOptions { DType = options.DType, Device = device };
        var baseModelName = options.BaseModelName ?? Path.GetFullPath(baseFolder);
        if (!options.QuantizeBase)
            return FromModel(MistralModel.Load(checkpoint.Config, checkpoint, modelOptions), options, baseModelName);
        // QLoRA: each projection is quantized as soon as it is read, so the full-precision base is never held whole.
        var (model, targets) = QuantizedLoading.Load(checkpoint.Config, checkpoint, modelOptions, options.ToLoraOptions());
        try
        {
            return new Trainer(model, targets, options, baseModelName);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Injects LoRA into an already loaded <paramref name="model"/>, which the trainer then owns.</summary>
    public static Trainer FromModel(MistralModel model, TrainingOptions options, string baseModelName)
    {
        options.Validate();
        try
        {
            var targets = LoraInjection.Inject(model, options.ToLoraOptions());
            return new Trainer(model, targets, options, baseModelName);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Trains on <paramref name="train"/>, evaluating on <paramref name="eval"/> (when it has rows) every
    /// <see cref="TrainingOptions.EvalEvery"/> steps and after the last. One progress line and, when
    /// <paramref name="metricsPath"/> is given, one JSON line per optimizer step.
    /// </summary>
    public TrainingResult Train(PackedSplit train, PackedSplit eval, IProgressSink progress, string? metricsPath = null,
        CancellationToken cancellationToken = default) =>
        Train(train, eval, progress, new TrainingRunSettings { MetricsPath = metricsPath }, cancellationToken);

    /// <summary>
    /// Trains as above, writing what <paramref name="run"/> asks for: metrics lines, the loss curve, a checkpoint every
    /// <see cref="CheckpointPolicy.Every"/> optimizer steps, and, with <see cref="CheckpointPolicy.Resume"/>, continuing
    /// from a checkpoint so that the adapter comes out bit for bit as an uninterrupted run's (CPU): weights, AdamW
    /// moments and step, the RNG dropout draws from, the schedule position and the data position are all restored.
    /// </summary>
    public TrainingResult Train(PackedSplit train, PackedSplit eval, IProgressSink progress, TrainingRunSettings run,
        CancellationToken cancellationToken = default)
    {
        if (train.RowCount == 0)
            throw new ErtasException(ErrorCode.DatasetNoExamples, "the training split has no rows");
        if (train.TrainedTokenCount == 0)
            throw new ErtasException(ErrorCode.DatasetNoExamples, "the training split has no trained tokens (every label is ignored)");
        var policy = run.Checkpoints;
        policy.Validate();
        var steps = PlanSteps(train.RowCount);
        var schedule = LrSchedule.Create(Options.Scheduler, Options.LearningRate, steps.Count, Options.WarmupSteps, Options.WarmupRatio);
        var checkpointing = policy.Every > 0 && run.CheckpointsFolder is not null;
        var settings = ResultAffectingSettings();
        var dataHash = checkpointing || policy.Resume is not null ? TrainingCheckpoint.HashData(train, eval) : "";
        run.Phase?.Invoke("setup");
        torch.manual_seed((long)(Options.Seed & long.MaxValue)); // dropout draws from the default generator
        using var optimizer = new AdamW(Trainable, weightDecay: Options.WeightDecay);

        var state = new RunState(steps.Count);
        if ((checkpointing || policy.Resume is not null) && Model.Device.type == DeviceType.CUDA && Options.Dropout > 0)
            progress.Report("train: note: on CUDA, dropout draws from the GPU generator, whose state TorchSharp does not expose, so a " +
                "resumed run matches an uninterrupted one only in distribution (on CPU, or with dropout 0, it matches bit for bit)");
        if (policy.Resume is { } resume)
        {
            var checkpoint = TrainingCheckpoint.Read(TrainingCheckpoint.ResolveResume(resume, run.CheckpointsFolder));
            checkpoint.EnsureMatches(settings, dataHash);
            Restore(checkpoint, optimizer, state);
            progress.Report(string.Create(CultureInfo.InvariantCulture,
                $"train: resumed from step {state.FirstStep} of {steps.Count} ({checkpoint.Folder})") +
                (checkpoint.Manifest.EngineVersion == EngineVersion ? "" : $"; written by engine {checkpoint.Manifest.EngineVersion}, this is {EngineVersion}"));
        }
        else if (checkpointing && TrainingCheckpoint.DeleteAll(run.CheckpointsFolder!) is var removed and > 0)
            progress.Report($"train: removed {removed} checkpoint(s) of an earlier run from {run.CheckpointsFolder}");

        using var metrics = run.MetricsPath is null ? null : new StreamWriter(run.MetricsPath, append: false);
        if (metrics is not null)
        {
            foreach (var line in state.MetricLines) metrics.WriteLine(line);
            metrics.Flush();
        }
        long processedThisSession = 0;
        var clock = Stopwatch.StartNew();
        Model.train();
        for (var step = state.FirstStep; step < steps.Count; step++)
        {
            var microBatches = steps[step];
            var stepTrained = microBatches.Sum(rows => CountTrained(train, rows));
            double lossSum = 0;
            foreach (var rows in microBatches)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using (var scope = NewDisposeScope())
                {
                    var (ids, labels, positions, segments) = Batch(train, rows);
                    run.Phase?.Invoke("forward");
                    using var returned = new ReturnedGradients();
                    foreach (var target in Targets) target.Module.ReturnedGradients = returned;
                    var hidden = Model.ForwardPackedHidden(ids, positions, segments, Options.GradientCheckpointing
                        ? (layer, x, index) => ActivationCheckpoint.Run(layer, x, _layerParameters[index], returned)
                        : null, returned);
                    run.Phase?.Invoke("loss");
                    // backward brings 1 / stepTrained (the division below, in float32)
                    var (summed, _) = LinearCrossEntropy.Sum(hidden, Model.OutputWeight, labels, PackedSplit.IgnoreIndex, 1f / Math.Max(1, stepTrained));
                    run.Phase?.Invoke("backward");
                    if (stepTrained > 0)
                        summed.DividedBy(stepTrained).backward();
                    lossSum += summed.item<float>();
                    foreach (var target in Targets) target.Module.ReturnedGradients = null;
                    run.Phase?.Invoke("release");
                }
                var tokens = rows.Sum(r => CountTokens(train, r));
                state.ProcessedTokens += tokens;
                processedThisSession += tokens;
            }
            var lr = schedule.At(step);
            run.Phase?.Invoke("clip");
            var gradNorm = Options.MaxGradNorm > 0 ? GradientClipping.ClipGradNorm(Trainable, Options.MaxGradNorm) : double.NaN;
            run.Phase?.Invoke("optimizer");
            optimizer.Step(lr);
            run.Phase?.Invoke("zero-grad");
            optimizer.ZeroGrad();
            run.Phase?.Invoke("between-steps");
            var loss = stepTrained > 0 ? lossSum / stepTrained : double.NaN;
            state.Losses.Add(loss);
            state.TrainedTokens += stepTrained;

            double? evalLoss = null;
            var isLast = step == steps.Count - 1;
            if (eval.RowCount > 0 && eval.TrainedTokenCount > 0 && (isLast || (Options.EvalEvery > 0 && (step + 1) % Options.EvalEvery == 0)))
            {
                evalLoss = Evaluate(eval, cancellationToken);
                state.Evals.Add((step + 1, evalLoss.Value));
            }

            var seconds = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            var tokensPerSecond = processedThisSession / seconds;
            var eta = TimeSpan.FromSeconds(seconds / (step + 1 - state.FirstStep) * (steps.Count - step - 1));
            progress.Advance(string.Create(CultureInfo.InvariantCulture,
                $"step {step + 1}/{steps.Count} loss {loss:F3} lr {lr:0.0#e+0} tok/s {tokensPerSecond:F0} ETA {eta:hh\\:mm\\:ss}") +
                (evalLoss is { } e ? string.Create(CultureInfo.InvariantCulture, $" eval_loss {e:F3}") : ""), step + 1, steps.Count);
            var metricLine = MetricsLine(step + 1, loss, lr, gradNorm, stepTrained, tokensPerSecond, evalLoss);
            state.MetricLines.Add(metricLine);
            if (metrics is not null)
            {
                metrics.WriteLine(metricLine);
                metrics.Flush();
            }
            if (checkpointing && (step + 1) % policy.Every == 0 && !isLast)
            {
                SaveCheckpoint(run.CheckpointsFolder!, policy.Keep, step + 1, schedule, optimizer, state, settings, dataHash, progress);
                if (run.LossCurvePath is not null) WriteLossCurve(run.LossCurvePath, state);
            }
        }
        Model.eval();
        if (run.LossCurvePath is not null) WriteLossCurve(run.LossCurvePath, state);
        return new TrainingResult(state.Losses, state.Evals, steps.Count, state.TrainedTokens, processedThisSession, clock.Elapsed);
    }

    /// <summary>What the loop carries from step to step, and what a checkpoint saves of it.</summary>
    private sealed class RunState(int totalSteps)
    {
        public int FirstStep;
        public long TrainedTokens, ProcessedTokens;
        public readonly List<double> Losses = new(totalSteps);
        public readonly List<(long Step, double Loss)> Evals = [];
        public readonly List<string> MetricLines = new(totalSteps);
    }

    /// <summary>The options that change what this run computes, plus the base's architecture.</summary>
    private IReadOnlyList<KeyValuePair<string, string>> ResultAffectingSettings() =>
        [.. Options.ResultAffectingSettings(), new("base_config", JsonSerializer.Serialize(Model.Config))];

    private void SaveCheckpoint(string checkpointsFolder, int keep, int step, LrSchedule schedule, AdamW optimizer, RunState state,
        IReadOnlyList<KeyValuePair<string, string>> settings, string dataHash, IProgressSink progress)
    {
        var clock = Stopwatch.StartNew();
        var manifest = new CheckpointManifest
        {
            EngineVersion = EngineVersion,
            Step = step,
            TotalSteps = schedule.TotalSteps,
            OptionsHash = TrainingCheckpoint.HashSettings(settings),
            Options = settings.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal),
            DataHash = dataHash,
            DataPosition = step,
            OptimizerStep = optimizer.StepCount,
            Scheduler = new CheckpointScheduler(schedule.Kind.ToString().ToLowerInvariant(), schedule.PeakLr, schedule.WarmupSteps, schedule.TotalSteps, step),
            TrainedTokens = state.TrainedTokens,
            ProcessedTokens = state.ProcessedTokens,
            StepLosses = [.. state.Losses],
            EvalLosses = [.. state.Evals.Select(e => new CheckpointEval(e.Step, e.Loss))],
        };
        using var rng = torch.get_rng_state();
        var rngBytes = rng.data<byte>().ToArray();
        var folder = TrainingCheckpoint.Write(checkpointsFolder, manifest, temp =>
        {
            SaveAdapter(temp);
            SaveOptimizer(Path.Combine(temp, TrainingCheckpoint.OptimizerFile), optimizer);
            File.WriteAllBytes(Path.Combine(temp, TrainingCheckpoint.RngStateFile), rngBytes);
            File.WriteAllLines(Path.Combine(temp, MetricsFile), state.MetricLines);
        }, keep);
        var bytes = Directory.GetFiles(folder).Sum(f => new FileInfo(f).Length);
        progress.Report(string.Create(CultureInfo.InvariantCulture,
            $"checkpoint: step {step} -> {folder} ({bytes / 1024.0:F0} KiB in {clock.Elapsed.TotalMilliseconds:F0} ms)"));
    }

    private void SaveOptimizer(string path, AdamW optimizer)
    {
        var entries = new List<SafeTensorEntry>(2 * _trainableNames.Length);
        for (var i = 0; i < _trainableNames.Length; i++)
        {
            entries.Add(Entry(PeftNames.FromParameterName(_trainableNames[i]) + ".exp_avg", optimizer.ExpAvg[i]));
            entries.Add(Entry(PeftNames.FromParameterName(_trainableNames[i]) + ".exp_avg_sq", optimizer.ExpAvgSq[i]));
        }
        SafeTensorsWriter.Write(path, entries, new Dictionary<string, string>
        {
            ["optimizer"] = "adamw",
            ["step"] = optimizer.StepCount.ToString(CultureInfo.InvariantCulture),
        });
    }

    private void Restore(TrainingCheckpoint checkpoint, AdamW optimizer, RunState state)
    {
        var manifest = checkpoint.Manifest;
        using (var adapter = OpenSafeTensors(checkpoint.PathOf(AdapterWeightsFile)))
        using (var noGrad = no_grad())
            foreach (var target in Targets)
            {
                CopyInto(adapter, target.PeftKeyA, target.Module.lora_A.weight);
                CopyInto(adapter, target.PeftKeyB, target.Module.lora_B.weight);
            }
        using (var moments = OpenSafeTensors(checkpoint.PathOf(TrainingCheckpoint.OptimizerFile)))
        using (var scope = NewDisposeScope())
        {
            var expAvg = new List<Tensor>();
            var expAvgSq = new List<Tensor>();
            for (var i = 0; i < _trainableNames.Length; i++)
            {
                var key = PeftNames.FromParameterName(_trainableNames[i]);
                expAvg.Add(ReadTensor(moments, key + ".exp_avg", Trainable[i].shape));
                expAvgSq.Add(ReadTensor(moments, key + ".exp_avg_sq", Trainable[i].shape));
            }
            optimizer.Restore(manifest.OptimizerStep, expAvg, expAvgSq);
        }
        var rngBytes = File.ReadAllBytes(checkpoint.PathOf(TrainingCheckpoint.RngStateFile));
        using var current = torch.get_rng_state();
        if (rngBytes.Length != current.shape[0])
            throw new ErtasException(ErrorCode.CheckpointInvalid,
                $"the RNG state has {rngBytes.Length} bytes, this libtorch's has {current.shape[0]}", checkpoint.PathOf(TrainingCheckpoint.RngStateFile));
        using (var saved = torch.tensor(rngBytes, dtype: ScalarType.Byte))
            torch.set_rng_state(saved);

        state.FirstStep = checked((int)manifest.DataPosition);
        state.TrainedTokens = manifest.TrainedTokens;
        state.ProcessedTokens = manifest.ProcessedTokens;
        state.Losses.AddRange(manifest.StepLosses);
        state.Evals.AddRange(manifest.EvalLosses.Select(e => (e.Step, e.Loss)));
        state.MetricLines.AddRange(checkpoint.MetricLines());
        if (state.MetricLines.Count != manifest.Step)
            throw new ErtasException(ErrorCode.CheckpointInvalid,
                $"{MetricsFile} has {state.MetricLines.Count} lines for step {manifest.Step}", checkpoint.PathOf(MetricsFile));
    }

    private static SafeTensorsFile OpenSafeTensors(string path)
    {
        try
        {
            return SafeTensorsFile.Open(path);
        }
        catch (ErtasException e) when (e.Code != ErrorCode.CheckpointInvalid)
        {
            throw new ErtasException(ErrorCode.CheckpointInvalid, $"{Path.GetFileName(path)} cannot be read: {e.Message}", path, inner: e);
        }
    }

    private static Tensor ReadTensor(SafeTensorsFile file, string key, long[] shape)
    {
        if (!file.Tensors.TryGetValue(key, out var info))
            throw new ErtasException(ErrorCode.CheckpointInvalid, $"{Path.GetFileName(file.Path)} has no tensor {key} (different LoRA targets?)", file.Path);
        if (!info.Shape.SequenceEqual(shape) || info.DType != DType.F32)
            throw new ErtasException(ErrorCode.CheckpointInvalid,
                $"{key} is {info.DType} [{string.Join(", ", info.Shape)}], expected F32 [{string.Join(", ", shape)}]", file.Path);
        var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
        file.ReadFloat32(key, values);
        return torch.tensor(values, shape);
    }

    private static void CopyInto(SafeTensorsFile file, string key, Tensor destination)
    {
        using var source = ReadTensor(file, key, destination.shape);
        destination.copy_(source);
    }

    private static void WriteLossCurve(string path, RunState state) =>
        LossCurveSvg.Write(path, state.Losses, state.Evals,
            string.Create(CultureInfo.InvariantCulture, $"Training loss ({state.Losses.Count} steps)"));

    /// <summary>This engine's version, recorded in checkpoints.</summary>
    public static string EngineVersion =>
        typeof(Trainer).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion
        ?? typeof(Trainer).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>Mean cross-entropy over every trained token of <paramref name="split"/>, without dropout or gradients.</summary>
    public double Evaluate(PackedSplit split, CancellationToken cancellationToken = default)
    {
        var wasTraining = Model.training;
        Model.eval();
        try
        {
            using var noGrad = no_grad();
            double sum = 0;
            long tokens = 0;
            for (var start = 0; start < split.RowCount; start += Options.BatchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var rows = Enumerable.Range(start, Math.Min(Options.BatchSize, split.RowCount - start)).ToArray();
                var (ids, labels, positions, segments) = Batch(split, rows);
                var hidden = Model.ForwardPackedHidden(ids, positions, segments);
                var (batchSum, labelled) = LinearCrossEntropy.Sum(hidden, Model.OutputWeight, labels, PackedSplit.IgnoreIndex);
                sum += batchSum.item<float>();
                tokens += labelled;
            }
            return tokens == 0 ? double.NaN : sum / tokens;
        }
        finally
        {
            if (wasTraining) Model.train();
        }
    }

    /// <summary>
    /// Writes the PEFT adapter folder: <c>adapter_config.json</c> and <c>adapter_model.safetensors</c> (float32
    /// lora_A (r, in) and lora_B (out, r) under PEFT's keys), and the <see cref="ErtasAdapterInfo"/> sidecar, each atomically.
    /// </summary>
    public void SaveAdapter(string outputFolder)
    {
        Directory.CreateDirectory(outputFolder);
        var entries = new List<SafeTensorEntry>(2 * Targets.Count);
        foreach (var target in Targets)
        {
            entries.Add(Entry(target.PeftKeyA, target.Module.lora_A.weight));
            entries.Add(Entry(target.PeftKeyB, target.Module.lora_B.weight));
        }
        SafeTensorsWriter.Write(Path.Combine(outputFolder, AdapterWeightsFile), entries, new Dictionary<string, string> { ["format"] = "pt" });
        var configBytes = AdapterConfigJson();
        AtomicFile.Write(Path.Combine(outputFolder, AdapterConfigFile), stream => stream.Write(configBytes));
        ErtasAdapterInfo.From(Options).Write(outputFolder);
    }

    /// <summary>PEFT's <c>LoraConfig</c> as <c>save_pretrained</c> writes it (the fields PEFT needs to load it).</summary>
    public byte[] AdapterConfigJson()
    {
        var targets = Targets.Select(t => t.Name[(t.Name.LastIndexOf('.') + 1)..]).Distinct().Order(StringComparer.Ordinal).ToArray();
        var config = new Dictionary<string, object?>
        {
            ["alpha_pattern"] = new Dictionary<string, object>(),
            ["base_model_name_or_path"] = BaseModelName,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["lora_alpha"] = Options.Alpha,
            ["lora_dropout"] = Options.Dropout,
            ["modules_to_save"] = null,
            ["peft_type"] = "LORA",
            ["r"] = Options.Rank,
            ["rank_pattern"] = new Dictionary<string, object>(),
            ["target_modules"] = targets,
            ["task_type"] = "CAUSAL_LM",
            ["use_dora"] = false,
            ["use_rslora"] = false,
        };
        return JsonSerializer.SerializeToUtf8Bytes(config, new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Loads the base, trains, and writes the adapter folder, metrics.jsonl and loss.svg into <paramref name="outputFolder"/>.</summary>
    public static TrainingResult Run(string baseFolder, PreparedDataset data, string outputFolder, TrainingOptions options,
        IProgressSink progress, CancellationToken cancellationToken = default) =>
        Run(baseFolder, data, outputFolder, options, new CheckpointPolicy(), progress, cancellationToken);

    /// <summary>
    /// As above, with checkpoints under <c>OUT/checkpoints/step-N</c> per <paramref name="checkpoints"/> and, when it
    /// says so, resuming from one (<c>latest</c>: the newest complete one under OUT/checkpoints).
    /// </summary>
    public static TrainingResult Run(string baseFolder, PreparedDataset data, string outputFolder, TrainingOptions options,
        CheckpointPolicy checkpoints, IProgressSink progress, CancellationToken cancellationToken = default)
    {
        checkpoints.Validate();
        var device = options.ResolveDevice();
        var run = new TrainingRunSettings
        {
            MetricsPath = Path.Combine(outputFolder, MetricsFile),
            LossCurvePath = Path.Combine(outputFolder, LossCurveFile),
            CheckpointsFolder = Path.Combine(outputFolder, CheckpointsFolder),
            Checkpoints = checkpoints,
        };
        if (checkpoints.Resume is { } resume) // fail on a missing checkpoint before the base loads
            TrainingCheckpoint.ResolveResume(resume, run.CheckpointsFolder);
        using var trainer = Load(baseFolder, options);
        progress.Report(string.Create(CultureInfo.InvariantCulture,
            $"train: {trainer.Targets.Count} LoRA modules, {trainer.Trainable.Sum(p => p.numel())} trainable parameters, " +
            $"{data.Train.RowCount} train rows, {data.Eval.RowCount} eval rows of {data.SequenceLength} tokens, on {device}"));
        Directory.CreateDirectory(outputFolder);
        TrainingResult result;
        try
        {
            result = trainer.Train(data.Train, data.Eval, progress, run, cancellationToken);
        }
        catch
        {
            File.Delete(run.MetricsPath); // a failed run leaves no output that looks like a finished one (checkpoints stay)
            throw;
        }
        trainer.SaveAdapter(outputFolder);
        progress.Report(string.Create(CultureInfo.InvariantCulture,
            $"train: done in {result.Elapsed:hh\\:mm\\:ss}, final loss {result.StepLosses[^1]:F4}, {result.TokensPerSecond:F0} tok/s; adapter in {outputFolder}"));
        return result;
    }

    public void Dispose() => Model.Dispose();

    /// <summary>The run as optimizer steps, each a list of micro-batches (row indices). Rows are visited in a seeded
    /// shuffle per epoch; with <see cref="TrainingOptions.MaxSteps"/> epochs repeat until enough steps exist.</summary>
    /// <summary>Optimizer steps a run of <paramref name="options"/> takes over <paramref name="rowCount"/> packed rows:
    /// <see cref="TrainingOptions.MaxSteps"/> when set, else every epoch's micro-batches in groups of the accumulation
    /// (the last group may be short).</summary>
    public static long OptimizerSteps(int rowCount, TrainingOptions options)
    {
        var microBatchesPerEpoch = (rowCount + options.BatchSize - 1) / options.BatchSize;
        var stepsPerEpochs = ((long)microBatchesPerEpoch * options.Epochs + options.GradientAccumulation - 1) / options.GradientAccumulation;
        return options.MaxSteps > 0 ? options.MaxSteps : stepsPerEpochs;
    }

    internal List<List<int[]>> PlanSteps(int rowCount)
    {
        var totalSteps = OptimizerSteps(rowCount, Options);
        var steps = new List<List<int[]>>();
        var current = new List<int[]>();
        for (var epoch = 0; steps.Count < totalSteps; epoch++)
        {
            if (Options.MaxSteps == 0 && epoch == Options.Epochs) break;
            var order = EpochOrder(rowCount, epoch);
            for (var start = 0; start < rowCount && steps.Count < totalSteps; start += Options.BatchSize)
            {
                current.Add(order[start..Math.Min(start + Options.BatchSize, rowCount)]);
                if (current.Count == Options.GradientAccumulation)
                {
                    steps.Add(current);
                    current = [];
                }
            }
        }
        if (current.Count > 0 && steps.Count < totalSteps) steps.Add(current);
        return steps;
    }

    private int[] EpochOrder(int rowCount, int epoch)
    {
        var order = Enumerable.Range(0, rowCount).ToArray();
        // System.Random with an explicit seed is the same sequence in every process (HashCode is not: it is randomised).
        new Random(unchecked((int)((Options.Seed ^ (Options.Seed >> 32)) * 1_000_003UL + (ulong)epoch))).Shuffle(order);
        return order;
    }

    private (Tensor Ids, Tensor Labels, Tensor Positions, Tensor Segments) Batch(PackedSplit split, int[] rows)
    {
        var n = split.SequenceLength;
        var ids = new long[rows.Length * n];
        var labels = new long[ids.Length];
        var positions = new long[ids.Length];
        var segments = new long[ids.Length];
        for (var r = 0; r < rows.Length; r++)
        {
            var row = split.Row(rows[r]);
            Copy(row.InputIds.Span, ids.AsSpan(r * n, n));
            Copy(row.Labels.Span, labels.AsSpan(r * n, n));
            Copy(row.PositionIds.Span, positions.AsSpan(r * n, n));
            Copy(row.SegmentIds.Span, segments.AsSpan(r * n, n));
        }
        long[] shape = [rows.Length, n];
        return (tensor(ids, shape, device: Model.Device), tensor(labels, shape, device: Model.Device),
            tensor(positions, shape, device: Model.Device), tensor(segments, shape, device: Model.Device));
    }

    private static void Copy(ReadOnlySpan<int> from, Span<long> to)
    {
        for (var i = 0; i < from.Length; i++) to[i] = from[i];
    }

    private static long CountTrained(PackedSplit split, int[] rows)
    {
        long count = 0;
        foreach (var r in rows)
            foreach (var label in split.Row(r).Labels.Span)
                if (label != PackedSplit.IgnoreIndex) count++;
        return count;
    }

    private static long CountTokens(PackedSplit split, int row)
    {
        long count = 0;
        foreach (var segment in split.Row(row).SegmentIds.Span)
            if (segment != 0) count++;
        return count;
    }

    private static SafeTensorEntry Entry(string key, Tensor weight)
    {
        using var cpu = weight.detach().to(ScalarType.Float32, CPU).contiguous();
        var values = cpu.data<float>().ToArray();
        return new SafeTensorEntry(key, DType.F32, [.. weight.shape], bytes => MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(bytes));
    }

    private static string MetricsLine(long step, double loss, double lr, double gradNorm, long trainedTokens, double tokensPerSecond, double? evalLoss)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("step", step);
            WriteNumber(json, "loss", loss);
            json.WriteNumber("lr", lr);
            WriteNumber(json, "grad_norm", gradNorm);
            json.WriteNumber("trained_tokens", trainedTokens);
            json.WriteNumber("tokens_per_second", Math.Round(tokensPerSecond, 1));
            if (evalLoss is { } e) WriteNumber(json, "eval_loss", e);
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteNumber(Utf8JsonWriter json, string name, double value)
    {
        if (double.IsFinite(value)) json.WriteNumber(name, value);
        else json.WriteNull(name);
    }
}

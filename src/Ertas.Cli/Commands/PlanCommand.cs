using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ertas.Core;
using Ertas.Data;
using Ertas.Gguf;
using Ertas.Gguf.Adapters;
using Ertas.Gguf.Mixes;
using Ertas.Mistral;
using Ertas.Mistral.Checkpoints;
using Ertas.Mistral.Presets;
using Ertas.Mistral.Tokenization;
using Ertas.Training;

namespace Ertas.Cli.Commands;

/// <summary>
/// <c>ertas plan</c>: before a run, what it will need and write: parameters, training memory by part on the CPU and a
/// GPU, every output's exact size, tokens and steps when the data is already prepared, and whether it fits a device or
/// a disk. Takes <c>ertas train</c>'s settings (the SDK passes a project's) and never loads libtorch or the weights.
/// </summary>
public sealed class PlanCommand : ICommand
{
    // The rest of train's options are accepted (and those that change no size ignored), so the SDK passes one list to both.
    private static readonly HashSet<string> TrainOptionsNotPlanned = ["--config", "--out", "--model"];

    public IReadOnlyList<string> Verb { get; } = ["plan"];
    public string Usage => "ertas plan --model DIR|tiny|100m|7b [--quantization Q4_K_M ...] [--name N --version V] [train settings] [--device-memory 12GiB] [--json]";
    public string Summary => "Predict a run before it starts: parameters, training memory (CPU and GPU), exact output sizes, steps; check a device's memory and the disk.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "The base model: a Hugging Face Mistral folder (config.json, tokenizer.model), or a preset: tiny, 100m, 7b.", "DIR|PRESET", Required: true),
        new("--quantization", "An output GGUF type or mix (repeatable, or ';'-separated; default Q4_K_M and Q8_0).", "TYPE", Repeatable: true),
        new("--name", "The model's name: general.name and the file names NAME-VERSION.TYPE.gguf (default 'model').", "NAME"),
        VersionOption.Spec,
        new("--description", "general.description of the model GGUFs.", "TEXT"),
        new("--license", "general.license of the model GGUFs.", "ID"),
        new("--base-model-name", "general.base_model.0.name of the model GGUFs (ertas-tiny for the tiny preset).", "NAME"),
        new("--merge-type", "The merged intermediate the quantized types are made from: F16 (default), BF16 or F32.", "TYPE"),
        new("--no-adapter-gguf", "The build writes no LoRA adapter GGUF."),
        new("--base-gguf", "The build also exports the base at this type beside the adapter (NAME-VERSION.base.TYPE.gguf).", "TYPE"),
        new("--output-dir", "The output folder: with --check-disk its free space is checked (default: the current folder).", "DIR"),
        new("--intermediate-dir", "Where the merged intermediate and training checkpoints go (default: the output folder).", "DIR"),
        new("--check-disk", "Fail (ERTAS8005) when the output folder's disk has less free space than the outputs need."),
        new("--free-space", "Free bytes to assume instead of asking the file system (what-ifs and tests).", "BYTES"),
        new("--device-memory", "Memory of the device that trains (the GPU, or RAM with --device cpu), e.g. 12GiB, 8000MB: says whether the run fits and what to change if not.", "SIZE"),
        new("--project", "The project file errors are reported at (the SDK passes its .ertasproj).", "FILE"),
        new("--json", "Print the plan as one JSON object instead of a table."),
        new("--json-file", "Also write the plan as JSON to this file (the SDK's obj/ertas/plan.json).", "FILE"),
        .. new TrainCommand().Options.Where(o => !TrainOptionsNotPlanned.Contains(o.Name)),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var training = TrainCommand.ReadOptions(args);
        var preparation = TrainCommand.ReadPreparation(args, training);
        var project = args.Get("--project");
        var request = PlanRequest.From(args);
        using var model = PlanModel.Open(args.Require("--model"));
        var plan = TrainingRunPlan.Compute(model, request, training, preparation, args.GetAll("--data"), args.Get("--cache-dir"));

        if (args.Get("--device-memory") is { } memoryText)
            plan.FitDevice(ByteSize.Parse(memoryText, "--device-memory"), args.Get("--device") is "cpu" ? PlanDevice.Cpu : PlanDevice.Cuda);
        var json = plan.ToJson();
        if (args.Get("--json-file") is { } jsonFile)
            AtomicFile.WriteAllText(jsonFile, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        if (args.Has("--json"))
            context.Out.WriteLine(json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        else
            plan.WriteTable(context.Out);
        context.Error.WriteLine(plan.Summary());

        if (plan.Fit is { } fit)
            context.Error.WriteLine(fit.Describe());
        if (args.Has("--check-disk"))
            plan.CheckDisk(request.OutputDirectory, request.IntermediateDirectory, args.Get("--free-space") is { } free ? ByteSize.Parse(free, "--free-space") : null, project);
        return 0;
    }
}

/// <summary>What the build writes, and under which names (the SDK's: NAME-VERSION.TYPE.gguf in the output folder).</summary>
internal sealed record PlanRequest(
    IReadOnlyList<QuantizationMix> Quantizations, string Name, string? Version, string? Description, string? License, string? BaseModelName,
    QuantizationMix MergeType, bool AdapterGguf, QuantizationMix? BaseGguf, string OutputDirectory, string IntermediateDirectory)
{
    public string FilePrefix => Version is null ? Name : $"{Name}-{Version}";

    public static PlanRequest From(ParsedArgs args)
    {
        var quantizations = args.GetAll("--quantization")
            .SelectMany(q => q.Split(';', ',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Select(QuantizationMixes.Parse).DistinctBy(m => m.Name).ToList();
        if (quantizations.Count == 0) quantizations = [QuantizationMixes.Q4_K_M, QuantizationMixes.Q8_0];
        var mergeType = QuantizationMixes.Parse(args.Get("--merge-type") ?? "F16");
        if (mergeType.IsQuantized)
            throw new ErtasException(ErrorCode.InvalidArgument, $"--merge-type must be F16, BF16 or F32, got '{mergeType}'");
        var output = Path.GetFullPath(args.Get("--output-dir") ?? ".");
        return new PlanRequest(quantizations, args.Get("--name") ?? "model", VersionOption.Read(args), args.Get("--description"), args.Get("--license"),
            args.Get("--base-model-name"), mergeType, !args.Has("--no-adapter-gguf"),
            args.Get("--base-gguf") is { } baseType ? QuantizationMixes.Parse(baseType) : null,
            output, Path.GetFullPath(args.Get("--intermediate-dir") ?? output));
    }
}

/// <summary>The base's config and vocabulary: from a folder, or for a preset, from a stand-in folder written with the
/// preset's tokenizer and the smallest shapes (the weights do not matter, the vocabulary is the preset's own).</summary>
internal sealed class PlanModel : IDisposable
{
    private readonly string? _scratch;

    private PlanModel(string source, MistralConfig config, string tokenizerPath, string? scratch, string? baseModelName)
    {
        (Source, Config, _scratch, PresetBaseName) = (source, config, scratch, baseModelName);
        TokenizerBytes = File.ReadAllBytes(tokenizerPath);
        var tokenizer = MistralTokenizer.Load(tokenizerPath);
        if (tokenizer.VocabSize != config.VocabSize)
            throw new ErtasException(ErrorCode.TokenizerVocabMismatch,
                $"tokenizer.model has {tokenizer.VocabSize} pieces but config.json says vocab_size {config.VocabSize}", tokenizerPath);
        // The vocabulary the merge and export write (the same call they make), so the metadata sizes are theirs.
        Vocabulary = TokenizerVocabularies.FromTokenizer(tokenizer);
    }

    public string Source { get; }
    public MistralConfig Config { get; }
    public byte[] TokenizerBytes { get; }
    public GgufVocabulary Vocabulary { get; }

    /// <summary>ertas-tiny for the tiny preset (what the SDK writes into general.base_model.0.name), else null.</summary>
    public string? PresetBaseName { get; }

    public static PlanModel Open(string model)
    {
        if (Directory.Exists(model))
        {
            using var checkpoint = HfCheckpoint.Open(model);
            var tokenizer = checkpoint.TokenizerPath
                ?? throw new ErtasException(ErrorCode.TokenizerMissing, "the model folder has no tokenizer.model", Path.Combine(model, "tokenizer.model"));
            return new PlanModel(Path.GetFullPath(model), checkpoint.Config, tokenizer, null, null);
        }
        if (!BaseModelFactory.PresetNames.Contains(model.ToLowerInvariant()))
            throw new ErtasException(ErrorCode.DirectoryNotFound,
                $"--model '{model}' is neither a folder nor a preset ({string.Join(", ", BaseModelFactory.PresetNames)})", model);
        var scratch = Path.Combine(Path.GetTempPath(), $"ertas-plan-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            var standIn = new BaseModelRequest { Preset = model, HiddenSize = 8, IntermediateSize = 8, Layers = 1, Heads = 1, KvHeads = 1 };
            var written = BaseModelFactory.Create(standIn, scratch, NullProgressSink.Instance);
            var config = BaseModelFactory.ResolveConfig(new BaseModelRequest { Preset = model }, written.VocabSize, vocabFromTokenizerFile: false);
            return new PlanModel($"preset {model.ToLowerInvariant()}", config, Path.Combine(scratch, "tokenizer.model"), scratch,
                model.Equals("tiny", StringComparison.OrdinalIgnoreCase) ? "ertas-tiny" : null);
        }
        catch
        {
            TryDelete(scratch);
            throw;
        }
    }

    public void Dispose()
    {
        if (_scratch is not null) TryDelete(_scratch);
    }

    private static void TryDelete(string folder)
    {
        try { Directory.Delete(folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>One file a run writes: its path relative to the output (or intermediate) folder and its exact size.</summary>
internal sealed record PlannedFile(string Path, long Bytes, string Kind);

/// <summary>Rows, tokens and steps of the prepared training split, when the data is already in the cache.</summary>
internal sealed record PlannedDataset(int Rows, int Examples, long TokensPerEpoch, long TrainedTokensPerEpoch, long Steps);

/// <summary>A single change of settings and the peak it gives.</summary>
internal sealed record PlanChange(string Setting, string Description, long PeakBytes);

internal sealed record DeviceFit(PlanDevice Device, long Available, long Needed, IReadOnlyList<PlanChange> Changes)
{
    public bool Fits => Needed <= Available;

    public string Describe()
    {
        var device = Device == PlanDevice.Cuda ? "GPU" : "RAM";
        if (Fits)
            return $"plan: fits: {ByteSize.Format(Needed)} of {ByteSize.Format(Available)} {device} ({ByteSize.Format(Available - Needed)} to spare)";
        var lines = new List<string> { $"plan: does not fit: needs {ByteSize.Format(Needed)}, the {device} has {ByteSize.Format(Available)}" };
        lines.AddRange(Changes.Count == 0
            ? ["  no change of batch size, sequence length, rank or checkpointing makes it fit"]
            : Changes.Select(c => $"  {c.Description}: {ByteSize.Format(c.PeakBytes)}{(c.PeakBytes <= Available ? " (fits)" : "")}"));
        return string.Join(Environment.NewLine, lines);
    }

    public JsonObject ToJson() => new()
    {
        ["device"] = Device == PlanDevice.Cuda ? "gpu" : "cpu",
        ["availableBytes"] = Available,
        ["peakBytes"] = Needed,
        ["fits"] = Fits,
        ["changes"] = new JsonArray([.. Changes.Select(c => (JsonNode)new JsonObject
        {
            ["setting"] = c.Setting, ["change"] = c.Description, ["peakBytes"] = c.PeakBytes, ["fits"] = c.PeakBytes <= Available,
        })]),
    };
}

/// <summary>Everything <c>ertas plan</c> reports, computed without loading weights.</summary>
internal sealed class TrainingRunPlan
{
    private TrainingRunPlan(PlanModel model, PlanRequest request, TrainingOptions training, IReadOnlyList<PlannedFile> outputs,
        IReadOnlyList<PlannedFile> intermediates, PlannedDataset? dataset)
    {
        (Model, Request, Training, Outputs, Intermediates, Dataset) = (model, request, training, outputs, intermediates, dataset);
        Cpu = TrainingMemoryPlanner.Estimate(model.Config, ForDevice(training, PlanDevice.Cpu), PlanDevice.Cpu);
        Gpu = TrainingMemoryPlanner.Estimate(model.Config, ForDevice(training, PlanDevice.Cuda), PlanDevice.Cuda);
    }

    public PlanModel Model { get; }
    public PlanRequest Request { get; }
    public TrainingOptions Training { get; }
    public IReadOnlyList<PlannedFile> Outputs { get; }
    public IReadOnlyList<PlannedFile> Intermediates { get; }
    public PlannedDataset? Dataset { get; }
    public TrainingMemoryEstimate Cpu { get; }
    public TrainingMemoryEstimate Gpu { get; }
    public DeviceFit? Fit { get; private set; }

    public static TrainingRunPlan Compute(PlanModel model, PlanRequest request, TrainingOptions training, PreparationOptions preparation,
        IReadOnlyList<string> dataFiles, string? cacheDir)
    {
        var config = model.Config;
        var baseModelName = request.BaseModelName ?? model.PresetBaseName;
        var modelOptions = new GgufExportOptions
        {
            ModelName = request.Name, Version = request.Version, Description = request.Description, License = request.License, BaseModelName = baseModelName,
        };
        long ModelFile(QuantizationMix mix, GgufExportOptions options) => GgufExporter.PlannedFileSize(config, model.Vocabulary, mix, options);

        var outputs = request.Quantizations
            .Select(q => new PlannedFile($"{request.FilePrefix}.{q.Name}.gguf", ModelFile(q, modelOptions), "gguf")).ToList();
        if (request.AdapterGguf)
        {
            outputs.Add(new PlannedFile($"{request.FilePrefix}.lora.gguf",
                LoraGgufExporter.PlannedFileSize(config, training.Rank, training.Alpha, [.. training.TargetModules],
                    new LoraGgufOptions { Name = request.Name, Version = request.Version }), "adapter-gguf"));
            if (request.BaseGguf is { } baseType)
                outputs.Add(new PlannedFile($"{request.FilePrefix}.base.{baseType.Name}.gguf",
                    ModelFile(baseType, new GgufExportOptions { ModelName = baseModelName ?? $"{request.Name}-base" }), "base-gguf"));
        }
        var intermediates = new List<PlannedFile>
        {
            new($"merged/{request.FilePrefix}.{request.MergeType.Name}.gguf", ModelFile(request.MergeType, modelOptions), "merged"),
            // The adapter folder: adapter_model.safetensors holds A and B in float32.
            new("adapter/adapter_model.safetensors", TrainingMemoryPlanner.LoraParameters(config, training.Rank, training.TargetModules) * 4, "adapter"),
        };

        PlannedDataset? dataset = null;
        if (dataFiles.Count > 0 && cacheDir is not null && DatasetPreparer.TryLoadCached(dataFiles, model.TokenizerBytes, preparation, cacheDir) is { } cached)
            dataset = new PlannedDataset(cached.Train.RowCount, cached.Train.ExampleCount, cached.Train.TokenCount, cached.Train.TrainedTokenCount,
                Trainer.OptimizerSteps(cached.Train.RowCount, training));
        return new TrainingRunPlan(model, request, training, outputs, intermediates, dataset);
    }

    /// <summary>The run's own compute type on the device it trains on; the other device gets its usual one (the CPU
    /// float32, a GPU bf16, as the SDK's ComputeType=auto resolves them).</summary>
    private static TrainingOptions ForDevice(TrainingOptions training, PlanDevice device)
    {
        var runsOn = training.Device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase) ? PlanDevice.Cuda : PlanDevice.Cpu;
        return runsOn == device ? training : training with { Compute = device == PlanDevice.Cuda ? ComputePrecision.BF16 : ComputePrecision.F32 };
    }

    public long OutputBytes => Outputs.Sum(o => o.Bytes);
    public long IntermediateBytes => Intermediates.Sum(o => o.Bytes);

    public DeviceFit FitDevice(long available, PlanDevice device)
    {
        var options = ForDevice(Training, device);
        long Peak(TrainingOptions o) => TrainingMemoryPlanner.Estimate(Model.Config, o, device).PeakBytes;
        var changes = new List<PlanChange>();
        var needed = Peak(options);
        if (needed > available)
        {
            // One setting at a time first (the smallest change that fits, keeping the effective batch), then all together.
            if (!options.GradientCheckpointing)
                changes.Add(new PlanChange("gradient-checkpointing", "turn on --gradient-checkpointing (GradientCheckpointing=true)",
                    Peak(options with { GradientCheckpointing = true })));
            PlanChange? Halving(string setting, Func<TrainingOptions, TrainingOptions?> next, Func<TrainingOptions, string> describe)
            {
                var current = options;
                while (next(current) is { } smaller)
                {
                    current = smaller;
                    if (Peak(current) <= available) return new PlanChange(setting, describe(current), Peak(current));
                }
                return current == options ? null : new PlanChange(setting, describe(current), Peak(current));
            }
            void Add(PlanChange? change) { if (change is not null) changes.Add(change); }
            Add(Halving("batch-size", o => o.BatchSize > 1 ? o with { BatchSize = o.BatchSize / 2, GradientAccumulation = o.GradientAccumulation * 2 } : null,
                o => $"--batch-size {o.BatchSize} --grad-accum {o.GradientAccumulation} (BatchSize, GradientAccumulation; same tokens per step)"));
            Add(Halving("seq-len", o => o.SequenceLength > 256 ? o with { SequenceLength = o.SequenceLength / 2 } : null,
                o => $"--seq-len {o.SequenceLength} (SequenceLength)"));
            Add(Halving("rank", o => o.Rank > 4 ? o with { Rank = o.Rank / 2, Alpha = o.Alpha / 2 } : null,
                o => $"--rank {o.Rank} --alpha {o.Alpha.ToString(CultureInfo.InvariantCulture)} (LoraRank, LoraAlpha; same scaling)"));
            if (changes.All(c => c.PeakBytes > available))
            {
                var all = options with { GradientCheckpointing = true, BatchSize = 1, GradientAccumulation = options.GradientAccumulation * options.BatchSize };
                changes.Add(new PlanChange("all", "--gradient-checkpointing --batch-size 1 together", Peak(all)));
            }
        }
        return Fit = new DeviceFit(device, available, needed, changes.OrderBy(c => c.PeakBytes > available).ToList());
    }

    /// <summary>ERTAS8005 when the output folder's disk (and the intermediate folder's, when it is another disk) has less
    /// free space than this run still has to write there: files already at their final size count as written.</summary>
    public void CheckDisk(string outputDirectory, string intermediateDirectory, long? assumedFree, string? project)
    {
        long StillNeeded(string folder, IEnumerable<PlannedFile> files) => files.Sum(f =>
        {
            var existing = new FileInfo(Path.Combine(folder, f.Path));
            return existing.Exists && existing.Length == f.Bytes ? 0 : f.Bytes;
        });
        var outputNeed = StillNeeded(outputDirectory, Outputs);
        var intermediateNeed = StillNeeded(intermediateDirectory, Intermediates);
        var sameDisk = DiskOf(outputDirectory) == DiskOf(intermediateDirectory);
        var checks = sameDisk
            ? new[] { (outputDirectory, outputNeed + intermediateNeed) }
            : [(outputDirectory, outputNeed), (intermediateDirectory, intermediateNeed)];
        foreach (var (folder, need) in checks)
        {
            var free = assumedFree ?? FreeSpace(folder);
            if (free < need)
                throw new ErtasException(ErrorCode.InsufficientDiskSpace,
                    $"the disk of '{folder}' has {ByteSize.Format(free)} free, but this build writes {ByteSize.Format(need)} there " +
                    $"({string.Join(", ", Outputs.Select(o => $"{o.Path} {ByteSize.Format(o.Bytes)}"))}; intermediates {ByteSize.Format(IntermediateBytes)}); " +
                    "free space, choose another output folder (OutDir), or drop a Quantization", project);
        }
    }

    private static string DiskOf(string folder) => FindDrive(folder)?.Name ?? folder;

    private static long FreeSpace(string folder) => FindDrive(folder)?.AvailableFreeSpace ?? long.MaxValue;

    /// <summary>The mounted file system holding <paramref name="folder"/> (or the nearest folder above it that exists).</summary>
    private static DriveInfo? FindDrive(string folder)
    {
        var path = Path.GetFullPath(folder);
        while (!Directory.Exists(path) && Path.GetDirectoryName(path) is { } parent) path = parent;
        return DriveInfo.GetDrives()
            .Where(d => path.StartsWith(d.Name, StringComparison.Ordinal) && (path.Length == d.Name.Length || d.Name.EndsWith('/') || path[d.Name.Length] == '/'))
            .OrderByDescending(d => d.Name.Length)
            .FirstOrDefault();
    }

    public string Summary()
    {
        var inv = CultureInfo.InvariantCulture;
        var steps = Dataset is { } d ? string.Create(inv, $"; {d.Steps} steps, {d.TokensPerEpoch:N0} tokens per epoch") : "";
        return string.Create(inv,
            $"plan: {Count(TrainingMemoryPlanner.TotalParameters(Model.Config))} parameters ({Count(TrainingMemoryPlanner.LoraParameters(Model.Config, Training.Rank, Training.TargetModules))} trainable LoRA); " +
            $"training peak {ByteSize.Format(Cpu.PeakBytes)} RAM ({Name(Cpu.Compute)}), {ByteSize.Format(Gpu.PeakBytes)} GPU ({Name(Gpu.Compute)}); " +
            $"outputs {ByteSize.Format(OutputBytes)} ({string.Join(", ", Outputs.Select(o => $"{o.Path} {ByteSize.Format(o.Bytes)}"))}){steps}");
    }

    public void WriteTable(TextWriter o)
    {
        var inv = CultureInfo.InvariantCulture;
        var config = Model.Config;
        o.WriteLine($"model: {Model.Source} (hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, {config.NumAttentionHeads}/{config.NumKeyValueHeads} heads, vocab {config.VocabSize})");
        o.WriteLine(string.Create(inv, $"parameters: {TrainingMemoryPlanner.TotalParameters(config):N0} total, " +
            $"{TrainingMemoryPlanner.LoraParameters(config, Training.Rank, Training.TargetModules):N0} trainable (LoRA r {Training.Rank} on {string.Join(",", Training.TargetModules)})"));
        o.WriteLine(string.Create(inv, $"settings: batch {Training.BatchSize} x seq {Training.SequenceLength}, grad-accum {Training.GradientAccumulation}, " +
            $"checkpointing {(Training.GradientCheckpointing ? "on" : "off")}, base {(Training.QuantizeBase ? "NF4" : "as loaded")}"));
        o.WriteLine();
        o.WriteLine($"{"training memory",-34} {"CPU (" + Name(Cpu.Compute) + ")",14} {"GPU (" + Name(Gpu.Compute) + ")",14}");
        for (var i = 0; i < Cpu.Parts.Count; i++)
            o.WriteLine($"  {Cpu.Parts[i].Name,-32} {ByteSize.Format(Cpu.Parts[i].Bytes),14} {ByteSize.Format(Gpu.Parts[i].Bytes),14}");
        o.WriteLine($"  {"peak",-32} {ByteSize.Format(Cpu.PeakBytes),14} {ByteSize.Format(Gpu.PeakBytes),14}");
        o.WriteLine($"  {"activations, checkpointing off",-32} {ByteSize.Format(Cpu.ActivationBytesWithoutCheckpointing),14} {ByteSize.Format(Gpu.ActivationBytesWithoutCheckpointing),14}");
        o.WriteLine($"  {"activations, checkpointing on",-32} {ByteSize.Format(Cpu.ActivationBytesWithCheckpointing),14} {ByteSize.Format(Gpu.ActivationBytesWithCheckpointing),14}");
        o.WriteLine();
        o.WriteLine($"outputs ({Request.OutputDirectory}):");
        foreach (var f in Outputs)
            o.WriteLine(string.Create(inv, $"  {f.Path,-44} {f.Bytes,16:N0} bytes  {ByteSize.Format(f.Bytes),10}"));
        o.WriteLine(string.Create(inv, $"  {"total",-44} {OutputBytes,16:N0} bytes  {ByteSize.Format(OutputBytes),10}"));
        o.WriteLine("intermediates:");
        foreach (var f in Intermediates)
            o.WriteLine(string.Create(inv, $"  {f.Path,-44} {f.Bytes,16:N0} bytes  {ByteSize.Format(f.Bytes),10}"));
        o.WriteLine();
        o.WriteLine(Dataset is { } d
            ? string.Create(inv, $"data: {d.Examples} examples packed into {d.Rows} rows, {d.TokensPerEpoch:N0} tokens per epoch ({d.TrainedTokensPerEpoch:N0} trained), {d.Steps} optimizer steps")
            : "data: not prepared yet (a first run prepares and caches it; plan again for tokens and steps)");
    }

    public JsonObject ToJson()
    {
        JsonArray Files(IEnumerable<PlannedFile> files) =>
            new([.. files.Select(f => (JsonNode)new JsonObject { ["path"] = f.Path, ["bytes"] = f.Bytes, ["kind"] = f.Kind })]);
        JsonObject Memory(TrainingMemoryEstimate e) => new()
        {
            ["compute"] = Name(e.Compute),
            ["peakBytes"] = e.PeakBytes,
            ["activationBytesWithCheckpointing"] = e.ActivationBytesWithCheckpointing,
            ["activationBytesWithoutCheckpointing"] = e.ActivationBytesWithoutCheckpointing,
            ["parts"] = new JsonArray([.. e.Parts.Select(p => (JsonNode)new JsonObject { ["name"] = p.Name, ["bytes"] = p.Bytes })]),
        };
        var json = new JsonObject
        {
            ["model"] = new JsonObject
            {
                ["source"] = Model.Source,
                ["parameters"] = TrainingMemoryPlanner.TotalParameters(Model.Config),
                ["trainableParameters"] = TrainingMemoryPlanner.LoraParameters(Model.Config, Training.Rank, Training.TargetModules),
            },
            ["outputs"] = Files(Outputs),
            ["intermediates"] = Files(Intermediates),
            ["disk"] = new JsonObject { ["outputBytes"] = OutputBytes, ["intermediateBytes"] = IntermediateBytes },
            ["memory"] = new JsonObject { ["cpu"] = Memory(Cpu), ["gpu"] = Memory(Gpu) },
            ["dataset"] = Dataset is { } d
                ? new JsonObject
                {
                    ["cached"] = true, ["rows"] = d.Rows, ["examples"] = d.Examples, ["tokensPerEpoch"] = d.TokensPerEpoch,
                    ["trainedTokensPerEpoch"] = d.TrainedTokensPerEpoch, ["steps"] = d.Steps,
                }
                : new JsonObject { ["cached"] = false },
        };
        if (Fit is { } fit) json["deviceMemory"] = fit.ToJson();
        return json;
    }

    private static string Name(ComputePrecision compute) => compute == ComputePrecision.BF16 ? "bf16" : "f32";

    private static string Count(long n) => n >= 1_000_000_000 ? $"{n / 1e9:F2}B" : n >= 1_000_000 ? $"{n / 1e6:F1}M" : $"{n / 1e3:F1}K";
}

/// <summary>Byte counts as people write them: 12GiB, 8000MB, 3.5G (binary), or plain bytes.</summary>
internal static class ByteSize
{
    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("TiB", 1L << 40),
        ("KB", 1000), ("MB", 1000_000), ("GB", 1000_000_000), ("TB", 1000_000_000_000),
        ("K", 1L << 10), ("M", 1L << 20), ("G", 1L << 30), ("T", 1L << 40), ("B", 1),
    ];

    public static long Parse(string text, string option)
    {
        var trimmed = text.Trim();
        var (suffix, factor) = Units.FirstOrDefault(u => trimmed.EndsWith(u.Suffix, StringComparison.OrdinalIgnoreCase));
        var number = suffix is null ? trimmed : trimmed[..^suffix.Length].Trim();
        return double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= 0 && double.IsFinite(value)
            ? (long)Math.Round(value * (suffix is null ? 1 : factor))
            : throw new ErtasException(ErrorCode.InvalidArgument, $"{option} expects a size such as 12GiB, 8000MB or 123456789, got '{text}'");
    }

    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F1} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };
}

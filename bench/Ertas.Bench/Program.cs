using System.Text;
using Ertas.Bench;
using Ertas.Gguf;

// A console harness, not a test: timings depend on the machine and stay out of the test suite.
const string usage = """
    usage: dotnet run -c Release --project bench/Ertas.Bench -- <scenario> [--work DIR] [--runs N] [--keep]
      export-7b         create the 7b preset (reused when already in DIR) and time `ertas export --type f16` with peak RSS
      generate-tiny     tokens/s of our TorchSharp model vs llama.cpp on the tiny preset's GGUF
      quantize-7b       the 7b F16 GGUF (export-7b's, made when absent) to Q8_0, Q4_K_M, Q6_K: `ertas quantize` vs
                        llama.cpp's llama_model_quantize, 2 threads each, wall time, peak RSS, identical bytes
      quantize-7b-4l    the same on the 7b preset's shapes with 4 layers (a 1.9 GB F16 file) [--mixes Q4_K_M,Q6_K]
      quantize-tiny     the same on the tiny preset (seconds)
      quantize-kernels  each block quantizer single-threaded vs ggml_quantize_chunk, in-process [--types Q4_K,Q6_K]
      nf4-dequant       NF4 -> bf16/f32 GB/s for a 4096x14336 weight, 2 threads: our C# kernel vs torch-ops formulations
      qlora-7b-step     one QLoRA step (seq 512, r 16, 7 projections, checkpointing, bf16) on the 7b preset: peak RSS, time
      train-100m        QLoRA training tokens/s and model FLOPs utilisation on the 100m preset
      plan-memory       `ertas plan`'s CPU memory estimate against measured peak RSS (tiny and 100m, checkpointing off/on)
      build-sample      `dotnet build samples/TinyMistral`: full build, no-op rebuild wall time (target < 3 s with evals),
                        then eval throughput (cases/s) of the sample suite
      all               everything; prints a Markdown table and writes bench/results.md
      --work DIR        work folder (default /tmp/ertas-bench)
      --runs N          export runs (default 2: the second checks the output is byte-for-byte deterministic)
      --keep            keep the 7b checkpoint and GGUF (about 29 GB) instead of deleting them at the end
    """;

if (args.Length == 5 && args[0] == GenerateBenchmark.WorkerVerb)
    return GenerateBenchmark.RunWorker(args[1..]);
if (args.Length == 5 && args[0] == QuantizeFileBenchmark.WorkerVerb)
    return QuantizeFileBenchmark.RunWorker(args[1..]);
if (args.Length >= 2 && args[0] == TrainingWorker.Verb)
    return TrainingWorker.Run(args[1..]);
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine(usage);
    return args.Length == 0 ? 2 : 0;
}
var scenario = args[0];
string? work = null;
var runs = 2;
var keep = false;
GgmlType[]? kernelTypes = null;
string[]? mixNames = null;
for (var i = 1; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--work" when i + 1 < args.Length: work = args[++i]; break;
        case "--runs" when i + 1 < args.Length && int.TryParse(args[i + 1], out var n) && n >= 1: runs = n; i++; break;
        case "--keep": keep = true; break;
        case "--mixes" when i + 1 < args.Length: mixNames = args[++i].Split(','); break;
        case "--types" when i + 1 < args.Length:
            kernelTypes = args[++i].Split(',').Select(t => Enum.Parse<GgmlType>(t, ignoreCase: true)).ToArray();
            break;
        default:
            Console.Error.WriteLine($"unknown or incomplete argument '{args[i]}'\n{usage}");
            return 2;
    }
}
if (scenario is not ("export-7b" or "generate-tiny" or "quantize-7b" or "quantize-7b-4l" or "quantize-tiny" or "quantize-kernels"
    or "nf4-dequant" or "qlora-7b-step" or "train-100m" or "plan-memory" or "build-sample" or "all"))
{
    Console.Error.WriteLine($"unknown scenario '{scenario}'\n{usage}");
    return 2;
}

var log = Console.Out;
var env = BenchEnvironment.Create(work, log);
var machine = MachineInfo.Current();
log.WriteLine($"machine: {machine.Describe()}");
log.WriteLine($"ertas: {env.ErtasDll}; work folder: {env.WorkDir}; load average {GenerateBenchmark.LoadAverage()}");

bool Runs(string name) => scenario == name || scenario == "all";
// Under `all`, quantize-7b reads export-7b's F16 output, so the export keeps its files and quantize-7b deletes them.
ExportBenchResult? export = Runs("export-7b") ? ExportBenchmark.Run(env, runs, keep || scenario == "all") : null;
QuantizeBenchResult? quantize7b = Runs("quantize-7b") ? QuantizeFileBenchmark.Run(env, "7b", keep, mixNames) : null;
QuantizeBenchResult? quantize7b4 = scenario == "quantize-7b-4l" ? QuantizeFileBenchmark.Run(env, QuantizeFileBenchmark.FourLayers, keep, mixNames) : null;
QuantizeBenchResult? quantizeTiny = Runs("quantize-tiny") ? QuantizeFileBenchmark.Run(env, "tiny", keep) : null;
KernelBenchResult? kernels = Runs("quantize-kernels") ? QuantizeKernelBenchmark.Run(log, kernelTypes) : null;
GenerateBenchResult? generate = Runs("generate-tiny") ? GenerateBenchmark.Run(env) : null;

// The training scenarios: each section is also written into bench/results.md when run on its own.
var trainingSections = new List<(string Scenario, string Markdown)>();
void Training<T>(string name, Func<T> run, Action<StringBuilder, T> append)
{
    if (!Runs(name)) return;
    var section = new StringBuilder();
    append(section, run());
    trainingSections.Add((name, section.ToString()));
}
Training("nf4-dequant", () => Nf4DequantBenchmark.Run(env), Nf4DequantBenchmark.AppendMarkdown);
Training("train-100m", () => TrainSpeedBenchmark.Run(env), TrainSpeedBenchmark.AppendMarkdown);
Training("qlora-7b-step", () => QloraStepBenchmark.Run(env), QloraStepBenchmark.AppendMarkdown);
Training("plan-memory", () => PlanMemoryBenchmark.Run(env), PlanMemoryBenchmark.AppendMarkdown);
Training(BuildBenchmark.Scenario, () => BuildBenchmark.Run(env), BuildBenchmark.AppendMarkdown);

var markdown = ResultsReport.Markdown(machine, export, generate, [.. new[] { quantize7b, quantize7b4, quantizeTiny }.OfType<QuantizeBenchResult>()], kernels)
    + string.Concat(trainingSections.Select(s => s.Markdown));
if (scenario != "all")
{
    var resultsPath = Path.Combine(env.RepoRoot, "bench", "results.md");
    foreach (var (name, section) in trainingSections)
    {
        ResultsFile.Upsert(resultsPath, name, section);
        log.WriteLine($"updated the {name} section of {resultsPath}");
    }
}
log.WriteLine();
log.WriteLine(markdown);
if (scenario == "all")
{
    var results = Path.Combine(env.RepoRoot, "bench", "results.md");
    File.WriteAllText(results, markdown, new UTF8Encoding(false));
    log.WriteLine($"wrote {results}");
}
return 0;

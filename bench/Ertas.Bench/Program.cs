using System.Text;
using Ertas.Bench;

// A console harness, not a test: timings depend on the machine and stay out of the test suite.
const string usage = """
    usage: dotnet run -c Release --project bench/Ertas.Bench -- <scenario> [--work DIR] [--runs N] [--keep]
      export-7b      create the 7b preset (reused when already in DIR) and time `ertas export --type f16` with peak RSS
      generate-tiny  tokens/s of our TorchSharp model vs llama.cpp on the tiny preset's GGUF
      all            both; prints a Markdown table and writes bench/results.md
      --work DIR     work folder (default /tmp/ertas-bench)
      --runs N       export runs (default 2: the second checks the output is byte-for-byte deterministic)
      --keep         keep the 7b checkpoint and GGUF (about 29 GB) instead of deleting them at the end
    """;

if (args.Length == 5 && args[0] == GenerateBenchmark.WorkerVerb)
    return GenerateBenchmark.RunWorker(args[1..]);
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine(usage);
    return args.Length == 0 ? 2 : 0;
}
var scenario = args[0];
string? work = null;
var runs = 2;
var keep = false;
for (var i = 1; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--work" when i + 1 < args.Length: work = args[++i]; break;
        case "--runs" when i + 1 < args.Length && int.TryParse(args[i + 1], out var n) && n >= 1: runs = n; i++; break;
        case "--keep": keep = true; break;
        default:
            Console.Error.WriteLine($"unknown or incomplete argument '{args[i]}'\n{usage}");
            return 2;
    }
}
if (scenario is not ("export-7b" or "generate-tiny" or "all"))
{
    Console.Error.WriteLine($"unknown scenario '{scenario}'\n{usage}");
    return 2;
}

var log = Console.Out;
var env = BenchEnvironment.Create(work, log);
var machine = MachineInfo.Current();
log.WriteLine($"machine: {machine.Describe()}");
log.WriteLine($"ertas: {env.ErtasDll}; work folder: {env.WorkDir}; load average {GenerateBenchmark.LoadAverage()}");

ExportBenchResult? export = scenario is "export-7b" or "all" ? ExportBenchmark.Run(env, runs, keep) : null;
GenerateBenchResult? generate = scenario is "generate-tiny" or "all" ? GenerateBenchmark.Run(env) : null;

var markdown = ResultsReport.Markdown(machine, export, generate);
log.WriteLine();
log.WriteLine(markdown);
if (scenario == "all")
{
    var results = Path.Combine(env.RepoRoot, "bench", "results.md");
    File.WriteAllText(results, markdown, new UTF8Encoding(false));
    log.WriteLine($"wrote {results}");
}
return 0;

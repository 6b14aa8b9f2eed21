using System.Diagnostics;
using System.Text.Json;
using Ertas.Cli.Commands;
using Ertas.Mistral.Tokenization;
using Ertas.Modeling;
using Ertas.TestSupport;
using TorchSharp;

namespace Ertas.Bench;

/// <summary>
/// One engine on one GGUF: median wall time of a full greedy generation (prefill + <see cref="GenerateBenchmark.NewTokens"/>
/// tokens) and of a prefill alone (a 1-token generation), over <see cref="GenerateBenchmark.Runs"/> runs after a warm-up.
/// </summary>
public sealed record GenerationTiming(string Engine, string Weights, string Compute, int PromptTokens, int NewTokens,
    double GenerateSeconds, double GenerateMinSeconds, double PrefillSeconds, int[] Ids, double PeakRssMb)
{
    /// <summary>New tokens per second over the whole generation, prefill included.</summary>
    public double TokensPerSecond => NewTokens / GenerateSeconds;

    /// <summary>Tokens 2..N come from single-token decode steps; the first one from the prefill.</summary>
    public double DecodeTokensPerSecond => (NewTokens - 1) / (GenerateSeconds - PrefillSeconds);
}

public sealed record GenerateBenchResult(int Threads, string Prompt, string LoadBefore, string LoadAfter, IReadOnlyList<GenerationTiming> Timings);

/// <summary>
/// <c>generate-tiny</c>: our TorchSharp model against llama.cpp (LLamaSharp) on the same GGUF file, same prompt ids,
/// same thread count, greedy. Each engine runs in its own child process (this program's <c>generate-worker</c>), so
/// neither one's thread pool (libtorch's OpenMP threads spin after a parallel region) competes with the other's,
/// and each gets its own peak RSS. Both sides time only the generation call (model loaded, warm-up done).
/// </summary>
public static class GenerateBenchmark
{
    public const string WorkerVerb = "generate-worker";
    public const int NewTokens = 128;
    public const int Runs = 5;
    public const int Threads = 2;
    public const string Prompt =
        "Once upon a time, in a small village by the sea, there lived an old fisherman who told stories to the children every evening.";
    private const string ResultPrefix = "RESULT ";

    public static GenerateBenchResult Run(BenchEnvironment env)
    {
        var folder = Path.Combine(env.WorkDir, "tiny");
        var f32 = Path.Combine(env.WorkDir, "tiny.f32.gguf");
        var bf16 = Path.Combine(env.WorkDir, "tiny.bf16.gguf");
        env.RunErtas("base create tiny", "base", "create", "--preset", "tiny", "--out", folder, "--force");
        env.RunErtas("export tiny f32", "export", "--model", folder, "--out", f32, "--type", "f32", "--force");
        env.RunErtas("export tiny bf16", "export", "--model", folder, "--out", bf16, "--type", "bf16", "--force");

        var prompt = MistralTokenizer.Load(Path.Combine(folder, "tokenizer.model")).Encode(Prompt, addBos: true).ToArray();
        env.Log.WriteLine($"prompt: {prompt.Length} tokens; {NewTokens} new tokens, {Threads} threads, warm-up + median of {Runs}, one child process per engine");
        var loadBefore = LoadAverage();
        var timings = new List<GenerationTiming>
        {
            Worker(env, "ours", f32, "f32", prompt),
            Worker(env, "ours", f32, "bf16", prompt),
            Worker(env, "llama", f32, "f32", prompt),
            Worker(env, "llama", bf16, "bf16", prompt),
        };
        return new GenerateBenchResult(Threads, Prompt, loadBefore, LoadAverage(), timings);
    }

    /// <summary>The child side: <c>generate-worker ours|llama GGUF f32|bf16 IDS</c>; prints one RESULT line of JSON.</summary>
    public static int RunWorker(IReadOnlyList<string> args)
    {
        var (engine, gguf, compute) = (args[0], args[1], args[2]);
        var prompt = args[3].Split(',').Select(int.Parse).ToArray();
        var log = Console.Error;
        var timing = engine == "ours" ? Ours(gguf, compute, prompt, log) : LlamaCpp(gguf, compute, prompt, log);
        Console.Out.WriteLine(ResultPrefix + JsonSerializer.Serialize(timing));
        return 0;
    }

    private static GenerationTiming Worker(BenchEnvironment env, string engine, string gguf, string compute, int[] prompt)
    {
        var benchDll = Path.Combine(AppContext.BaseDirectory, "Ertas.Bench.dll");
        var run = ChildProcessMeasurement.Run($"{engine} {compute} on {Path.GetFileName(gguf)}", "dotnet",
            [benchDll, WorkerVerb, engine, gguf, compute, string.Join(',', prompt)], env.Log);
        foreach (var line in run.StderrLines.Where(l => !l.Text.StartsWith("stdout: " + ResultPrefix, StringComparison.Ordinal)))
            if (line.Text.StartsWith("  ", StringComparison.Ordinal)) env.Log.WriteLine(line.Text);
        var json = run.StderrLines.Select(l => l.Text).Single(t => t.StartsWith("stdout: " + ResultPrefix, StringComparison.Ordinal));
        var timing = JsonSerializer.Deserialize<GenerationTiming>(json[("stdout: " + ResultPrefix).Length..])!;
        return timing with { PeakRssMb = run.PeakRssMb };
    }

    private static GenerationTiming Ours(string gguf, string compute, int[] prompt, TextWriter log)
    {
        torch.set_num_threads(Threads);
        var dtype = compute == "bf16" ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;
        using var loaded = LoadedModel.Open(gguf, new ModelOptions { DType = dtype });
        var generator = new Generator(loaded.Model);
        IReadOnlyList<int> ids = [];
        var m = Measure($"ours ({compute})", log, tokens =>
        {
            var result = generator.Generate(prompt, new GenerationOptions { MaxNewTokens = tokens, StopAtEos = false });
            if (tokens == NewTokens) ids = result.TokenIds;
        });
        return new GenerationTiming("Ertas (TorchSharp 0.107)", Path.GetFileName(gguf), compute, prompt.Length, NewTokens,
            m.Generate, m.GenerateMin, m.Prefill, ids.ToArray(), 0);
    }

    private static GenerationTiming LlamaCpp(string gguf, string compute, int[] prompt, TextWriter log)
    {
        using var model = LlamaCppModel.Load(gguf, contextSize: 512, threads: Threads);
        IReadOnlyList<int> ids = [];
        var m = Measure($"llama.cpp ({Path.GetFileName(gguf)})", log, tokens =>
        {
            var (generated, _) = model.Greedy(prompt, tokens, stopId: null);
            if (tokens == NewTokens) ids = generated;
        });
        // llama.cpp on CPU keeps activations in f32 whatever the weights' type.
        return new GenerationTiming("llama.cpp (LLamaSharp 0.30)", Path.GetFileName(gguf), compute == "bf16" ? "bf16 weights, f32 activations" : "f32",
            prompt.Length, NewTokens, m.Generate, m.GenerateMin, m.Prefill, ids.ToArray(), 0);
    }

    /// <summary>Warm-up, then the median of <see cref="Runs"/> full generations and of <see cref="Runs"/> prefills.</summary>
    private static (double Generate, double GenerateMin, double Prefill) Measure(string label, TextWriter log, Action<int> generate)
    {
        generate(NewTokens); // warm-up: JIT, allocator, thread pools, caches
        var full = Time(() => generate(NewTokens));
        generate(1);
        var prefill = Time(() => generate(1));
        log.WriteLine($"  {label}: generate {NewTokens} median {Median(full) * 1000:F1} ms (runs {string.Join(", ", full.Select(s => (s * 1000).ToString("F1")))}), " +
                      $"prefill median {Median(prefill) * 1000:F2} ms (runs {string.Join(", ", prefill.Select(s => (s * 1000).ToString("F1")))}), {NewTokens / Median(full):F1} tokens/s");
        return (Median(full), full.Min(), Median(prefill));
    }

    private static double[] Time(Action action)
    {
        var seconds = new double[Runs];
        for (var i = 0; i < Runs; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            seconds[i] = clock.Elapsed.TotalSeconds;
        }
        return seconds;
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>/proc/loadavg's 1/5/15-minute averages: other work on the machine shows up here and in the spread.</summary>
    public static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "?"; }
    }
}

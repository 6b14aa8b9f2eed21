using System.Globalization;
using System.Text;

namespace Ertas.Bench;

/// <summary>The Markdown that <c>all</c> prints and writes to bench/results.md.</summary>
public static class ResultsReport
{
    public static string Markdown(MachineInfo machine, ExportBenchResult? export, GenerateBenchResult? generate,
        IReadOnlyList<QuantizeBenchResult>? quantize = null, KernelBenchResult? kernels = null)
    {
        var md = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine("# Ertas.Build benchmarks");
        md.AppendLine();
        md.AppendLine(inv, $"Measured {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on {machine.Describe()}.");
        md.AppendLine("Reproduce: `dotnet run -c Release --project bench/Ertas.Bench -- all`.");
        if (export is not null) AppendExport(md, export);
        foreach (var q in quantize ?? [])
            AppendQuantize(md, q);
        if (kernels is not null) AppendKernels(md, kernels);
        if (generate is not null) AppendGenerate(md, generate);
        return md.ToString();
    }

    public static void AppendQuantize(StringBuilder md, QuantizeBenchResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine(inv, $"## quantize-{r.Preset}: {r.Input} ({r.InputBytes / 1e9:F2} GB) to llama.cpp's mixes, ours vs llama.cpp");
        md.AppendLine();
        md.AppendLine(inv, $"`ertas quantize IN OUT --type T --threads {r.Threads}` against llama.cpp's `llama_model_quantize` (LLamaSharp 0.30's build,");
        md.AppendLine(inv, $"`nthread` {r.Threads}, output tensor quantized, as llama-quantize), each a child process measured alike; same input{(r.InputReused ? " (reused)" : "")}.");
        md.AppendLine("Identical = every tensor, matched by name, has the same type, shape and bytes, and the metadata is equal key by key.");
        md.AppendLine(inv, $"Targets: identical bytes, at least as fast as llama.cpp, peak RSS under {QuantizeFileBenchmark.TargetPeakRssMb} MB. Load average before: {r.LoadBefore}, after: {r.LoadAfter}.");
        if (r.InputBytes < 100_000_000)
            md.AppendLine("At this size the wall time is mostly process start-up (the .NET runtime and JIT on our side): a smoke test of identical bytes, not a speed comparison.");
        md.AppendLine();
        md.AppendLine("| mix | ours wall s | llama.cpp wall s | speed vs llama.cpp | ours peak RSS MB (anon / file) | llama.cpp peak RSS MB (anon / file) | ours CPU s | llama.cpp CPU s | output MB (ours / llama.cpp) | identical |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (var m in r.Mixes)
        {
            var (o, l) = (m.Ours, m.LlamaCpp);
            var identical = m.IdenticalBytes ? $"yes ({m.Tensors}/{m.Tensors} tensors)" : $"**no**: {m.DifferentTensors}/{m.Tensors} differ, metadata {(m.SameMetadata ? "same" : "differs")}; {m.FirstDifference}";
            md.AppendLine(inv, $"| {m.Mix} | {o.WallSeconds:F1} | {l.WallSeconds:F1} | {m.SpeedRatio:F2}x | {o.PeakRssMb:F0} ({o.MaxRssAnonMb:F0} / {o.MaxRssFileMb:F0}) | {l.PeakRssMb:F0} ({l.MaxRssAnonMb:F0} / {l.MaxRssFileMb:F0}) | {o.UserSeconds + o.SystemSeconds:F1} | {l.UserSeconds + l.SystemSeconds:F1} | {m.OursBytes / 1e6:F1} / {m.LlamaBytes / 1e6:F1} | {identical} |");
        }
    }

    public static void AppendKernels(StringBuilder md, KernelBenchResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine(inv, $"## quantize-kernels: block quantizers, one thread, ours vs ggml_quantize_chunk");
        md.AppendLine();
        md.AppendLine(inv, $"{r.Rows} rows of {r.RowLength} seeded Gaussian floats (sigma 0.02, 1 in 4096 scaled by 20), in-process, median of {r.Runs} after a warm-up;");
        md.AppendLine(inv, $"ggml = `{Path.GetFileName(r.GgmlPath)}` from LLamaSharp 0.30. Load average before: {r.LoadBefore}, after: {r.LoadAfter}.");
        md.AppendLine();
        md.AppendLine("| type | ours ms | ggml ms | ours M floats/s | ggml M floats/s | speed vs ggml | same bytes |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---|");
        foreach (var t in r.Timings)
            md.AppendLine(inv, $"| {t.Type} | {t.OursSeconds * 1000:F1} | {t.GgmlSeconds * 1000:F1} | {t.OursMFloatsPerSecond:F0} | {t.GgmlMFloatsPerSecond:F0} | {t.SpeedRatio:F2}x | {(t.SameBytes ? "yes" : "**no**")} |");
    }

    public static void AppendExport(StringBuilder md, ExportBenchResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine("## export-7b: Mistral 7B shapes, bf16 safetensors (3 shards) to f16 GGUF");
        md.AppendLine();
        md.AppendLine("Each step is the `ertas` CLI in a child process; peak RSS is the kernel's high-water mark (`/usr/bin/time -f %M`),");
        md.AppendLine("split into anonymous and file-backed (memory-mapped) pages by sampling `/proc/PID/status` every 20 ms.");
        md.AppendLine(inv, $"Target: export peak RSS under {ExportBenchmark.TargetPeakRssMb} MB. Load average (1/5/15 min) before: {r.LoadBefore}, after: {r.LoadAfter}.");
        md.AppendLine();
        md.AppendLine("| step | wall s | peak RSS MB | max anon MB | max file-backed MB | CPU user+sys s | output GB | GB/s |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        if (r.Create is { } c)
            md.AppendLine(inv, $"| `base create --preset 7b` | {c.WallSeconds:F1} | {c.PeakRssMb:F0} | {c.MaxRssAnonMb:F0} | {c.MaxRssFileMb:F0} | {c.UserSeconds + c.SystemSeconds:F1} | {r.CheckpointBytes / 1e9:F2} | {r.CheckpointBytes / 1e9 / c.WallSeconds:F2} |");
        else
            md.AppendLine(inv, $"| `base create --preset 7b` | reused | | | | | {r.CheckpointBytes / 1e9:F2} | |");
        for (var i = 0; i < r.Exports.Count; i++)
        {
            var e = r.Exports[i];
            var x = e.Run;
            md.AppendLine(inv, $"| `export --type f16` run {i + 1} | {x.WallSeconds:F1} | {x.PeakRssMb:F0} | {x.MaxRssAnonMb:F0} | {x.MaxRssFileMb:F0} | {x.UserSeconds + x.SystemSeconds:F1} | {e.OutputBytes / 1e9:F2} | {e.ThroughputGbPerSecond:F2} |");
        }
        md.AppendLine();
        md.AppendLine("Where the export's time goes (from the CLI's own progress lines):");
        md.AppendLine();
        md.AppendLine("| run | input in page cache | startup + open + tokenizer s | header + tensors s | fsync + rename s | exit s |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|");
        for (var i = 0; i < r.Exports.Count; i++)
        {
            var e = r.Exports[i];
            md.AppendLine(inv, $"| {i + 1} | {e.InputCachedFraction:P0} | {e.StartupSeconds:F1} | {e.TensorSeconds:F1} | {e.FlushSeconds:F1} | {e.ExitSeconds:F1} |");
        }
        md.AppendLine();
        md.AppendLine(r.Exports.Count > 1
            ? (r.Deterministic
                ? $"Deterministic: all {r.Exports.Count} runs wrote identical bytes (SHA-256 `{r.Exports[0].Sha256}`)."
                : "NOT deterministic: runs wrote different bytes: " + string.Join(", ", r.Exports.Select(e => e.Sha256[..16])))
            : $"One run (SHA-256 `{r.Exports[0].Sha256}`); pass `--runs 2` to check determinism.");
    }

    public static void AppendGenerate(StringBuilder md, GenerateBenchResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        var first = r.Timings[0];
        md.AppendLine();
        md.AppendLine(inv, $"## generate-tiny: greedy generation on the tiny preset (3.5M parameters)");
        md.AppendLine();
        md.AppendLine(inv, $"Same GGUF, same {first.PromptTokens} prompt ids, {first.NewTokens} new tokens, greedy, {r.Threads} threads; model loaded and warmed up,");
        md.AppendLine(inv, $"median of {GenerateBenchmark.Runs} runs (best = the fastest run, the least disturbed by other work on the machine).");
        md.AppendLine("Prefill = a 1-token generation; decode tokens/s = (N - 1) / (generate - prefill), from the medians.");
        md.AppendLine();
        md.AppendLine(inv, $"Load average (1/5/15 min) before: {r.LoadBefore}, after: {r.LoadAfter}; above {Environment.ProcessorCount} means other work shared the cores.");
        md.AppendLine();
        md.AppendLine("| engine | GGUF | compute | prefill ms | generate ms (median / min) | tokens/s (median / best) | decode tokens/s | ratio to llama.cpp f32 (median / best) | same ids as llama.cpp f32 | peak RSS MB |");
        md.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
        var reference = r.Timings.First(t => t.Engine.StartsWith("llama.cpp", StringComparison.Ordinal) && t.Compute == "f32");
        foreach (var t in r.Timings)
        {
            var same = t.Ids.Zip(reference.Ids).TakeWhile(p => p.First == p.Second).Count();
            md.AppendLine(inv, $"| {t.Engine} | {t.Weights} | {t.Compute} | {t.PrefillSeconds * 1000:F2} | {t.GenerateSeconds * 1000:F1} / {t.GenerateMinSeconds * 1000:F1} | {t.TokensPerSecond:F0} / {t.NewTokens / t.GenerateMinSeconds:F0} | {t.DecodeTokensPerSecond:F0} | {t.TokensPerSecond / reference.TokensPerSecond:F2} / {reference.GenerateMinSeconds / t.GenerateMinSeconds:F2} | {same}/{t.NewTokens} | {t.PeakRssMb:F0} |");
        }
    }
}

using Ertas.TestSupport;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Ertas.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Bench;

/// <summary>One dequantizer on one output type: wall times of full dequantizations of the weight.</summary>
public sealed record Nf4DequantTiming(string Method, string Output, long Elements, int BytesPerWeight, double MedianSeconds, double BestSeconds, bool SameBitsAsOurs)
{
    /// <summary>Output bytes written per second (the weight as bf16 or float32), from the median.</summary>
    public double GBps => Elements * (double)BytesPerWeight / MedianSeconds / 1e9;
}

public sealed record Nf4DequantBenchResult(long Rows, long Columns, int Threads, int Runs, double QuantizeSeconds,
    IReadOnlyList<Nf4DequantTiming> Timings, string LoadBefore, string LoadAfter, double PeakRssMb = 0);

/// <summary>
/// <c>nf4-dequant</c>: NF4 (double-quantized, bitsandbytes' layout) to bf16 and float32 for one 4096 x 14336 weight
/// (Mistral 7B's gate/up projection), 2 threads: our C# kernel into a reused buffer and into a fresh tensor (whose
/// pages the kernel must fault in and zero first: glibc mmaps every allocation above 32 MB afresh), the
/// torch-ops pair-table formulation it replaced (<see cref="Nf4Tensor.DequantizeWithTorchOps"/>), and the plain
/// TorchSharp formulation (shift, mask, interleave, gather, scale).
/// </summary>
public static class Nf4DequantBenchmark
{
    public const int Rows = 4096, Columns = 14336, Threads = 2, Runs = 5;

    public static Nf4DequantBenchResult Run(BenchEnvironment env)
    {
        var loadBefore = GenerateBenchmark.LoadAverage();
        var (result, run) = TrainingWorker.Launch<Nf4DequantBenchResult>(env, "nf4-dequant", "nf4");
        return result with { LoadBefore = loadBefore, LoadAfter = GenerateBenchmark.LoadAverage(), PeakRssMb = run.PeakRssMb };
    }

    public static Nf4DequantBenchResult Measure(TextWriter log)
    {
        set_num_threads(Threads);
        using var generator = new torch.Generator(7);
        var clock = Stopwatch.StartNew();
        Nf4Tensor q;
        using (var weight = randn([Rows, Columns], ScalarType.Float32, generator: generator).mul_(0.02).to(ScalarType.BFloat16))
        {
            clock.Restart();
            q = Nf4.Quantize(weight);
        }
        var quantizeSeconds = clock.Elapsed.TotalSeconds;
        log.WriteLine($"quantized {Rows}x{Columns} in {quantizeSeconds:F2} s; {TrainingWorker.DescribeMemory()}");

        var timings = new List<Nf4DequantTiming>();
        using (q)
        {
            foreach (var (dtype, name, bytes) in new[] { (ScalarType.BFloat16, "bf16", 2), (ScalarType.Float32, "f32", 4) })
            {
                using var ours = q.Dequantize(dtype);
                using var reused = empty(q.Shape, dtype);
                foreach (var (method, dequantize) in new (string, Func<Tensor>)[]
                {
                    ("ours, into a reused buffer (DequantizeInto, as training does)", () => { q.DequantizeInto(reused); return reused.alias(); }),
                    ("ours, into a fresh tensor (Dequantize)", () => q.Dequantize(dtype)),
                    ("torch ops, pair-table gather (previous Dequantize)", () => q.DequantizeWithTorchOps(dtype)),
                    ("plain TorchSharp: shift, mask, gather, scale", () => PlainNf4Dequantizer.Dequantize(q, dtype)),
                })
                {
                    bool same;
                    using (var first = dequantize()) same = BitEqual(ours, first); // also the warm-up
                    var seconds = new double[Runs];
                    for (var i = 0; i < Runs; i++)
                    {
                        clock.Restart();
                        using (dequantize()) { }
                        seconds[i] = clock.Elapsed.TotalSeconds;
                    }
                    Array.Sort(seconds);
                    var timing = new Nf4DequantTiming(method, name, q.ElementCount, bytes, seconds[Runs / 2], seconds[0], same);
                    timings.Add(timing);
                    log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{name} {method}: median {timing.MedianSeconds * 1e3:F1} ms, best {timing.BestSeconds * 1e3:F1} ms, {timing.GBps:F2} GB/s, same bits {same}"));
                }
            }
        }
        return new Nf4DequantBenchResult(Rows, Columns, Threads, Runs, quantizeSeconds, timings, "", "");
    }

    private static bool BitEqual(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.bytes.SequenceEqual(b.bytes);

    public static void AppendMarkdown(StringBuilder md, Nf4DequantBenchResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        md.AppendLine();
        md.AppendLine(inv, $"## nf4-dequant: NF4 to bf16 / float32, one {r.Rows} x {r.Columns} weight, {r.Threads} threads");
        md.AppendLine();
        md.AppendLine(inv, $"One weight of Mistral 7B's gate/up shape ({r.Rows * r.Columns / 1e6:F1} M weights), NF4 with double-quantized absmax");
        md.AppendLine(inv, $"(bitsandbytes' layout), dequantized in-process after a warm-up; median (best) of {r.Runs}. GB/s = output bytes written");
        md.AppendLine(inv, $"(2 per weight for bf16, 4 for float32) per second. Same bits = bit-identical to our kernel's output. `set_num_threads({r.Threads})`;");
        md.AppendLine(inv, $"our kernel uses as many .NET threads. A fresh 117 or 235 MB tensor is a fresh mmap whose pages fault in on first write,");
        md.AppendLine(inv, $"which is why training dequantizes into reused buffers (`Nf4Workspace`). Peak RSS of the child {r.PeakRssMb:F0} MB (quantizing the weight: {r.QuantizeSeconds:F1} s). Load average before: {r.LoadBefore}, after: {r.LoadAfter}.");
        md.AppendLine();
        md.AppendLine("| output | method | median ms | best ms | GB/s | vs plain TorchSharp | same bits |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---|");
        foreach (var group in r.Timings.GroupBy(t => t.Output))
        {
            var plain = group.Last();
            foreach (var t in group)
                md.AppendLine(inv, $"| {t.Output} | {t.Method} | {t.MedianSeconds * 1e3:F1} | {t.BestSeconds * 1e3:F1} | {t.GBps:F2} | {plain.MedianSeconds / t.MedianSeconds:F1}x | {(t.SameBitsAsOurs ? "yes" : "**no**")} |");
        }
    }
}

using System.Diagnostics;
using System.Runtime.InteropServices;
using Ertas.Gguf;
using Ertas.Gguf.Quantization;
using LLama.Native;

namespace Ertas.Bench;

/// <summary>One block type, single-threaded: our quantizer and ggml's on the same floats.</summary>
public sealed record KernelTiming(GgmlType Type, long Floats, double OursSeconds, double GgmlSeconds, bool SameBytes)
{
    public double OursMFloatsPerSecond => Floats / 1e6 / OursSeconds;
    public double GgmlMFloatsPerSecond => Floats / 1e6 / GgmlSeconds;

    /// <summary>Above 1: we are faster.</summary>
    public double SpeedRatio => GgmlSeconds / OursSeconds;
}

public sealed record KernelBenchResult(int Rows, int RowLength, int Runs, string GgmlPath, string LoadBefore, string LoadAfter, IReadOnlyList<KernelTiming> Timings);

/// <summary>
/// <c>quantize-kernels</c>: each block quantizer on one thread against <c>ggml_quantize_chunk</c> (the
/// <c>libggml-base.so</c> LLamaSharp ships, what llama_model_quantize runs per tensor chunk) on the same Gaussian
/// rows, median of a few runs after a warm-up, with a byte comparison so a speed-up can never hide a changed byte.
/// In-process: both sides are single-threaded calls on the same buffers.
/// </summary>
public static unsafe class QuantizeKernelBenchmark
{
    public const int Rows = 256;
    public const int RowLength = 4096;
    public const int Runs = 5;

    private static readonly GgmlType[] Types =
    [
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    ];

    public static KernelBenchResult Run(TextWriter log, IReadOnlyList<GgmlType>? only = null)
    {
        var path = LoadGgml(out var quantizeChunk);
        var source = GaussianRows(Rows * RowLength, seed: 7);
        var loadBefore = GenerateBenchmark.LoadAverage();
        var timings = new List<KernelTiming>();
        foreach (var type in only ?? Types)
        {
            var bytes = checked((int)type.Info().ByteSize(source.Length));
            var ours = new byte[bytes];
            var theirs = new byte[bytes];
            var oursSeconds = Median(() => Quantizers.QuantizeRows(type, source, ours, Rows, RowLength, threads: 1));
            var ggmlSeconds = Median(() =>
            {
                fixed (float* src = source)
                fixed (byte* dst = theirs)
                    quantizeChunk((int)type, src, dst, 0, Rows, RowLength, null);
            });
            var timing = new KernelTiming(type, source.Length, oursSeconds, ggmlSeconds, ours.AsSpan().SequenceEqual(theirs));
            log.WriteLine($"  {type}: ours {timing.OursSeconds * 1000:F1} ms, ggml {timing.GgmlSeconds * 1000:F1} ms, " +
                          $"ratio {timing.SpeedRatio:F2} (>1 = ours faster), same bytes: {timing.SameBytes}");
            timings.Add(timing);
        }
        return new KernelBenchResult(Rows, RowLength, Runs, path, loadBefore, GenerateBenchmark.LoadAverage(), timings);
    }

    /// <summary>
    /// Warm-up, then the median of <see cref="Runs"/> timed calls. The warm-up runs for a while rather than a few
    /// calls: .NET's tiered JIT replaces the first code (tier 0, then on-stack replacement) with optimized code on a
    /// background thread only after a delay, and a multi-minute `ertas quantize` only ever sees the optimized code.
    /// </summary>
    private static double Median(Action action) =>
        Timing.MedianSeconds(action, Runs, warmUpCalls: 3, warmUpAtLeast: TimeSpan.FromSeconds(1.5));

    /// <summary>Seeded normal values (Box-Muller) scaled like trained weights, with a few outliers as real rows have.</summary>
    private static float[] GaussianRows(int count, int seed)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (var i = 0; i < count; i++)
        {
            var u1 = 1.0 - random.NextDouble();
            var u2 = random.NextDouble();
            values[i] = (float)(0.02 * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
            if (random.Next(4096) == 0)
                values[i] *= 20;
        }
        return values;
    }

    /// <summary>The ggml LLamaSharp loaded (not a second copy), and its ggml_quantize_chunk.</summary>
    private static string LoadGgml(out delegate* unmanaged<int, float*, void*, long, long, long, float*, nuint> quantizeChunk)
    {
        NativeApi.llama_empty_call();
        var path = File.ReadLines("/proc/self/maps")
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length >= 6)
            .Select(fields => string.Join(' ', fields.Skip(5)))
            .FirstOrDefault(file => Path.GetFileName(file) == "libggml-base.so")
            ?? throw new InvalidOperationException("LLamaSharp loaded llama.cpp but no libggml-base.so appears in /proc/self/maps");
        var library = NativeLibrary.Load(path);
        var address = NativeLibrary.GetExport(library, "ggml_quantize_chunk");
        quantizeChunk = (delegate* unmanaged<int, float*, void*, long, long, long, float*, nuint>)address;
        return path;
    }
}

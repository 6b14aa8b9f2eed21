using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

public sealed record ThroughputResult(long Elements, double FastSeconds, double NaiveSeconds, bool SameValues)
{
    /// <summary>GB/s counted as bf16 output bytes written (2 per weight).</summary>
    public double FastGBps => Elements * 2 / FastSeconds / 1e9;
    public double NaiveGBps => Elements * 2 / NaiveSeconds / 1e9;

    public override string ToString() =>
        $"NF4 -> bf16 dequantize, {Elements} weights: pair-LUT {FastSeconds * 1e3:F1} ms ({FastGBps:F2} GB/s of bf16 out), " +
        $"naive shift/mask/gather {NaiveSeconds * 1e3:F1} ms ({NaiveGBps:F2} GB/s), speedup {NaiveSeconds / FastSeconds:F2}x, " +
        $"threads {get_num_threads()}";
}

/// <summary>The plain formulation to compare against, and the timing loop.</summary>
internal static class Nf4Throughput
{
    /// <summary>Unpack both nibbles with shift and mask, interleave, gather each code from the 16-value table, scale.</summary>
    public static Tensor NaiveDequantize(Nf4Tensor q, ScalarType dtype = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        var table = tensor(Nf4.Code.ToArray(), ScalarType.Float32, q.Device);
        var high = q.PackedCodes.bitwise_right_shift(4);
        var low = q.PackedCodes.bitwise_and(15);
        var codes = stack([high, low], 1).view(-1).to(ScalarType.Int64);                 // (blocks * 64)
        var blocks = q.BlockCount;
        var values = table.index_select(0, codes).view(blocks, Nf4.BlockSize);           // (blocks, 64)
        var absmax = q.DequantizeAbsmax().narrow(0, 0, blocks);
        var weight = (values * absmax.unsqueeze(1)).view(-1).narrow(0, 0, q.ElementCount).view(q.Shape);
        return weight.to(dtype).MoveToOuterDisposeScope();
    }

    public static ThroughputResult Measure(Nf4Tensor q, int repeats)
    {
        bool same;
        using (var a = q.Dequantize(ScalarType.BFloat16))
        using (var b = NaiveDequantize(q, ScalarType.BFloat16))
            same = Tensors.BitEqual(a, b); // also warms both paths up
        var fast = Best(() => q.Dequantize(ScalarType.BFloat16), repeats);
        var naive = Best(() => NaiveDequantize(q, ScalarType.BFloat16), repeats);
        return new ThroughputResult(q.ElementCount, fast, naive, same);
    }

    private static double Best(Func<Tensor> run, int repeats)
    {
        var best = double.MaxValue;
        for (var i = 0; i < repeats; i++)
        {
            var watch = Stopwatch.StartNew();
            using (run()) { }
            best = Math.Min(best, watch.Elapsed.TotalSeconds);
        }
        return best;
    }
}

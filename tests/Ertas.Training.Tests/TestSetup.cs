using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

internal static class Tensors
{
    /// <summary>Seeded standard-normal values from torch's own CPU generator (same seed, same bytes).</summary>
    public static Tensor Gaussian(long[] shape, long seed, double std = 1.0)
    {
        using var generator = new Generator((ulong)seed);
        return randn(shape, ScalarType.Float32, generator: generator) * std;
    }

    public static float[] Values(Tensor t)
    {
        using var cpu = t.detach().to(ScalarType.Float32, CPU).contiguous();
        return cpu.data<float>().ToArray();
    }

    public static double MaxAbsDiff(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return (a.to(ScalarType.Float32) - b.to(ScalarType.Float32)).abs().max().item<float>();
    }

    public static bool BitEqual(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) &&
        MemoryMarshal.AsBytes(Values(a).AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(Values(b).AsSpan()));
}

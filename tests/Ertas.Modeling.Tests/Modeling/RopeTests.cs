using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling.Tests.Modeling;

public sealed class RopeTests
{
    private static float RotatedDot(float[] q, float[] k, long qPosition, long kPosition)
    {
        using var scope = NewDisposeScope();
        var inverse = Rope.InverseFrequencies(q.Length, 10000.0);
        var (cos, sin) = Rope.CosSin(inverse, tensor(new[] { qPosition, kPosition }), ScalarType.Float32); // (2, head_dim)
        var rq = Rope.Apply(tensor(q, [1, q.Length]), cos.narrow(0, 0, 1), sin.narrow(0, 0, 1));
        var rk = Rope.Apply(tensor(k, [1, k.Length]), cos.narrow(0, 1, 1), sin.narrow(0, 1, 1));
        return (rq * rk).sum().item<float>();
    }

    [Fact]
    public void RotatedDotProductsDependOnlyOnRelativePosition()
    {
        var random = new Random(11);
        var q = Enumerable.Range(0, 16).Select(_ => 2 * random.NextSingle() - 1).ToArray();
        var k = Enumerable.Range(0, 16).Select(_ => 2 * random.NextSingle() - 1).ToArray();

        var reference = RotatedDot(q, k, 5, 2);
        foreach (var (m, n) in new (long, long)[] { (3, 0), (10, 7), (100, 97), (1000, 997) })
            Assert.True(Math.Abs(RotatedDot(q, k, m, n) - reference) < 1e-3f * Math.Max(1f, Math.Abs(reference)), $"offset ({m}, {n})");
        Assert.True(Math.Abs(RotatedDot(q, k, 5, 1) - reference) > 1e-3f, "a different offset must give a different score");
    }

    [Fact]
    public void PositionZeroIsTheIdentityAndRotateHalfSwapsHalvesWithASign()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new float[] { 1, 2, 3, 4 }, [1, 4]);
        Assert.Equal(new float[] { -3, -4, 1, 2 }, Rope.RotateHalf(x).data<float>().ToArray());
        var (cos, sin) = Rope.CosSin(Rope.InverseFrequencies(4, 10000.0), tensor(new long[] { 0 }), ScalarType.Float32);
        Assert.Equal(new float[] { 1, 2, 3, 4 }, Rope.Apply(x, cos, sin).data<float>().ToArray());
        Assert.Equal(new float[] { 1f, 0.01f }, Rope.InverseFrequencies(4, 10000.0).data<float>().ToArray());
    }
}

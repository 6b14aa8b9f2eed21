using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling.Tests.Modeling;

/// <summary>ScalarSafe replaces TorchSharp's own forms at call sites that must keep their results: each helper must give
/// the same dtype, shape and bytes as the form it replaces.</summary>
public sealed class ScalarSafeTests
{
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void EachHelperGivesTheBitsOfTheTorchSharpFormItReplaces(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var generator = new torch.Generator(7);
        var a = randn([5, 67], generator: generator).to(dtype);
        var b = randn([5, 67], generator: generator).to(dtype);
        var positive = rand([5, 67], generator: generator).to(dtype) + 0.5;
        var mask = randn([5, 67], generator: generator) > 0;
        var ints = randint(-40, 40, new long[] { 5, 67 }, generator: generator);

        AssertSameBits(a + b, a.Plus(b));
        AssertSameBits(a + 1e-6, a.Plus(1e-6));
        AssertSameBits(a + 0.123f, a.Plus(0.123f));
        AssertSameBits(a * 0.37, a.Times(0.37));
        AssertSameBits(ints * 16, ints.Times(16));
        AssertSameBits(a / 3.3, a.DividedBy(3.3));
        AssertSameBits(a / 7, a.DividedBy(7));
        AssertSameBits(ints / 7L, ints.DividedBy(7L));
        AssertSameBits(2.5 / positive, ScalarSafe.Divide(2.5, positive));
        AssertSameBits(a.pow(2), a.Power(2));
        AssertSameBits(a.clone().add_(1e-3), a.clone().AddInPlace(1e-3));
        AssertSameBits(a.clone().add_(b), a.clone().AddInPlace(b));
        AssertSameBits(a.clone().mul_(0.999), a.clone().MulInPlace(0.999));
        AssertSameBits(a.clone().addcmul_(b, b, 0.001), a.clone().AddcmulInPlace(b, b, 0.001));
        AssertSameBits(a.clone().addcdiv_(b, positive, -0.01), a.clone().AddcdivInPlace(b, positive, -0.01));
        AssertSameBits(ints.masked_fill(mask, 0), ints.MaskedFill(mask, 0));
        AssertSameBits(a.clone().masked_fill_(mask, double.NegativeInfinity), a.clone().MaskedFillInPlace(mask, double.NegativeInfinity));
        AssertSameBits(a.clamp_max(1.0), a.ClampMax(1.0));
        AssertSameBits(ints.ge(0), ints.AtLeast(0));
        AssertSameBits(ints.lt(9), ints.LessThan(9));
        AssertSameBits(ints.ne(9), ints.NotEqual(9));
        AssertSameBits(arange(0, 64, 2, dtype: ScalarType.Float32), ScalarSafe.Arange(0, 64, 2, ScalarType.Float32));
        AssertSameBits(arange(300L, dtype: ScalarType.Int64), ScalarSafe.Arange(0, 300, 1, ScalarType.Int64));
    }

    [Fact]
    public void L2NormIsVectorNormOrderTwoBitForBit()
    {
        using var scope = NewDisposeScope();
        using var generator = new torch.Generator(11);
        // Large enough for libtorch to split the reduction, in the shapes gradient clipping sees (2-D, 1-D stacked norms).
        foreach (var shape in new long[][] { [1031, 517], [4099], [3, 7, 129] })
        {
            var x = randn(shape, generator: generator) * 3;
            AssertSameBits(linalg.vector_norm(x, 2), x.L2Norm());
            var fromBf16 = x.to(ScalarType.BFloat16).to(ScalarType.Float32);
            AssertSameBits(linalg.vector_norm(fromBf16, 2), fromBf16.L2Norm());
        }
    }

    private static void AssertSameBits(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.Equal(expected.contiguous().bytes.ToArray(), actual.contiguous().bytes.ToArray());
    }
}

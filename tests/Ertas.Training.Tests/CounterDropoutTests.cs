using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

public sealed class CounterDropoutTests
{
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void Mask_KeepsExactlyTheElementsTheScalarDefinitionKeeps_BitForBit_AcrossChunksAndTheTail(ScalarType dtype)
    {
        const double p = 0.3;
        const ulong seed = 0x0123456789ABCDEF;
        var elements = 3 * 65536 + 37; // three full chunks, a partial one and a tail shorter than a vector
        using var source = Tensors.Gaussian([elements], seed: 1).to(dtype);
        using var masked = CounterDropout.Mask(source, seed, p);
        var before = source.to(ScalarType.Float32).data<float>().ToArray();
        var after = masked.to(ScalarType.Float32).data<float>().ToArray();
        for (var i = 0; i < elements; i++)
        {
            var expected = CounterDropout.Kept(seed, i, p) ? before[i] : 0f;
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(after[i]), $"element {i}: {after[i]} against {expected}");
        }
    }

    [Fact]
    public void Mask_InPlace_OneThreadOrTwo_GivesTheSameBits()
    {
        using var source = Tensors.Gaussian([5, 70001], seed: 2).to(ScalarType.BFloat16);
        using var outOfPlace = CounterDropout.Mask(source, 99, 0.1);
        using var inPlace = source.clone();
        var threads = get_num_threads();
        try
        {
            set_num_threads(1);
            CounterDropout.Mask(inPlace, inPlace, 99, 0.1);
        }
        finally
        {
            set_num_threads(threads);
        }
        Assert.True(Tensors.BitEqual(outOfPlace, inPlace));
    }

    [Theory]
    [InlineData(0.05)]
    [InlineData(0.5)]
    public void KeepRate_IsOneMinusP_WithinFiveStandardDeviations_AndNeighboursAreIndependent(double p)
    {
        const int elements = 1 << 20;
        using var ones = torch.ones(elements, ScalarType.Float32);
        using var masked = CounterDropout.Mask(ones, 12345, p);
        var kept = masked.data<float>().ToArray();
        var keptCount = kept.Count(v => v == 1f);
        var sd = Math.Sqrt(elements * p * (1 - p));
        Assert.InRange(keptCount, elements * (1 - p) - 5 * sd, elements * (1 - p) + 5 * sd);
        // Both halves of one hash (i even, i + 1) and neighbouring hashes (i odd, i + 1) drop together at rate p^2.
        foreach (var offset in new[] { 0, 1 })
        {
            var pairs = 0;
            var bothDropped = 0;
            for (var i = offset; i + 1 < elements; i += 2)
            {
                pairs++;
                if (kept[i] == 0 && kept[i + 1] == 0) bothDropped++;
            }
            var pairSd = Math.Sqrt(pairs * p * p * (1 - p * p));
            Assert.InRange(bothDropped, pairs * p * p - 5 * pairSd, pairs * p * p + 5 * pairSd);
        }
    }

    [Fact]
    public void Masks_DependOnTheSeed_AndADrawnSeedFollowsTorchsGenerator()
    {
        using var ones = torch.ones(4096, ScalarType.Float32);
        using var a = CounterDropout.Mask(ones, 1, 0.5);
        using var b = CounterDropout.Mask(ones, 2, 0.5);
        using var aAgain = CounterDropout.Mask(ones, 1, 0.5);
        Assert.True(Tensors.BitEqual(a, aAgain));
        Assert.False(Tensors.BitEqual(a, b));

        manual_seed(7);
        var first = CounterDropout.DrawSeed();
        var second = CounterDropout.DrawSeed();
        manual_seed(7);
        Assert.Equal(first, CounterDropout.DrawSeed());
        Assert.NotEqual(first, second);
    }

    [Fact]
    public void ZeroProbability_KeepsEverything_AndBadProbabilitiesAreRejected()
    {
        using var source = Tensors.Gaussian([1000], seed: 3);
        using var masked = CounterDropout.Mask(source, 5, 0);
        Assert.True(Tensors.BitEqual(source, masked));
        Assert.Throws<ArgumentOutOfRangeException>(() => CounterDropout.Threshold(1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => CounterDropout.Threshold(-0.1));
        using var ints = torch.ones(10, ScalarType.Int32);
        Assert.Throws<ArgumentException>(() => CounterDropout.Mask(ints, ints, 1, 0.1));
    }
}

public sealed class CounterDropoutTorchOpsTests
{
    [Fact]
    public void TheOtherDevicesPath_KeepsOneMinusP_AndRepeatsItsMaskForTheSameSeed()
    {
        using var ones = torch.ones(1 << 16, ScalarType.BFloat16);
        using var first = torch.empty_like(ones);
        using var again = torch.empty_like(ones);
        using var other = torch.empty_like(ones);
        CounterDropout.MaskWithTorchOps(ones, first, 11, 0.25);
        CounterDropout.MaskWithTorchOps(ones, again, 11, 0.25);
        CounterDropout.MaskWithTorchOps(ones, other, 12, 0.25);
        Assert.True(Tensors.BitEqual(first, again));
        Assert.False(Tensors.BitEqual(first, other));
        var kept = Tensors.Values(first);
        Assert.All(kept, v => Assert.True(v is 0f or 1f));
        var sd = Math.Sqrt(kept.Length * 0.25 * 0.75);
        Assert.InRange(kept.Count(v => v == 1f), kept.Length * 0.75 - 5 * sd, kept.Length * 0.75 + 5 * sd);
    }
}

using Ertas.TestSupport;
using Xunit.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

public sealed class Nf4Tests(ITestOutputHelper output)
{
    private static byte[] Bytes(Tensor t) => t.cpu().data<byte>().ToArray();

    [Fact]
    public void Thresholds_AreTheMidpointsOfAdjacentCodes()
    {
        var code = Nf4.Code;
        var thresholds = Nf4.Thresholds;
        Assert.Equal(16, code.Length);
        Assert.Equal(15, thresholds.Length);
        for (var i = 0; i < 15; i++)
            Assert.Equal(((double)code[i] + code[i + 1]) / 2, thresholds[i], 1e-7); // float literals of the double midpoints
    }

    [Fact]
    public void QuantizeNormalized_CodeValuesMapToThemselves()
    {
        for (var i = 0; i < 16; i++)
            Assert.Equal(i, Nf4.QuantizeNormalized(Nf4.Code[i]));
    }

    [Fact]
    public void QuantizeNormalized_ExactMidpointTakesTheLowerCode_JustAboveTakesTheUpper()
    {
        for (var i = 0; i < 15; i++)
        {
            var midpoint = Nf4.Thresholds[i];
            Assert.Equal(i, Nf4.QuantizeNormalized(midpoint));
            Assert.Equal(i + 1, Nf4.QuantizeNormalized(MathF.BitIncrement(midpoint)));
            Assert.Equal(i, Nf4.QuantizeNormalized(MathF.BitDecrement(midpoint)));
        }
        Assert.Equal(0, Nf4.QuantizeNormalized(float.NaN)); // bitsandbytes' tree: NaN fails every comparison
    }

    [Fact]
    public void Quantize_HandMadeBlockAtCodePoints_GivesThoseCodesPackedHighNibbleFirst()
    {
        // One block of 64: element j = 2 * code[j % 16], so absmax is 2 and value / absmax is exactly a code value.
        var values = Enumerable.Range(0, 64).Select(j => 2f * Nf4.Code[j % 16]).ToArray();
        using var q = Nf4.Quantize(values, [64]);
        var packed = Bytes(q.PackedCodes);
        Assert.Equal(32, packed.Length);
        for (var j = 0; j < 64; j += 2)
            Assert.Equal((byte)((j % 16) << 4 | (j + 1) % 16), packed[j / 2]);
        Assert.Equal(0x01, packed[0]);  // elements 0 and 1: codes 0 and 1
        Assert.Equal(0xEF, packed[7]);  // elements 14 and 15: codes 14 and 15
        using var restored = q.Dequantize();
        Assert.Equal(values, Tensors.Values(restored)); // one block: the double-quantized absmax is exactly the offset
    }

    [Fact]
    public void Quantize_PacksTheFirstElementIntoTheHighNibble()
    {
        var values = new float[64];
        values[0] = 1f;   // code 15
        values[1] = -1f;  // code 0
        values[2] = 0f;   // code 7
        values[3] = 0.44070982933044434f; // code 12
        using var q = Nf4.Quantize(values, [64]);
        var packed = Bytes(q.PackedCodes);
        Assert.Equal(0xF0, packed[0]);
        Assert.Equal(0x7C, packed[1]);
        Assert.Equal(0x77, packed[2]); // zeros
    }

    [Fact]
    public void Quantize_MidpointsInsideABlock_RoundToTheLowerCode()
    {
        var values = new float[64];
        values[63] = 1f; // absmax 1: value * (1 / absmax) is the value itself
        for (var i = 0; i < 15; i++)
        {
            values[2 * i] = Nf4.Thresholds[i];
            values[2 * i + 1] = MathF.BitIncrement(Nf4.Thresholds[i]);
        }
        using var q = Nf4.Quantize(values, [64]);
        var packed = Bytes(q.PackedCodes);
        for (var i = 0; i < 15; i++)
            Assert.Equal((byte)(i << 4 | (i + 1)), packed[i]);
    }

    [Fact]
    public void DynamicMap_IsBitsandbytesSignedDynamicType()
    {
        var map = Nf4.DynamicMap();
        Assert.Equal(256, map.Length);
        Assert.True(map.Zip(map.Skip(1)).All(p => p.First <= p.Second), "sorted");
        Assert.Equal(0f, map[127]);
        Assert.Equal(1f, map[255]);
        // The largest fraction of the top exponent: mean of the last two of linspace(0.1, 1, 65) = 0.9929688.
        Assert.Equal(-0.99296875f, map[0], 6);
        // The smallest magnitude: 1e-6 * mean(0.1, 1) = 5.5e-7.
        Assert.Equal(5.5e-7f, map[128], 12);
        for (var i = 0; i < 127; i++)
            Assert.Equal(-map[254 - i], map[i]); // negatives mirror the positives below 1.0
    }

    [Fact]
    public void QuantizeDynamic_MapValuesMapToTheirIndex_AndMidpointsFollowTheKernelsTieRule()
    {
        var map = Nf4.DynamicMap();
        for (var i = 0; i < 256; i++)
            Assert.Equal(i, Nf4.QuantizeDynamic(map, map[i]));
        // Between two codes the nearer wins; exactly in the middle, dQuantize keeps the last probe of its search.
        var mid = (map[200] + map[201]) * 0.5f;
        Assert.Equal(200, Nf4.QuantizeDynamic(map, MathF.BitDecrement(mid)));
        Assert.Equal(201, Nf4.QuantizeDynamic(map, MathF.BitIncrement(mid)));
    }

    [Fact]
    public void GaussianWeights_RoundTripRelativeRmsErrorIsAboutATenth()
    {
        using var w = Tensors.Gaussian([1024, 1024], seed: 11, std: 0.02);
        using var q = Nf4.Quantize(w);
        using var restored = q.Dequantize();
        using var diff = restored - w;
        var relativeRms = diff.pow(2).mean().sqrt().item<float>() / w.pow(2).mean().sqrt().item<float>();

        // The absmax alone, through its 8-bit double quantization.
        var values = Tensors.Values(w);
        var trueAbsmax = Enumerable.Range(0, values.Length / 64).Select(b => values.AsSpan(b * 64, 64).ToArray().Max(MathF.Abs)).ToArray();
        using var absmax = q.DequantizeAbsmax();
        var restoredAbsmax = Tensors.Values(absmax);
        var absmaxRelError = trueAbsmax.Select((a, i) => Math.Abs(restoredAbsmax[i] - a) / a).Max();
        output.WriteLine($"NF4 + double quant, N(0, 0.02^2) 1024x1024: relative RMS error {relativeRms:F4}; max relative absmax error {absmaxRelError:E2}");

        Assert.InRange(relativeRms, 0.08, 0.12);
        Assert.True(absmaxRelError < 0.01, $"absmax error {absmaxRelError}");
    }

    [Fact]
    public void DoubleQuantization_CostsAbout0Point127BitsPerWeight()
    {
        using var w = Tensors.Gaussian([1024, 1024], seed: 3);
        using var q = Nf4.Quantize(w);
        const long n = 1024 * 1024;
        Assert.Equal(n / 2, q.PackedCodes.NumberOfElements);
        Assert.Equal(n / 64, q.QuantizedAbsmax.NumberOfElements);
        Assert.Equal(n / 64 / 256, q.AbsmaxScales.NumberOfElements);
        Assert.Equal(n / 2 + n / 64 + 4 * (n / 64 / 256) + 4, q.StorageBytes);
        var overheadBits = (q.StorageBytes - n / 2) * 8.0 / n;
        output.WriteLine($"absmax overhead: {overheadBits:F4} bits per weight ({q.StorageBytes * 8.0 / n:F4} in all)");
        Assert.InRange(overheadBits, 0.1268, 0.1271); // 8/64 + 32/(64*256) + the offset
    }

    [Fact]
    public void Quantize_PartialLastBlock_RoundTripsTheRealElementsOnly()
    {
        using var w = Tensors.Gaussian([3, 50], seed: 5); // 150 = 2 blocks + 22
        using var q = Nf4.Quantize(w);
        Assert.Equal(3, q.BlockCount);
        using var restored = q.Dequantize();
        Assert.Equal(new long[] { 3, 50 }, restored.shape);
        Assert.True(Tensors.MaxAbsDiff(restored, w) < 0.5);
    }

    [Fact]
    public void Quantize_TorchPath_GivesTheScalarReferencesBytes()
    {
        // Gaussian rows, then a zero block, exact midpoints and code points, and a partial last block.
        using var gaussian = Tensors.Gaussian([40, 64], seed: 12, std: 0.3);
        var values = Tensors.Values(gaussian).Concat(new float[64]).Concat(Nf4.Thresholds.ToArray()).Concat(Nf4.Code.ToArray())
            .Concat(Enumerable.Repeat(0.5f, 33)).Concat([1f]).ToArray();
        using var weight = tensor(values);
        using var fromTorch = Nf4.Quantize(weight);
        using var reference = Nf4.Quantize(values, [values.Length]);
        Assert.Equal(Bytes(reference.PackedCodes), Bytes(fromTorch.PackedCodes));
        Assert.Equal(Bytes(reference.QuantizedAbsmax), Bytes(fromTorch.QuantizedAbsmax));
        Assert.True(Tensors.BitEqual(reference.AbsmaxScales, fromTorch.AbsmaxScales));
        Assert.Equal(reference.AbsmaxOffset, fromTorch.AbsmaxOffset);
        Assert.Equal(0x00, Bytes(fromTorch.PackedCodes)[40 * 32]); // the zero block: NaN -> code 0, as bitsandbytes
    }

    [Fact]
    public void Quantize_SameWeight_GivesIdenticalBytes()
    {
        using var w = Tensors.Gaussian([256, 512], seed: 9);
        using var a = Nf4.Quantize(w);
        using var b = Nf4.Quantize(w);
        Assert.Equal(Bytes(a.PackedCodes), Bytes(b.PackedCodes));
        Assert.Equal(Bytes(a.QuantizedAbsmax), Bytes(b.QuantizedAbsmax));
        Assert.Equal(a.AbsmaxOffset, b.AbsmaxOffset);
        Assert.True(Tensors.BitEqual(a.AbsmaxScales, b.AbsmaxScales));
    }

    [Fact]
    public void Dequantize_Bf16_IsTheFloat32ResultRoundedOnce()
    {
        using var w = Tensors.Gaussian([128, 256], seed: 2, std: 0.05).to(ScalarType.BFloat16);
        using var q = Nf4.Quantize(w);
        using var f32 = q.Dequantize();
        using var bf16 = q.Dequantize(ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, bf16.dtype);
        using var expected = f32.to(ScalarType.BFloat16);
        Assert.True(Tensors.BitEqual(expected, bf16));
    }

    [Fact]
    public void Dequantize_MatchesANaiveShiftMaskGatherFormulation()
    {
        using var w = Tensors.Gaussian([64, 320], seed: 4);
        using var q = Nf4.Quantize(w);
        using var fast = q.Dequantize();
        using var naive = PlainNf4Dequantizer.Dequantize(q);
        Assert.True(Tensors.BitEqual(fast, naive));
    }
}

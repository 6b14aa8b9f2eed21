using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

/// <summary>The C# CPU dequantizer against the torch-ops formulation it replaces: same bits, every shape and type.</summary>
public sealed class Nf4CpuKernelTests
{
    public static TheoryData<long[]> Shapes => new()
    {
        new long[] { 64 },          // one block
        new long[] { 3, 50 },       // 150: a ragged last block of 22
        new long[] { 7, 33 },       // 231: ragged, odd count (the last byte holds one real weight)
        new long[] { 64, 320 },     // 320 whole blocks: two absmax groups of 256, the second partial
        new long[] { 509, 301 },    // 153209: several parallel chunks, 599 absmax groups of 256, ragged last block of 57
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void CpuKernel_GivesTheTorchOpsBits_Float32AndBf16(long[] shape)
    {
        using var w = Tensors.Gaussian(shape, seed: shape.Aggregate(17L, (a, b) => a * 31 + b), std: 0.05);
        using var q = Nf4.Quantize(w);
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var reference = q.DequantizeWithTorchOps(dtype);
            using var fast = q.Dequantize(dtype);
            Assert.Equal(dtype, fast.dtype);
            Assert.Equal(shape, fast.shape);
            Assert.True(Tensors.BitEqual(reference, fast), $"{dtype} [{string.Join(", ", shape)}] differs from the torch-ops result");
        }
    }

    [Fact]
    public void CpuKernel_ZeroBlocksAndOutliers_GiveTheTorchOpsBits()
    {
        // A zero block (absmax 0: every weight -0), a block with one huge outlier, and tiny values.
        var values = new float[64 * 5 + 9];
        var random = new Random(3);
        for (var i = 64; i < values.Length; i++) values[i] = (float)(random.NextDouble() - 0.5);
        values[130] = 300f;
        for (var i = 192; i < 256; i++) values[i] *= 1e-30f;
        using var q = Nf4.Quantize(values, [values.Length]);
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var reference = q.DequantizeWithTorchOps(dtype);
            using var fast = q.Dequantize(dtype);
            Assert.True(Tensors.BitEqual(reference, fast), dtype.ToString());
        }
    }

    [Theory]
    [InlineData(0x3F808000u)] // 1 + 2^-8: a tie, rounds down to the even 0x3F80
    [InlineData(0x3F818000u)] // 1 + 3 * 2^-8: a tie, rounds up to the even 0x3F82
    [InlineData(0x3F80FFFFu)] // above the midpoint: rounds up, carrying into the exponent
    [InlineData(0x7F7FFFFFu)] // the largest float: bf16 rounding overflows to infinity
    [InlineData(0x7F800000u)] // infinity (and 0 * infinity = NaN for code 7)
    [InlineData(0x7FC00001u)] // NaN with a payload
    [InlineData(0x00000001u)] // the smallest subnormal
    public void CpuKernel_Bf16RoundingIsTorchs_OnTiesOverflowSubnormalsAndNaN(uint offsetBits)
    {
        // Every quantized absmax is the dynamic map's 0 (index 127), so each block's absmax is exactly the offset, and
        // the codes 15 (1.0), 0 (-1.0), 7 (0.0) and 12 give the offset, its negation, zero and a rounded product.
        var offset = BitConverter.UInt32BitsToSingle(offsetBits);
        var packed = Enumerable.Range(0, 64).Select(i => (byte)((i % 4) switch { 0 => 0xF0, 1 => 0x7C, 2 => 0xC7, _ => 0x0F })).ToArray();
        using var q = new Nf4Tensor(
            PackedCodes: tensor(packed, ScalarType.Byte),
            QuantizedAbsmax: tensor(Enumerable.Repeat((byte)127, 256).ToArray(), ScalarType.Byte),
            AbsmaxScales: tensor(new[] { 0.5f }),
            AbsmaxOffset: offset,
            Shape: [2, 64]);
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var reference = q.DequantizeWithTorchOps(dtype);
            using var fast = q.Dequantize(dtype);
            // NaN bits are not compared: torch's own CPU paths disagree on them (c10's scalar rounding writes 0x7FC0,
            // its AVX-512 emulation 0xFFFF, the AVX512-BF16 instruction keeps the sign), so the contract is NaN for NaN.
            var (expected, actual) = (Tensors.Values(reference), Tensors.Values(fast));
            for (var i = 0; i < expected.Length; i++)
                Assert.True(float.IsNaN(expected[i]) ? float.IsNaN(actual[i])
                        : BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(actual[i]),
                    $"{dtype}, offset bits 0x{offsetBits:X8}, element {i}: {expected[i]} vs {actual[i]}");
        }
    }

    [Fact]
    public void CpuKernel_RespectsTorchsThreadCount_AndGivesTheSameBits()
    {
        using var w = Tensors.Gaussian([1024, 520], seed: 8, std: 0.02);
        using var q = Nf4.Quantize(w);
        var threads = get_num_threads();
        try
        {
            set_num_threads(1);
            using var single = q.Dequantize(ScalarType.BFloat16);
            set_num_threads(Math.Max(2, threads));
            using var parallel = q.Dequantize(ScalarType.BFloat16);
            Assert.True(Tensors.BitEqual(single, parallel));
        }
        finally
        {
            set_num_threads(threads);
        }
    }
}

/// <summary>The shared dequantization buffers the streaming loader gives a model's NF4 weights.</summary>
public sealed class Nf4WorkspaceTests
{
    [Fact]
    public void Workspace_ReusesOneBufferPerShape_HandsOutAFreshTensorWhileItIsTaken_AndFreesWithTheLastWeight()
    {
        using var w = Tensors.Gaussian([96, 64], seed: 21, std: 0.1);
        var workspace = new Nf4Workspace();
        var a = Nf4.Quantize(w) with { Workspace = workspace.Attach() };
        var b = Nf4.Quantize(w * 2) with { Workspace = workspace.Attach() };
        using var expectedA = a.Dequantize(ScalarType.BFloat16);
        using var expectedB = b.Dequantize(ScalarType.BFloat16);

        using (var first = workspace.Dequantize(a, ScalarType.BFloat16))
        {
            Assert.True(Tensors.BitEqual(expectedA, first.Weight));
            using var second = workspace.Dequantize(b, ScalarType.BFloat16); // the buffer is out: a tensor of its own
            Assert.True(Tensors.BitEqual(expectedB, second.Weight));
            Assert.True(Tensors.BitEqual(expectedA, first.Weight), "the first lease was overwritten");
        }
        Assert.Equal(96 * 64 * 2, workspace.HeldBytes); // one bf16 buffer, no more
        using (var again = workspace.Dequantize(b, ScalarType.BFloat16))
            Assert.True(Tensors.BitEqual(expectedB, again.Weight));

        a.Dispose();
        Assert.Equal(96 * 64 * 2, workspace.HeldBytes);
        b.Dispose();
        Assert.Equal(0, workspace.HeldBytes);
    }
}

/// <summary>The C# CPU quantizer against the torch-ops one and the scalar reference.</summary>
public sealed class Nf4CpuQuantizerTests
{
    private static byte[] Bytes(Tensor t) => t.cpu().data<byte>().ToArray();

    private static void AssertSameBytes(Nf4Tensor expected, Nf4Tensor actual, string what)
    {
        Assert.True(Bytes(expected.PackedCodes).SequenceEqual(Bytes(actual.PackedCodes)), what + ": codes");
        Assert.True(Bytes(expected.QuantizedAbsmax).SequenceEqual(Bytes(actual.QuantizedAbsmax)), what + ": absmax codes");
        Assert.True(Tensors.BitEqual(expected.AbsmaxScales, actual.AbsmaxScales), what + ": scales");
        Assert.Equal(expected.AbsmaxOffset, actual.AbsmaxOffset);
        Assert.Equal(expected.Shape, actual.Shape);
    }

    [Theory]
    [MemberData(nameof(Nf4CpuKernelTests.Shapes), MemberType = typeof(Nf4CpuKernelTests))]
    public void CpuQuantizer_GivesTheTorchOpsBytes_FromFloat32AndBf16(long[] shape)
    {
        using var w = Tensors.Gaussian(shape, seed: shape.Aggregate(5L, (a, b) => a * 17 + b), std: 0.05);
        using var bf16 = w.to(ScalarType.BFloat16);
        foreach (var (weight, name) in new[] { (w, "f32"), (bf16, "bf16") })
        {
            using var fast = Nf4.Quantize(weight);
            using var reference = Nf4.QuantizeWithTorchOps(weight);
            AssertSameBytes(reference, fast, $"{name} [{string.Join(", ", shape)}]");
        }
    }

    [Fact]
    public void CpuQuantizer_ZeroBlocksMidpointsAndARaggedTail_GiveTheScalarReferencesBytes()
    {
        using var gaussian = Tensors.Gaussian([40, 64], seed: 12, std: 0.3);
        var values = Tensors.Values(gaussian).Concat(new float[64]).Concat(Nf4.Thresholds.ToArray()).Concat(Nf4.Code.ToArray())
            .Concat(Enumerable.Repeat(0.5f, 33)).Concat([1f]).ToArray();
        using var weight = tensor(values);
        using var fast = Nf4.Quantize(weight);
        using var reference = Nf4.Quantize(values, [values.Length]);
        AssertSameBytes(reference, fast, "mixed");
    }
}

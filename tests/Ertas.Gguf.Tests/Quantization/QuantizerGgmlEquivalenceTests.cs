using Ertas.Gguf.Quantization;

namespace Ertas.Gguf.Tests.Quantization;

/// <summary>Our quantizers against ggml's own, byte for byte, and our dequantizers against ggml's, bit for bit.</summary>
public class QuantizerGgmlEquivalenceTests
{
    public static readonly GgmlType[] Types =
    [
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    ];

    public static TheoryData<GgmlType, string> TypesAndPatterns()
    {
        var data = new TheoryData<GgmlType, string>();
        foreach (var type in Types)
            foreach (var pattern in QuantTestData.Patterns)
                data.Add(type, pattern);
        return data;
    }

    public static TheoryData<GgmlType> AllTypes() => new(Types);

    [Theory]
    [MemberData(nameof(TypesAndPatterns))]
    public void Quantize_writes_the_same_bytes_as_ggml_quantize_chunk(GgmlType type, string pattern)
    {
        // One row of 256, many rows of 256, and rows of 4096 (Mistral's hidden size).
        foreach (var (rows, rowLength) in new[] { (1, 256), (48, 256), (8, 4096) })
        {
            var x = QuantTestData.Create(pattern, rows * rowLength, seed: rows * 31 + rowLength);
            var expected = GgmlReference.Instance.Quantize(type, x, rowLength);
            var actual = new byte[expected.Length];
            Quantizers.Get(type).Quantize(x, actual, rowLength);
            AssertSameBlocks(type, expected, actual, $"{pattern}, {rows}x{rowLength}");
        }
    }

    [Theory]
    [MemberData(nameof(TypesAndPatterns))]
    public void Dequantize_gives_the_same_floats_as_ggml_dequantize_row(GgmlType type, string pattern)
    {
        var x = QuantTestData.Create(pattern, 16 * 1024, seed: 5);
        var blocks = GgmlReference.Instance.Quantize(type, x, 1024);
        AssertSameFloats(GgmlReference.Instance.Dequantize(type, blocks), Dequantize(type, blocks), $"{type} {pattern}");
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void Dequantize_matches_ggml_on_arbitrary_block_bytes(GgmlType type)
    {
        // Random bytes reach scale and level combinations no quantizer writes (negative, subnormal, huge f16 scales,
        // every 6-bit scale/min), so every decoding path is compared, not only the ones real data takes.
        var info = type.Info();
        var blocks = new byte[info.BytesPerBlock * 512];
        new Random(11).NextBytes(blocks);
        AssertSameFloats(GgmlReference.Instance.Dequantize(type, blocks), Dequantize(type, blocks), $"{type} random bytes");
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void QuantizeRows_gives_ggml_bytes_for_any_thread_count(GgmlType type)
    {
        const int rows = 96, rowLength = 4096;
        var x = QuantTestData.Create("outliers", rows * rowLength, seed: 3);
        var expected = GgmlReference.Instance.Quantize(type, x, rowLength);
        foreach (var threads in new[] { 1, 2, 5 })
        {
            var actual = new byte[expected.Length];
            Quantizers.QuantizeRows(type, x, actual, rows, rowLength, threads);
            AssertSameBlocks(type, expected, actual, $"{threads} threads");
        }
    }

    private static float[] Dequantize(GgmlType type, byte[] blocks)
    {
        var info = type.Info();
        var y = new float[blocks.Length / info.BytesPerBlock * info.BlockSize];
        Quantizers.Get(type).Dequantize(blocks, y);
        return y;
    }

    private static void AssertSameBlocks(GgmlType type, byte[] expected, byte[] actual, string what)
    {
        var bytesPerBlock = type.Info().BytesPerBlock;
        var differing = Enumerable.Range(0, expected.Length / bytesPerBlock)
            .Where(b => !expected.AsSpan(b * bytesPerBlock, bytesPerBlock).SequenceEqual(actual.AsSpan(b * bytesPerBlock, bytesPerBlock)))
            .ToList();
        if (differing.Count == 0)
            return;
        var first = differing[0];
        Assert.Fail($"{type} {what}: {differing.Count} of {expected.Length / bytesPerBlock} blocks differ from ggml's; first is block {first}:\n" +
            $"ggml {Convert.ToHexString(expected, first * bytesPerBlock, bytesPerBlock)}\n" +
            $"ours {Convert.ToHexString(actual, first * bytesPerBlock, bytesPerBlock)}");
    }

    private static void AssertSameFloats(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            // Compare bits, so -0 vs +0 counts; two NaNs count as equal whatever their payload.
            if (float.IsNaN(expected[i]) && float.IsNaN(actual[i]))
                continue;
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R} ({BitConverter.SingleToInt32Bits(actual[i]):X8}), ggml gives {expected[i]:R} ({BitConverter.SingleToInt32Bits(expected[i]):X8})");
        }
    }
}

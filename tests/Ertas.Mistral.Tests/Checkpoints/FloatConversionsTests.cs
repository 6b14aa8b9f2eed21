using Ertas.Core;

namespace Ertas.Mistral.Tests.Checkpoints;

public class FloatConversionsTests
{
    private static ushort[] AllSixteenBitPatterns() => Enumerable.Range(0, 65536).Select(i => (ushort)i).ToArray();

    private static uint Bits(float f) => BitConverter.SingleToUInt32Bits(f);

    private static float FromBits(uint bits) => BitConverter.UInt32BitsToSingle(bits);

    private static ushort HalfReference(float f) => BitConverter.HalfToUInt16Bits((Half)f);

    [Fact]
    public void HalfToSingle_EveryBitPattern_MatchesSystemHalfBitForBit()
    {
        var halves = AllSixteenBitPatterns();
        var floats = new float[halves.Length];
        FloatConversions.HalfToSingle(halves, floats);
        for (var i = 0; i < halves.Length; i++)
            Assert.True(Bits(floats[i]) == Bits((float)BitConverter.UInt16BitsToHalf(halves[i])),
                $"half 0x{halves[i]:X4}: got 0x{Bits(floats[i]):X8}, System.Half gives 0x{Bits((float)BitConverter.UInt16BitsToHalf(halves[i])):X8}");
    }

    [Fact]
    public void SingleToHalf_EveryHalfRoundTripsThroughSingle()
    {
        var halves = AllSixteenBitPatterns();
        var floats = new float[halves.Length];
        var back = new ushort[halves.Length];
        FloatConversions.HalfToSingle(halves, floats);
        FloatConversions.SingleToHalf(floats, back);
        for (var i = 0; i < halves.Length; i++)
        {
            // Signalling NaNs come back quiet (as with F16C and System.Half); everything else is exact.
            var expected = (halves[i] & 0x7C00) == 0x7C00 && (halves[i] & 0x03FF) != 0 ? (ushort)(halves[i] | 0x0200) : halves[i];
            Assert.True(back[i] == expected, $"half 0x{halves[i]:X4} came back as 0x{back[i]:X4}");
        }
    }

    [Fact]
    public void SingleToHalf_AtEveryRoundingBoundary_MatchesSystemHalf()
    {
        // Midpoints between neighbouring halves are where round-to-nearest-even decides; test each and its neighbours.
        var inputs = new List<float>();
        for (var h = 0; h < 0x7C00; h++)
        {
            var low = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            var high = (float)BitConverter.UInt16BitsToHalf((ushort)(h + 1));
            var mid = (float)(((double)low + high) / 2);
            foreach (var v in new[] { low, mid, MathF.BitDecrement(mid), MathF.BitIncrement(mid) })
            {
                inputs.Add(v);
                inputs.Add(-v);
            }
        }
        inputs.AddRange([65504f, 65519.99f, 65520f, 1e10f, float.MaxValue, float.Epsilon, 1e-30f, 2.98e-8f, 2.99e-8f,
            float.PositiveInfinity, float.NegativeInfinity, -0f, float.NaN, FromBits(0x7F80_0001), FromBits(0xFFC1_2345), FromBits(0x7FBF_FFFF)]);
        var source = inputs.ToArray();
        var result = new ushort[source.Length];
        FloatConversions.SingleToHalf(source, result);
        for (var i = 0; i < source.Length; i++)
            Assert.True(result[i] == HalfReference(source[i]),
                $"float 0x{Bits(source[i]):X8} ({source[i]:R}): got 0x{result[i]:X4}, System.Half gives 0x{HalfReference(source[i]):X4}");
    }

    [Fact]
    public void SingleToHalf_KnownValues_RoundToNearestEven()
    {
        float[] source = [1f, 1f + 1f / 2048, 1f + 3f / 2048, 65504f, 65520f, 5.9604645e-8f, 2.9802322e-8f, 8.940697e-8f, -2f];
        // 1+2^-11 is a tie that rounds down to even; 1+3*2^-11 rounds up to even; 65520 overflows to inf;
        // 2^-24 is the smallest subnormal, 2^-25 ties down to zero, 1.5*2^-24 ties up to 2*2^-24.
        ushort[] expected = [0x3C00, 0x3C00, 0x3C02, 0x7BFF, 0x7C00, 0x0001, 0x0000, 0x0002, 0xC000];
        var result = new ushort[source.Length];
        FloatConversions.SingleToHalf(source, result);
        Assert.Equal(expected, result);
    }

    [Fact]
    public void SingleToHalf_RandomBitPatterns_MatchSystemHalf()
    {
        var random = new Random(1234);
        var source = new float[1 << 20];
        for (var i = 0; i < source.Length; i++)
            source[i] = FromBits((uint)random.NextInt64(0, 1L << 32));
        var result = new ushort[source.Length];
        FloatConversions.SingleToHalf(source, result);
        for (var i = 0; i < source.Length; i++)
            Assert.True(result[i] == HalfReference(source[i]), $"float 0x{Bits(source[i]):X8}: got 0x{result[i]:X4}, want 0x{HalfReference(source[i]):X4}");
    }

    [Fact]
    public void BFloat16ToSingle_EveryBitPattern_IsTheUpperHalfOfTheFloat()
    {
        var bf16 = AllSixteenBitPatterns();
        var floats = new float[bf16.Length];
        FloatConversions.BFloat16ToSingle(bf16, floats);
        for (var i = 0; i < bf16.Length; i++)
            Assert.Equal((uint)bf16[i] << 16, Bits(floats[i]));
    }

    [Theory]
    [InlineData(0x3F80_0000u, 0x3F80)] // 1.0 exact
    [InlineData(0x3F80_8000u, 0x3F80)] // tie, even below: rounds down
    [InlineData(0x3F81_8000u, 0x3F82)] // tie, odd below: rounds up to even
    [InlineData(0x3F80_8001u, 0x3F81)] // just above the tie: up
    [InlineData(0x3F80_7FFFu, 0x3F80)] // just below the tie: down
    [InlineData(0x7F7F_FFFFu, 0x7F80)] // float max rounds to infinity
    [InlineData(0x7F80_0000u, 0x7F80)] // +inf
    [InlineData(0xFF80_0000u, 0xFF80)] // -inf
    [InlineData(0x8000_0000u, 0x8000)] // -0
    [InlineData(0x0000_8000u, 0x0000)] // subnormal tie rounds to even zero
    [InlineData(0x7F80_0001u, 0x7FC0)] // signalling NaN with payload only in the low bits stays NaN (| 64)
    [InlineData(0xFFC1_2345u, 0xFFC1)] // quiet negative NaN keeps sign and top payload
    [InlineData(0x7FFF_FFFFu, 0x7FFF)] // NaN must not round up into the sign bit
    public void SingleToBFloat16_RoundsLikeGgml(uint floatBits, int expected)
    {
        Assert.Equal((ushort)expected, FloatConversions.SingleToBFloat16(FromBits(floatBits)));
        var vector = new ushort[64];
        FloatConversions.SingleToBFloat16(Enumerable.Repeat(FromBits(floatBits), 64).ToArray(), vector);
        Assert.All(vector, v => Assert.Equal((ushort)expected, v));
    }

    [Fact]
    public void SingleToBFloat16_VectorPathMatchesScalarReferenceAtEveryBoundary()
    {
        var source = new List<float>();
        for (uint upper = 0; upper < 65536; upper++)
            foreach (var low in new uint[] { 0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF })
                source.Add(FromBits((upper << 16) | low));
        var input = source.ToArray();
        var result = new ushort[input.Length];
        FloatConversions.SingleToBFloat16(input, result);
        for (var i = 0; i < input.Length; i++)
            Assert.True(result[i] == FloatConversions.SingleToBFloat16(input[i]),
                $"float 0x{Bits(input[i]):X8}: vector gives 0x{result[i]:X4}, scalar 0x{FloatConversions.SingleToBFloat16(input[i]):X4}");
    }

    [Fact]
    public void Conversions_OfEveryLengthUpTo100_HandleTheScalarTail()
    {
        var random = new Random(7);
        for (var length = 0; length <= 100; length++)
        {
            var floats = Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 200 - 100)).ToArray();
            var halves = new ushort[length];
            var bf16 = new ushort[length];
            FloatConversions.SingleToHalf(floats, halves);
            FloatConversions.SingleToBFloat16(floats, bf16);
            Assert.Equal(floats.Select(HalfReference), halves);
            Assert.Equal(floats.Select(FloatConversions.SingleToBFloat16), bf16);
            var back = new float[length];
            FloatConversions.HalfToSingle(halves, back);
            Assert.Equal(halves.Select(h => (float)BitConverter.UInt16BitsToHalf(h)), back);
            FloatConversions.BFloat16ToSingle(bf16, back);
            Assert.Equal(bf16.Select(FloatConversions.BFloat16ToSingle), back);
        }
    }

    [Fact]
    public void ByteOverloads_ReadAndWriteLittleEndian()
    {
        var result = new float[2];
        FloatConversions.HalfBytesToSingle([0x00, 0x3C, 0x00, 0xC0], result);
        Assert.Equal([1f, -2f], result);
        FloatConversions.BFloat16BytesToSingle([0x80, 0x3F, 0x40, 0xC0], result);
        Assert.Equal([1f, -3f], result);
        FloatConversions.SingleBytesToSingle([0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40], result);
        Assert.Equal([1f, 2f], result);

        var bytes = new byte[4];
        FloatConversions.SingleToHalfBytes([1f, -2f], bytes);
        Assert.Equal(new byte[] { 0x00, 0x3C, 0x00, 0xC0 }, bytes);
        FloatConversions.SingleToBFloat16Bytes([1f, -3f], bytes);
        Assert.Equal(new byte[] { 0x80, 0x3F, 0x40, 0xC0 }, bytes);
    }

    [Fact]
    public void ByteOverloads_RejectOddLengthsAndShortDestinations()
    {
        Assert.Throws<ArgumentException>(() => FloatConversions.HalfBytesToSingle(new byte[3], new float[2]));
        Assert.Throws<ArgumentException>(() => FloatConversions.SingleBytesToSingle(new byte[6], new float[2]));
        Assert.Throws<ArgumentException>(() => FloatConversions.BFloat16ToSingle(new ushort[4], new float[3]));
    }
}

using Ertas.Core;
using Ertas.Gguf.Quantization;

namespace Ertas.Gguf.Tests.Quantization;

/// <summary>What our quantizers promise beyond matching ggml: error bounds, vector paths equal to scalar, API checks.</summary>
public class QuantizerBehaviourTests
{
    // Relative RMS error rms(dequant(quant(x)) - x) / rms(x) and the largest absolute error, on N(0,1) data,
    // 64 rows of 4096. Measured here over seeds 42, 1, 2 (the RMS figure moves by under 0.3% between seeds):
    //   Q8_0 0.0053 / 0.019   Q6_K 0.0177 / 0.073   Q5_1 0.0379 / 0.119   Q5_K 0.0361 / 0.143   Q5_0 0.0427 / 0.180
    //   Q4_1 0.0784 / 0.249   Q4_K 0.0715 / 0.272   Q4_0 0.0859 / 0.376   Q3_K 0.1507 / 0.641   Q2_K 0.2965 / 1.383
    // Q8_0 agrees with theory: step amax/127 ~ 2.1/127, uniform rounding error step/sqrt(12) ~ 0.0048.
    // Bounds: RMS 1.15x and max 1.35x the measurement, so a lost bit (about 2x the error) or a bad scale fails.
    [Theory]
    [InlineData(GgmlType.Q8_0, 0.0061, 0.025)]
    [InlineData(GgmlType.Q6_K, 0.0204, 0.10)]
    [InlineData(GgmlType.Q5_1, 0.0436, 0.16)]
    [InlineData(GgmlType.Q5_K, 0.0415, 0.19)]
    [InlineData(GgmlType.Q5_0, 0.049, 0.24)]
    [InlineData(GgmlType.Q4_1, 0.090, 0.34)]
    [InlineData(GgmlType.Q4_K, 0.082, 0.37)]
    [InlineData(GgmlType.Q4_0, 0.099, 0.51)]
    [InlineData(GgmlType.Q3_K, 0.173, 0.87)]
    [InlineData(GgmlType.Q2_K, 0.34, 1.87)]
    public void Round_trip_error_on_gaussian_weights_stays_within_the_bound_for_the_bit_width(GgmlType type, double maxRelativeRms, double maxAbsolute)
    {
        const int rows = 64, rowLength = 4096;
        var x = QuantTestData.Create("gaussian", rows * rowLength, seed: 42);
        var quantizer = Quantizers.Get(type);
        var bytes = new byte[quantizer.RowBytes(rowLength) * rows];
        quantizer.Quantize(x, bytes, rowLength);
        var y = new float[x.Length];
        quantizer.Dequantize(bytes, y);

        double squaredError = 0, squared = 0, maxAbsError = 0;
        for (var i = 0; i < x.Length; i++)
        {
            var e = (double)y[i] - x[i];
            squaredError += e * e;
            squared += (double)x[i] * x[i];
            maxAbsError = Math.Max(maxAbsError, Math.Abs(e));
        }
        var relativeRms = Math.Sqrt(squaredError / squared);
        Assert.True(relativeRms <= maxRelativeRms, $"{type}: relative RMS error {relativeRms:F4} > {maxRelativeRms}");
        Assert.True(maxAbsError <= maxAbsolute, $"{type}: largest absolute error {maxAbsError:F4} > {maxAbsolute}");
    }

    [Fact]
    public void Eight_group_make_qkx2_quants_equals_the_scalar_transcription_group_by_group()
    {
        var random = new Random(11);
        // (n, nmax, rmin, rdelta, nstep, useMad) of Q2_K, Q4_K and Q5_K.
        foreach (var (n, nmax, rmin, rdelta, nstep, useMad) in new[] { (16, 3, -0.5f, 0.1f, 15, true), (32, 15, -1f, 0.1f, 20, false), (32, 31, -0.5f, 0.1f, 15, false) })
        {
            var levels = new byte[8 * n];
            var scalarLevels = new byte[n];
            var scratch = new byte[n];
            var scales = new float[8];
            var negatedMins = new float[8];
            for (var trial = 0; trial < 500; trial++)
            {
                var x = QuantTestData.Create(QuantTestData.Patterns[trial % QuantTestData.Patterns.Length], 8 * n, seed: trial);
                if (trial % 7 == 0)
                    x[random.Next(8 * n)] *= 50;
                // Groups C returns early on (max == min after clamping min to at most 0: all zero, all equal and
                // positive) and one holding a NaN, beside ordinary ones.
                if (trial % 5 == 0)
                    x.AsSpan(n * random.Next(8), n).Clear();
                if (trial % 11 == 0)
                    x.AsSpan(n * random.Next(8), n).Fill(0.25f);
                if (trial % 13 == 0)
                    x[random.Next(8 * n)] = float.NaN;
                var weights = x.Select(v => MathF.Abs(v) + (trial % 2 == 0 ? 0.3f : 0f)).ToArray();
                QuantMath.MakeQkx2Quants8(n, nmax, x, weights, levels, scales, negatedMins, rmin, rdelta, nstep, useMad);
                for (var g = 0; g < 8; g++)
                {
                    var scalarScale = QuantMath.MakeQkx2QuantsScalar(nmax, x.AsSpan(g * n, n), weights.AsSpan(g * n, n), scalarLevels,
                        out var scalarMin, scratch, rmin, rdelta, nstep, useMad);
                    Assert.True(BitConverter.SingleToInt32Bits(scalarScale) == BitConverter.SingleToInt32Bits(scales[g]),
                        $"scale {scales[g]} for {scalarScale}: nmax {nmax}, trial {trial}, group {g}: {string.Join(",", x.AsSpan(g * n, n).ToArray())}");
                    Assert.True(BitConverter.SingleToInt32Bits(scalarMin) == BitConverter.SingleToInt32Bits(negatedMins[g]),
                        $"-min {negatedMins[g]} for {scalarMin}: nmax {nmax}, trial {trial}, group {g}");
                    Assert.True(scalarLevels.AsSpan().SequenceEqual(levels.AsSpan(g * n, n)), $"levels differ for nmax {nmax}, trial {trial}, group {g}");
                }
            }
        }
    }

    [Fact]
    public void Vector_make_qx_quants_equals_the_scalar_transcription()
    {
        Span<sbyte> vectorLevels = stackalloc sbyte[16];
        Span<sbyte> scalarLevels = stackalloc sbyte[16];
        for (var trial = 0; trial < 5000; trial++)
        {
            var x = QuantTestData.Create(QuantTestData.Patterns[trial % QuantTestData.Patterns.Length], 16, seed: trial);
            var vectorScale = QuantMath.MakeQxQuantsRmse(32, x, vectorLevels);
            var scalarScale = QuantMath.MakeQxQuantsRmseScalar(32, x, scalarLevels);
            Assert.Equal(BitConverter.SingleToInt32Bits(scalarScale), BitConverter.SingleToInt32Bits(vectorScale));
            Assert.True(scalarLevels.SequenceEqual(vectorLevels), $"levels differ, trial {trial}");
        }
    }

    [Fact]
    public void Sixteen_wide_make_q3_quants_equals_the_scalar_transcription()
    {
        var random = new Random(3);
        Span<sbyte> fastLevels = stackalloc sbyte[16];
        Span<sbyte> scalarLevels = stackalloc sbyte[16];
        for (var trial = 0; trial < 5000; trial++)
        {
            var x = QuantTestData.Create(QuantTestData.Patterns[trial % QuantTestData.Patterns.Length], 16, seed: trial);
            if (trial % 5 == 0)
                x[random.Next(16)] *= -40;
            var fastScale = QuantMath.MakeQ3Quants(4, x, fastLevels);
            var scalarScale = QuantMath.MakeQ3QuantsScalar(4, x, scalarLevels);
            Assert.Equal(BitConverter.SingleToInt32Bits(scalarScale), BitConverter.SingleToInt32Bits(fastScale));
            Assert.True(scalarLevels.SequenceEqual(fastLevels), $"levels differ, trial {trial}");
        }
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, 48)]
    [InlineData(GgmlType.Q4_K, 4096 + 32)]
    public void Quantize_rejects_a_row_length_that_is_not_a_multiple_of_the_block(GgmlType type, int rowLength)
    {
        var quantizer = Quantizers.Get(type);
        var error = Assert.Throws<ArgumentException>(() => quantizer.Quantize(new float[rowLength], new byte[4096], rowLength));
        Assert.Contains($"multiple of {quantizer.BlockSize}", error.Message);
    }

    [Fact]
    public void Quantize_rejects_a_destination_too_small_for_the_rows()
    {
        var quantizer = Quantizers.Get(GgmlType.Q6_K);
        var error = Assert.Throws<ArgumentException>(() => quantizer.Quantize(new float[512], new byte[419], 256));
        Assert.Contains("needs 420 bytes", error.Message);
    }

    [Fact]
    public void Get_names_the_supported_types_when_asked_for_one_without_a_quantizer()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Quantizers.Get(GgmlType.IQ2_XXS));
        Assert.Contains("Q4_K", error.Message);
    }

    [Fact]
    public void QuantizeRows_stops_when_cancelled()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            Quantizers.QuantizeRows(GgmlType.Q8_0, new float[64 * 4096], new byte[64 * 4352], 64, 4096, threads: 2, cancelled.Token));
    }

    [Fact]
    public void GgmlDequantizer_reads_quantized_tensors_through_the_block_quantizers()
    {
        var x = QuantTestData.Create("gaussian", 2 * 256, seed: 1);
        var bytes = new byte[2 * 210];
        Quantizers.Get(GgmlType.Q6_K).Quantize(x, bytes, 256);
        var expected = new float[x.Length];
        Quantizers.Get(GgmlType.Q6_K).Dequantize(bytes, expected);

        Assert.True(GgmlDequantizer.CanDequantize(GgmlType.Q6_K));
        var actual = new float[x.Length];
        GgmlDequantizer.ToFloat32(GgmlType.Q6_K, bytes, actual, "blk.0.ffn_down.weight");
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void GgmlDequantizer_reports_a_tensor_whose_bytes_are_not_whole_blocks_as_corrupt()
    {
        var error = Assert.Throws<ErtasException>(() => GgmlDequantizer.ToFloat32(GgmlType.Q4_K, new byte[143], new float[256], "output.weight"));
        Assert.Equal(ErrorCode.GgufCorrupt, error.Code);
        Assert.Contains("output.weight", error.Message);
    }

    [Fact]
    public void GgmlDequantizer_still_rejects_types_without_a_dequantizer()
    {
        Assert.False(GgmlDequantizer.CanDequantize(GgmlType.IQ4_XS));
        var error = Assert.Throws<ErtasException>(() => GgmlDequantizer.EnsureSupported(GgmlType.IQ4_XS, "token_embd.weight"));
        Assert.Equal(ErrorCode.GgufUnsupportedType, error.Code);
    }
}

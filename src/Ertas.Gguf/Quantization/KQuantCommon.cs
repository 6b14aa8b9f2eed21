namespace Ertas.Gguf.Quantization;

/// <summary>The part of quantize_row_q4_K_ref and quantize_row_q5_K_ref that is the same: scales, mins and levels.</summary>
internal static class KQuantCommon
{
    /// <summary>
    /// Fits each 32-weight sub-block with make_qkx2_quants, stores d, dmin and the 6-bit scales/mins at
    /// <c>block[0..16]</c>, then requantizes every weight against the stored (rounded) scales into
    /// <paramref name="levels"/> (0..nmax).
    /// </summary>
    public static void QuantizeScaleMinBlock(ReadOnlySpan<float> x, Span<byte> block, Span<byte> levels, int nmax, float rmin, float rdelta, int nstep)
    {
        Span<float> weights = stackalloc float[256];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        Span<byte> scaleLevels = stackalloc byte[8];
        Span<byte> minLevels = stackalloc byte[8];

        for (var j = 0; j < 8; j++)
        {
            var sub = x.Slice(32 * j, 32);
            float sumX2 = 0;
            for (var l = 0; l < 32; l++)
                sumX2 += sub[l] * sub[l];
            var avX = MathF.Sqrt(sumX2 / 32);
            for (var l = 0; l < 32; l++)
                weights[32 * j + l] = avX + MathF.Abs(sub[l]);
        }
        // The sub-blocks are independent fits: all eight at once, one per vector lane.
        QuantMath.MakeQkx2Quants8(32, nmax, x, weights, levels, scales, mins, rmin, rdelta, nstep, useMad: false);
        float maxScale = 0;
        float maxMin = 0;
        for (var j = 0; j < 8; j++)
        {
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        var invScale = maxScale > 0 ? 63f / maxScale : 0f;
        var invMin = maxMin > 0 ? 63f / maxMin : 0f;
        for (var j = 0; j < 8; j++)
        {
            // ggml stores nearest_int into a uint8_t before clamping to 63: keep the wrap.
            scaleLevels[j] = Math.Min((byte)63, (byte)QuantMath.NearestInt(invScale * scales[j]));
            minLevels[j] = Math.Min((byte)63, (byte)QuantMath.NearestInt(invMin * mins[j]));
        }
        var packed = block.Slice(4, 12);
        QuantMath.PackScaleMinK4(scaleLevels, minLevels, packed);
        QuantMath.WriteHalf(block, maxScale / 63f);
        QuantMath.WriteHalf(block[2..], maxMin / 63f);

        var blockD = QuantMath.ReadHalf(block);
        var blockMin = QuantMath.ReadHalf(block[2..]);
        for (var j = 0; j < 8; j++)
        {
            QuantMath.GetScaleMinK4(j, packed, out var sc, out var m);
            var d = blockD * sc;
            if (d == 0)
                continue;
            var dm = blockMin * m;
            for (var ii = 0; ii < 32; ii++)
                levels[32 * j + ii] = (byte)Math.Max(0, Math.Min(nmax, QuantMath.NearestInt((x[32 * j + ii] + dm) / d)));
        }
    }
}

using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Ertas.Core;

namespace Ertas.Gguf.Quantization;

/// <summary>
/// ggml-quants.c's helpers, kept operation for operation: every float expression is evaluated in float, in the
/// order C evaluates it (C# never widens float arithmetic, and RyuJIT neither reassociates nor fuses into FMA), so
/// the scales and levels chosen are the ones ggml chooses. Sums stay sequential for the same reason.
/// </summary>
internal static class QuantMath
{
    /// <summary>GROUP_MAX_EPS: a group whose largest magnitude is below this counts as all zero.</summary>
    public const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's nearest_int: adding 1.5 * 2^23 makes the FPU round to an integer (ties to even) in the low mantissa
    /// bits. Only valid for |value| &lt;= 2^22 - 1; outside that ggml returns the same garbage, and so do we.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NearestInt(float value)
    {
        var shifted = value + 12582912f;
        return (BitConverter.SingleToInt32Bits(shifted) & 0x007FFFFF) - 0x00400000;
    }

    /// <summary>C's <c>(int8_t)</c> cast of a float: truncation toward zero (callers stay in range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int TruncateToInt8(float value) => (sbyte)(int)value;

    /// <summary>GGML_FP16_TO_FP32 of a little-endian half at the start of <paramref name="bytes"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ReadHalf(ReadOnlySpan<byte> bytes) =>
        FloatConversions.HalfToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes));

    /// <summary>GGML_FP32_TO_FP16 (round to nearest even) into <paramref name="bytes"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WriteHalf(Span<byte> bytes, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, FloatConversions.SingleToHalf(value));

    /// <summary>The value <c>fp16(value)</c> reads back as: what ggml multiplies with after storing a scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundTripHalf(float value) => FloatConversions.HalfToSingle(FloatConversions.SingleToHalf(value));

    /// <summary>get_scale_min_k4: the 6-bit scale and min of sub-block <paramref name="j"/> of a Q4_K/Q5_K block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void GetScaleMinK4(int j, ReadOnlySpan<byte> q, out byte scale, out byte min)
    {
        if (j < 4)
        {
            scale = (byte)(q[j] & 63);
            min = (byte)(q[j + 4] & 63);
        }
        else
        {
            scale = (byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            min = (byte)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
    }

    /// <summary>Packs eight 6-bit scales and mins of a Q4_K/Q5_K block the way get_scale_min_k4 reads them.</summary>
    public static void PackScaleMinK4(ReadOnlySpan<byte> scales, ReadOnlySpan<byte> mins, Span<byte> q)
    {
        for (var j = 0; j < 8; j++)
        {
            var ls = scales[j];
            var lm = mins[j];
            if (j < 4)
            {
                q[j] = ls;
                q[j + 4] = lm;
            }
            else
            {
                q[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                q[j - 4] |= (byte)((ls >> 4) << 6);
                q[j] |= (byte)((lm >> 4) << 6);
            }
        }
    }

    /// <summary>
    /// The signed value of largest magnitude in a 32-float block, as <see cref="SignedAbsMax"/> finds it: the
    /// magnitude by a vector reduction (exact in any order), then the first element that has it. A block with a NaN
    /// takes the scalar loop, whose comparisons skip NaN as ggml's do.
    /// </summary>
    public static float SignedAbsMax32(ReadOnlySpan<float> x)
    {
        if (!Vector256.IsHardwareAccelerated || x.Length != 32)
            return SignedAbsMax(x, out _);
        var a0 = Vector256.Create(x);
        var a1 = Vector256.Create(x[8..]);
        var a2 = Vector256.Create(x[16..]);
        var a3 = Vector256.Create(x[24..]);
        var m = Vector256.Max(Vector256.Max(Vector256.Abs(a0), Vector256.Abs(a1)), Vector256.Max(Vector256.Abs(a2), Vector256.Abs(a3)));
        var half = Vector128.Max(m.GetLower(), m.GetUpper());
        var amax = MathF.Max(MathF.Max(half[0], half[1]), MathF.Max(half[2], half[3]));
        if (float.IsNaN(amax) || amax == 0)
            return SignedAbsMax(x, out _);
        var target = Vector256.Create(amax);
        var at = Vector256.Equals(Vector256.Abs(a0), target).ExtractMostSignificantBits()
                 | Vector256.Equals(Vector256.Abs(a1), target).ExtractMostSignificantBits() << 8
                 | Vector256.Equals(Vector256.Abs(a2), target).ExtractMostSignificantBits() << 16
                 | Vector256.Equals(Vector256.Abs(a3), target).ExtractMostSignificantBits() << 24;
        return x[System.Numerics.BitOperations.TrailingZeroCount(at)];
    }

    /// <summary>
    /// The minimum and maximum of a 32-float block as ggml's <c>if (v &lt; min) min = v</c> loops find them. Vector
    /// reductions give the same values except where the order decides: a NaN (which the loops skip) or a zero extreme
    /// (whose sign is the first zero's); those blocks take the loop.
    /// </summary>
    public static (float Min, float Max) MinMax32(ReadOnlySpan<float> x)
    {
        if (Vector256.IsHardwareAccelerated && x.Length == 32)
        {
            var a0 = Vector256.Create(x);
            var a1 = Vector256.Create(x[8..]);
            var a2 = Vector256.Create(x[16..]);
            var a3 = Vector256.Create(x[24..]);
            var lo = Vector256.Min(Vector256.Min(a0, a1), Vector256.Min(a2, a3));
            var hi = Vector256.Max(Vector256.Max(a0, a1), Vector256.Max(a2, a3));
            var lo4 = Vector128.Min(lo.GetLower(), lo.GetUpper());
            var hi4 = Vector128.Max(hi.GetLower(), hi.GetUpper());
            var vmin = MathF.Min(MathF.Min(lo4[0], lo4[1]), MathF.Min(lo4[2], lo4[3]));
            var vmax = MathF.Max(MathF.Max(hi4[0], hi4[1]), MathF.Max(hi4[2], hi4[3]));
            if (!float.IsNaN(vmin) && !float.IsNaN(vmax) && vmin != 0 && vmax != 0)
                return (vmin, vmax);
        }
        var min = float.MaxValue;
        var max = -float.MaxValue;
        foreach (var v in x)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        return (min, max);
    }

    /// <summary>
    /// The legacy quantizers' levels of a 32-float block, <c>min(cap, (int)((x - subtract) * scale + bias))</c> (a
    /// multiply and an add as separate roundings, no FMA, as the reference C), packed two per byte into
    /// <paramref name="qs"/> (element j in the low nibble of byte j, element j+16 in its high nibble); returns the
    /// fifth bits (bit j = bit 4 of element j) that Q5_0 and Q5_1 keep in qh.
    /// </summary>
    public static uint QuantizeNibbles32(ReadOnlySpan<float> x, float subtract, float scale, float bias, int cap, Span<byte> qs)
    {
        if (Vector256.IsHardwareAccelerated && x.Length == 32)
        {
            var s = Vector256.Create(subtract);
            var k = Vector256.Create(scale);
            var b = Vector256.Create(bias);
            var c = Vector256.Create(cap);
            Vector256<int> Level(ReadOnlySpan<float> v) =>
                Vector256.Min(c, Vector256.ConvertToInt32(Vector256.Add(Vector256.Multiply(Vector256.Subtract(Vector256.Create(v), s), k), b)));
            var l0 = Level(x);
            var l1 = Level(x[8..]);
            var l2 = Level(x[16..]);
            var l3 = Level(x[24..]);
            var nibble = Vector256.Create(0x0F);
            var bytes0 = (l0 & nibble) | Vector256.ShiftLeft(l2 & nibble, 4);
            var bytes1 = (l1 & nibble) | Vector256.ShiftLeft(l3 & nibble, 4);
            // Narrow keeps element order across the 128-bit lanes; every value fits a byte.
            var packed = Vector256.Narrow(Vector256.Narrow(bytes0, bytes1), Vector256<short>.Zero);
            packed.AsByte().GetLower().CopyTo(qs);
            return Vector256.ShiftLeft(l0, 27).AsSingle().ExtractMostSignificantBits()
                   | Vector256.ShiftLeft(l1, 27).AsSingle().ExtractMostSignificantBits() << 8
                   | Vector256.ShiftLeft(l2, 27).AsSingle().ExtractMostSignificantBits() << 16
                   | Vector256.ShiftLeft(l3, 27).AsSingle().ExtractMostSignificantBits() << 24;
        }
        uint high = 0;
        for (var j = 0; j < 16; j++)
        {
            var l0 = Math.Min(cap, (int)((x[j] - subtract) * scale + bias));
            var l1 = Math.Min(cap, (int)((x[j + 16] - subtract) * scale + bias));
            qs[j] = (byte)((l0 & 0x0F) | ((l1 & 0x0F) << 4));
            high |= (uint)((l0 >> 4) & 1) << j;
            high |= (uint)((l1 >> 4) & 1) << (j + 16);
        }
        return high;
    }

    /// <summary>
    /// The value of largest magnitude, the first one if several tie (a strict comparison, as ggml's loops), and
    /// that magnitude.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SignedAbsMax(ReadOnlySpan<float> x, out float amax)
    {
        float max = 0;
        amax = 0;
        for (var i = 0; i < x.Length; i++)
        {
            var ax = MathF.Abs(x[i]);
            if (ax > amax)
            {
                amax = ax;
                max = x[i];
            }
        }
        return max;
    }

    /// <summary>
    /// make_qx_quants with rmse_type 1 and no quant weights (weights x^2), the only form the reference quantizers
    /// use (Q6_K). Writes levels 0..2*nmax-1 to <paramref name="levels"/> and returns the scale.
    /// </summary>
    public static float MakeQxQuantsRmse(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels) =>
        Vector256.IsHardwareAccelerated
            ? MakeQxQuantsRmseVector(nmax, x, levels)
            : MakeQxQuantsRmseScalar(nmax, x, levels);

    /// <summary>The plain transcription of make_qx_quants; the reference the vector path is tested against.</summary>
    internal static float MakeQxQuantsRmseScalar(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels)
    {
        var n = x.Length;
        var max = SignedAbsMax(x, out var amax);
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        var iscale = -nmax / max;
        float sumlx = 0;
        float suml2 = 0;
        for (var i = 0; i < n; i++)
        {
            var l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
            levels[i] = (sbyte)(l + nmax);
            var w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        var scale = suml2 != 0 ? sumlx / suml2 : 0f;
        var best = scale * sumlx;
        for (var step = -9; step <= 9; step++)
        {
            if (step == 0)
                continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (var i = 0; i < n; i++)
            {
                var l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
                var w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (var i = 0; i < n; i++)
                    levels[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i]))));
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    /// <summary>
    /// make_q3_quants with do_rmse: signed levels in -nmax..nmax-1 refined by coordinate descent on a weighted
    /// (x^2) error, stored shifted to 0..2*nmax-1. Returns the scale.
    /// </summary>
    public static float MakeQ3Quants(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels) =>
        Vector256.IsHardwareAccelerated && x.Length == 16 && levels.Length >= 16
            ? MakeQ3Quants16(nmax, x, levels)
            : MakeQ3QuantsScalar(nmax, x, levels);

    /// <summary>
    /// make_q3_quants for Q3_K's groups of 16: the per-element products (x^2, x^3, the first pass's levels and
    /// terms) are lane-wise, so two vectors compute them with C's exact operations; the sums and the coordinate
    /// descent stay sequential in C's order, reading the precomputed products instead of redoing them.
    /// </summary>
    [SkipLocalsInit]
    private static float MakeQ3Quants16(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels)
    {
        var max = SignedAbsMax(x, out var amax);
        if (amax < GroupMaxEps)
        {
            levels[..16].Clear();
            return 0f;
        }
        ref var xRef = ref MemoryMarshal.GetReference(x);
        var x0 = Vector256.LoadUnsafe(ref xRef);
        var x1 = Vector256.LoadUnsafe(ref xRef, 8);
        var w0 = x0 * x0;
        var w1 = x1 * x1;
        var wx0 = w0 * x0;
        var wx1 = w1 * x1;
        var iscale = Vector256.Create(-nmax / max);
        var low = Vector256.Create(-nmax);
        var high = Vector256.Create(nmax - 1);
        var l0 = Vector256.Min(Vector256.Max(NearestInt(iscale * x0), low), high);
        var l1 = Vector256.Min(Vector256.Max(NearestInt(iscale * x1), low), high);
        var lf0 = Vector256.ConvertToSingle(l0);
        var lf1 = Vector256.ConvertToSingle(l1);

        Span<float> w = stackalloc float[16];
        Span<float> wx = stackalloc float[16];
        Span<int> l = stackalloc int[16];
        Span<float> termLx = stackalloc float[16];
        Span<float> termL2 = stackalloc float[16];
        ref var wRef = ref MemoryMarshal.GetReference(w);
        ref var wxRef = ref MemoryMarshal.GetReference(wx);
        ref var lRef = ref MemoryMarshal.GetReference(l);
        w0.StoreUnsafe(ref wRef);
        w1.StoreUnsafe(ref wRef, 8);
        wx0.StoreUnsafe(ref wxRef);
        wx1.StoreUnsafe(ref wxRef, 8);
        l0.StoreUnsafe(ref lRef);
        l1.StoreUnsafe(ref lRef, 8);
        (wx0 * lf0).StoreUnsafe(ref MemoryMarshal.GetReference(termLx));
        (wx1 * lf1).StoreUnsafe(ref MemoryMarshal.GetReference(termLx), 8);
        (w0 * lf0 * lf0).StoreUnsafe(ref MemoryMarshal.GetReference(termL2));
        (w1 * lf1 * lf1).StoreUnsafe(ref MemoryMarshal.GetReference(termL2), 8);
        float sumlx = 0;
        float suml2 = 0;
        for (var i = 0; i < 16; i++)
        {
            sumlx += Unsafe.Add(ref MemoryMarshal.GetReference(termLx), i);
            suml2 += Unsafe.Add(ref MemoryMarshal.GetReference(termL2), i);
        }

        for (var attempt = 0; attempt < 5; attempt++)
        {
            var changed = 0;
            for (var i = 0; i < 16; i++)
            {
                var li = Unsafe.Add(ref lRef, i);
                var wxi = Unsafe.Add(ref wxRef, i);
                var slx = sumlx - wxi * li;
                if (slx > 0)
                {
                    var wi = Unsafe.Add(ref wRef, i);
                    var sl2 = suml2 - wi * li * li;
                    var newL = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(Unsafe.Add(ref xRef, i) * sl2 / slx)));
                    if (newL != li)
                    {
                        slx += wxi * newL;
                        sl2 += wi * newL * newL;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            Unsafe.Add(ref lRef, i) = newL;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0)
                break;
        }
        ref var levelRef = ref MemoryMarshal.GetReference(levels);
        for (var i = 0; i < 16; i++)
            Unsafe.Add(ref levelRef, i) = (sbyte)(Unsafe.Add(ref lRef, i) + nmax);
        return suml2 > 0f ? sumlx / suml2 : 0f;
    }

    /// <summary>The plain transcription of make_q3_quants; the reference the 16-wide path is tested against.</summary>
    internal static float MakeQ3QuantsScalar(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels)
    {
        var n = x.Length;
        var max = SignedAbsMax(x, out var amax);
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        var iscale = -nmax / max;
        float sumlx = 0;
        float suml2 = 0;
        for (var i = 0; i < n; i++)
        {
            var l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
            levels[i] = (sbyte)l;
            var w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var changed = 0;
            for (var i = 0; i < n; i++)
            {
                var w = x[i] * x[i];
                var slx = sumlx - w * x[i] * levels[i];
                if (slx > 0)
                {
                    var sl2 = suml2 - w * levels[i] * levels[i];
                    var newL = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(x[i] * sl2 / slx)));
                    if (newL != levels[i])
                    {
                        slx += w * x[i] * newL;
                        sl2 += w * newL * newL;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            levels[i] = (sbyte)newL;
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0)
                break;
        }
        for (var i = 0; i < n; i++)
            levels[i] += (sbyte)nmax;
        return suml2 > 0f ? sumlx / suml2 : 0f;
    }

    /// <summary>
    /// The opening pass of make_qkx2_quants: min (clamped to at most 0), max, and the weighted sums, in C's order.
    /// </summary>
    private static (float Min, float Max, float SumW, float SumX) ScanRangeAndWeightedSum(ReadOnlySpan<float> x, ReadOnlySpan<float> weights)
    {
        var min = x[0];
        var max = x[0];
        var sumW = weights[0];
        var sumX = sumW * x[0];
        for (var i = 1; i < x.Length; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            var w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        return (min > 0 ? 0 : min, max, sumW, sumX);
    }

    /// <summary>
    /// make_qkx2_quants, transcribed plainly: levels 0..nmax with a scale and a (non-positive) offset, searching
    /// nstep+1 candidate scales around nmax/(max-min) and refitting scale and offset by weighted least squares.
    /// Returns the scale; <paramref name="negatedMin"/> gets -offset (ggml's the_min). The reference
    /// <see cref="MakeQkx2Quants8"/> is tested against, and its path where vectors are not accelerated.
    /// </summary>
    internal static float MakeQkx2QuantsScalar(int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels,
        out float negatedMin, Span<byte> scratch, float rmin, float rdelta, int nstep, bool useMad)
    {
        var n = x.Length;
        var (min, max, sumW, sumX) = ScanRangeAndWeightedSum(x, weights);
        if (max == min)
        {
            levels[..n].Clear();
            negatedMin = -min;
            return 0f;
        }
        var iscale = nmax / (max - min);
        var scale = 1 / iscale;
        float bestError = 0;
        for (var i = 0; i < n; i++)
        {
            var l = NearestInt(iscale * (x[i] - min));
            levels[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            var diff = scale * levels[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            negatedMin = -min;
            return scale;
        }
        for (var step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (var i = 0; i < n; i++)
            {
                var l = Math.Max(0, Math.Min(nmax, NearestInt(iscale * (x[i] - min))));
                scratch[i] = (byte)l;
                var w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            var d = sumW * sumL2 - sumL * sumL;
            if (d > 0)
            {
                var thisScale = (sumW * sumXL - sumX * sumL) / d;
                var thisMin = (sumL2 * sumX - sumL * sumXL) / d;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float error = 0;
                for (var i = 0; i < n; i++)
                {
                    var diff = thisScale * scratch[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    error += weights[i] * diff;
                }
                if (error < bestError)
                {
                    scratch[..n].CopyTo(levels);
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        negatedMin = -min;
        return scale;
    }

    // Vector paths. A vector lane does the same IEEE float operations as C's scalar code, so as long as each sum
    // is accumulated in C's order within its lane, results are bit-identical; what runs side by side is trials
    // or independent groups, never terms of one sum.

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> NearestInt(Vector256<float> value)
    {
        var shifted = value + Vector256.Create(12582912f);
        return (shifted.AsInt32() & Vector256.Create(0x007FFFFF)) - Vector256.Create(0x00400000);
    }

    /// <summary>
    /// make_qx_quants' 19 trial scales do not depend on each other (only the choice among them is sequential), so
    /// here one vector lane is one trial: lane k adds up its own terms over the elements in C's order. 24 lanes
    /// (3 vectors) hold the first pass plus the 18 steps, the last 5 lanes repeat the first pass and are ignored.
    /// </summary>
    [SkipLocalsInit]
    private static float MakeQxQuantsRmseVector(int nmax, ReadOnlySpan<float> x, Span<sbyte> levels)
    {
        var n = x.Length;
        var max = SignedAbsMax(x, out var amax);
        if (amax < GroupMaxEps)
        {
            levels[..n].Clear();
            return 0f;
        }
        const int Trials = 19;
        Span<float> iscales = stackalloc float[24];
        iscales[0] = -nmax / max;
        for (int step = -9, k = 1; step <= 9; step++)
        {
            if (step == 0)
                continue;
            iscales[k++] = -(nmax + 0.1f * step) / max;
        }
        iscales[Trials..].Fill(iscales[0]);

        var i0 = Vector256.Create(iscales);
        var i1 = Vector256.Create(iscales[8..]);
        var i2 = Vector256.Create(iscales[16..]);
        var low = Vector256.Create(-nmax);
        var high = Vector256.Create(nmax - 1);
        Vector256<float> lx0 = default, lx1 = default, lx2 = default, l20 = default, l21 = default, l22 = default;
        for (var i = 0; i < n; i++)
        {
            var xi = x[i];
            var w = xi * xi;
            var wx = Vector256.Create(w * xi);
            var wv = Vector256.Create(w);
            var l0 = Vector256.ConvertToSingle(Vector256.Min(Vector256.Max(NearestInt(i0 * xi), low), high));
            var l1 = Vector256.ConvertToSingle(Vector256.Min(Vector256.Max(NearestInt(i1 * xi), low), high));
            var l2 = Vector256.ConvertToSingle(Vector256.Min(Vector256.Max(NearestInt(i2 * xi), low), high));
            lx0 += wx * l0;
            lx1 += wx * l1;
            lx2 += wx * l2;
            l20 += wv * l0 * l0;
            l21 += wv * l1 * l1;
            l22 += wv * l2 * l2;
        }
        Span<float> sumlx = stackalloc float[24];
        Span<float> suml2 = stackalloc float[24];
        lx0.CopyTo(sumlx);
        lx1.CopyTo(sumlx[8..]);
        lx2.CopyTo(sumlx[16..]);
        l20.CopyTo(suml2);
        l21.CopyTo(suml2[8..]);
        l22.CopyTo(suml2[16..]);

        var scale = suml2[0] != 0 ? sumlx[0] / suml2[0] : 0f;
        var best = scale * sumlx[0];
        var chosen = 0;
        for (var k = 1; k < Trials; k++)
        {
            if (suml2[k] > 0 && sumlx[k] * sumlx[k] > best * suml2[k])
            {
                scale = sumlx[k] / suml2[k];
                best = scale * sumlx[k];
                chosen = k;
            }
        }
        for (var i = 0; i < n; i++)
            levels[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscales[chosen] * x[i]))));
        return scale;
    }

    /// <summary>
    /// make_qkx2_quants on eight independent groups of <paramref name="n"/> weights at once (group g at
    /// <c>[g*n, g*n+n)</c> of <paramref name="x"/>, <paramref name="weights"/> and <paramref name="levels"/>): the
    /// sub-blocks of a Q4_K/Q5_K block, or half of Q2_K's. One vector lane per group runs C's loop exactly, trials
    /// in order, each sum over its own group's elements in C's order, so no trial is computed twice. (An earlier form
    /// with one lane per trial scale had to redo the trials after every accepted fit that moved the offset, about
    /// three passes a group, and ran 2.5x slower.)
    /// Writes each group's scale and -offset to <paramref name="scales"/> and <paramref name="negatedMins"/>.
    /// </summary>
    [SkipLocalsInit]
    public static void MakeQkx2Quants8(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels,
        Span<float> scales, Span<float> negatedMins, float rmin, float rdelta, int nstep, bool useMad)
    {
        if (!Vector256.IsHardwareAccelerated || nstep < 1 || n > 32)
        {
            Span<byte> scratch = stackalloc byte[n];
            for (var g = 0; g < 8; g++)
                scales[g] = MakeQkx2QuantsScalar(nmax, x.Slice(g * n, n), weights.Slice(g * n, n), levels.Slice(g * n, n),
                    out negatedMins[g], scratch, rmin, rdelta, nstep, useMad);
            return;
        }

        // Element i of every group side by side: lane g of xs[i] is x[g*n + i].
        Span<Vector256<float>> xs = stackalloc Vector256<float>[n];
        Span<Vector256<float>> ws = stackalloc Vector256<float>[n];
        Span<Vector256<float>> trialLevels = stackalloc Vector256<float>[n];
        for (var i = 0; i < n; i++)
        {
            xs[i] = Vector256.Create(x[i], x[n + i], x[2 * n + i], x[3 * n + i], x[4 * n + i], x[5 * n + i], x[6 * n + i], x[7 * n + i]);
            ws[i] = Vector256.Create(weights[i], weights[n + i], weights[2 * n + i], weights[3 * n + i],
                weights[4 * n + i], weights[5 * n + i], weights[6 * n + i], weights[7 * n + i]);
        }

        // The opening scan: strict comparisons as C's ifs (a NaN or an equal value never replaces).
        var min = xs[0];
        var max = xs[0];
        var sumW = ws[0];
        var sumX = sumW * xs[0];
        for (var i = 1; i < n; i++)
        {
            min = Vector256.ConditionalSelect(Vector256.LessThan(xs[i], min), xs[i], min);
            max = Vector256.ConditionalSelect(Vector256.GreaterThan(xs[i], max), xs[i], max);
            sumW += ws[i];
            sumX += ws[i] * xs[i];
        }
        min = Vector256.ConditionalSelect(Vector256.GreaterThan(min, Vector256<float>.Zero), Vector256<float>.Zero, min);
        // A flat group returns scale 0 and all-zero levels in C before any trial; its lane's results are masked.
        var live = ~Vector256.Equals(max, min);
        var top = Vector256.Create(nmax);

        var iscale = Vector256.Create((float)nmax) / (max - min);
        var scale = Vector256<float>.One / iscale;
        var bestError = Vector256<float>.Zero;
        for (var i = 0; i < n; i++)
        {
            var l = Vector256.ConvertToSingle(Vector256.Min(Vector256.Max(NearestInt(iscale * (xs[i] - min)), Vector256<int>.Zero), top));
            var diff = scale * l + min - xs[i];
            diff = useMad ? Vector256.Abs(diff) : diff * diff;
            bestError += ws[i] * diff;
        }
        var chosenIscale = iscale;
        var chosenMin = min;
        for (var step = 0; step <= nstep; step++)
        {
            // Over the range from the current offset, as C divides by (max - min) after min has moved.
            var trialIscale = Vector256.Create(rmin + rdelta * step + nmax) / (max - min);
            Vector256<float> sumL = default, sumL2 = default, sumXL = default;
            for (var i = 0; i < n; i++)
            {
                var l = Vector256.ConvertToSingle(Vector256.Min(Vector256.Max(NearestInt(trialIscale * (xs[i] - min)), Vector256<int>.Zero), top));
                trialLevels[i] = l;
                var wl = ws[i] * l;
                sumL += wl;
                sumL2 += wl * l;
                sumXL += wl * xs[i];
            }
            Fit(sumL, sumL2, sumXL, sumW, sumX, out var d, out var trialScale, out var trialMin);
            var error = Vector256<float>.Zero;
            for (var i = 0; i < n; i++)
            {
                var diff = trialScale * trialLevels[i] + trialMin - xs[i];
                diff = useMad ? Vector256.Abs(diff) : diff * diff;
                error += ws[i] * diff;
            }
            var accept = live & Vector256.GreaterThan(d, Vector256<float>.Zero) & Vector256.LessThan(error, bestError);
            bestError = Vector256.ConditionalSelect(accept, error, bestError);
            scale = Vector256.ConditionalSelect(accept, trialScale, scale);
            chosenIscale = Vector256.ConditionalSelect(accept, trialIscale, chosenIscale);
            chosenMin = Vector256.ConditionalSelect(accept, min, chosenMin);
            min = Vector256.ConditionalSelect(accept, trialMin, min);
        }

        // The accepted trial's levels, recomputed from its iscale and the offset it was computed with.
        for (var i = 0; i < n; i++)
        {
            var l = Vector256.Min(Vector256.Max(NearestInt(chosenIscale * (xs[i] - chosenMin)), Vector256<int>.Zero), top) & live.AsInt32();
            for (var g = 0; g < 8; g++)
                levels[g * n + i] = (byte)l[g];
        }
        (Vector256.ConditionalSelect(live, scale, Vector256<float>.Zero)).CopyTo(scales);
        (-min).CopyTo(negatedMins);
    }

    /// <summary>The least-squares scale and offset of make_qkx2_quants for 8 lanes at once, operation for operation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fit(Vector256<float> sumL, Vector256<float> sumL2, Vector256<float> sumXL, Vector256<float> sumW, Vector256<float> sumX,
        out Vector256<float> d, out Vector256<float> scale, out Vector256<float> min)
    {
        d = sumW * sumL2 - sumL * sumL;
        scale = (sumW * sumXL - sumX * sumL) / d;
        min = (sumL2 * sumX - sumL * sumXL) / d;
        var clamp = Vector256.GreaterThan(min, Vector256<float>.Zero);
        min = Vector256.ConditionalSelect(clamp, Vector256<float>.Zero, min);
        scale = Vector256.ConditionalSelect(clamp, sumXL / sumL2, scale);
    }
}

using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Ertas.Core;
using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling;

/// <summary>
/// Causal attention inside each packed segment, on the CPU, as one autograd node per layer: for each segment, the
/// scores S = Q Kᵀ of the query heads sharing a KV head as one batched matmul, a causal softmax of S / √d row by row
/// (float32, here), P V; backward recomputes S and, from the saved log-sum-exp, P, as flash attention does.
/// <para>
/// Why: libtorch's CPU flash attention runs its small per-block GEMMs through MKL (k = head_dim = 64): on the 100m
/// preset's packed segments (mean 190 tokens) it reached about 40-60 GFLOP/s in bf16, where the same products as whole
/// batched matmuls run on oneDNN at several hundred. The node computes the full L x L block of each segment (twice the
/// causal pairs) and still takes half the time: one 100m layer's attention over 11 segments of 120-300 tokens, forward
/// and backward in bf16, 25-28 ms against 50-54 ms; in the train-100m step breakdown 0.28 s against 0.70 s (AMD EPYC,
/// AVX-512 BF16, 2 threads). The row kernels run on the calling thread: libtorch's OpenMP workers spin between
/// parallel regions, so a second .NET thread found no free core (measured: the same time with one thread or two).
/// </para>
/// <para>
/// Precision: the scores come out of the matmul in the compute type (bf16 under bf16 compute, as in HF transformers'
/// eager attention); the softmax, the log-sum-exp, the row sums of dO ⊙ O and dS = P (dP - rowsum) are float32, and P
/// and dS are rounded to the compute type for the products that follow. Saved: q, k, v, the output (which o_proj
/// saves anyway) and the log-sum-exp, as libtorch's flash attention saves.
/// </para>
/// </summary>
public sealed unsafe class SegmentAttention : autograd.SingleTensorFunction<SegmentAttention>
{
    public override string Name => nameof(SegmentAttention);

    /// <summary>The longest segment the node takes: its scores, (heads, L, L) twice in backward, grow with L squared
    /// (7B in bf16 at 1024: 2 x 64 MiB), where libtorch's flash kernel needs no (L, L) tensor.</summary>
    public const long MaxSegmentLength = 1024;

    /// <summary>Whether the row kernels run on vector hardware here (x64 AVX2 and up); else SDPA is faster.</summary>
    private static bool VectorHardware => Vector256.IsHardwareAccelerated;

    /// <summary>Whether the node takes segments up to <paramref name="longest"/> positions on this CPU (vector hardware,
    /// at most <see cref="MaxSegmentLength"/>): what the model decides by and the memory plan counts by.</summary>
    public static bool Takes(long longest) => VectorHardware && longest <= MaxSegmentLength;

    /// <summary>Whether the node handles these inputs: CPU float32 or bf16 and segments it <see cref="Takes"/>.
    /// Otherwise the model keeps one SDPA per segment.</summary>
    public static bool Handles(Tensor q, long[] segments) =>
        q.device_type == DeviceType.CPU && q.dtype is ScalarType.Float32 or ScalarType.BFloat16 && Takes(segments.DefaultIfEmpty(0).Max());

    /// <summary>
    /// q (B, H, T, d), k and v (B, H_kv, T, d), H a multiple of H_kv (query head h reads KV head h / (H / H_kv));
    /// <paramref name="segments"/>: run lengths over the B x T positions in order, each inside one row, summing to B x T.
    /// Returns (B, T, H d). <paramref name="returned"/>: the backward pass's holder of returned gradients (null leaves
    /// them in the caller's dispose scope).
    /// </summary>
    public static Tensor Apply(Tensor q, Tensor k, Tensor v, long[] segments, ReturnedGradients? returned = null)
    {
        Validate(q, k, v, segments);
        if (!is_grad_enabled() || !(q.requires_grad || k.requires_grad || v.requires_grad))
        {
            using var scope = NewDisposeScope();
            using var logSumExp = empty([q.shape[0] * q.shape[1] * q.shape[2]], ScalarType.Float32);
            return Forward(q, k, v, segments, logSumExp).MoveToOuterDisposeScope();
        }
        // As in LoraFunction.Apply: apply() leaves forward's own handle in the current scope; only the returned one leaves.
        using (NewDisposeScope())
        {
            try
            {
                return apply(q, k, v, new Settings(segments, returned)).MoveToOuterDisposeScope();
            }
            finally
            {
                TensorBlockCache.EndOutputMetadata();
            }
        }
    }

    private sealed record Settings(long[] Segments, ReturnedGradients? Returned)
    {
        /// <summary>Which of q, k and v need a gradient (a frozen projection's output needs none).</summary>
        public bool[] Needs { get; init; } = [true, true, true];
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (q, k, v, settings) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Settings)vars[3]);
        var logSumExp = empty([q.shape[0] * q.shape[1] * q.shape[2]], ScalarType.Float32);
        var output = Forward(q, k, v, settings.Segments, logSumExp);
        ctx.save_for_backward([q, k, v, output, logSumExp]);
        ctx.save_data("settings", settings with { Needs = [q.requires_grad, k.requires_grad, v.requires_grad] });
        TensorBlockCache.BeginOutputMetadata(); // apply() now allocates an unwritten copy of the output
        return output;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var settings = (Settings)ctx.get_data("settings");
        settings.Returned?.ReleaseEarlier();
        using var scope = NewDisposeScope(); // before the saved tensors are unpacked: their handles end with this call
        var saved = ctx.get_saved_variables();
        var (q, k, v, output, logSumExp) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
        var (b, heads, t, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        var kvHeads = k.shape[1];
        var scale = 1 / Math.Sqrt(d);
        var gradOut = grad_output.reshape(b, t, heads, d);
        var out4 = output.view(b, t, heads, d);
        var needs = settings.Needs;
        var gradQ = needs[0] ? empty([b, t, heads, d], q.dtype) : null;
        var gradK = needs[1] ? empty([b, t, kvHeads, d], k.dtype) : null;
        var gradV = needs[2] ? empty([b, t, kvHeads, d], v.dtype) : null;
        var lse = (float*)CpuTensorMemory.DataPointer(logSumExp);
        long position = 0;
        foreach (var length in settings.Segments)
        {
            using var segmentScope = NewDisposeScope();
            var (row, start) = (position / t, position % t);
            var (qs, ks, vs) = Slices(q, k, v, row, start, length);
            var dos = Grouped(gradOut.select(0, row).narrow(0, start, length).transpose(0, 1), kvHeads); // (H_kv, G L, d)
            var os = Grouped(out4.select(0, row).narrow(0, start, length).transpose(0, 1), kvHeads);
            var scores = qs.matmul(ks.transpose(1, 2));                                              // (H_kv, G L, L)
            var gradP = dos.matmul(vs.transpose(1, 2));                                              // (H_kv, G L, L)
            BackwardRows(scores, gradP, dos, os, lse + position * heads, length, scale);             // P and dS in place
            if (gradQ is not null)                                                                   // dS K, (H_kv, G L, d)
                gradQ.select(0, row).narrow(0, start, length).copy_(gradP.matmul(ks).view(heads, length, d).transpose(0, 1));
            if (gradK is not null)                                                                   // dSᵀ Q, (H_kv, L, d)
                gradK.select(0, row).narrow(0, start, length).copy_(gradP.transpose(1, 2).matmul(qs).transpose(0, 1));
            if (gradV is not null)                                                                   // Pᵀ dO, (H_kv, L, d)
                gradV.select(0, row).narrow(0, start, length).copy_(scores.transpose(1, 2).matmul(dos).transpose(0, 1));
            position += length;
        }
        grad_output.Dispose(); // as in LoraFunction: else the caller's scope holds every layer's output gradient
        var gradients = new[] { gradQ, gradK, gradV }.Select(g => g?.permute(0, 2, 1, 3).MoveToOuterDisposeScope()).ToArray();
        settings.Returned?.Keep(gradients.OfType<Tensor>());
        return [gradients[0]!, gradients[1]!, gradients[2]!, null!];
    }

    /// <summary>The node's forward arithmetic, also used without a graph; writes each row's log-sum-exp of the scaled
    /// scores (layout: segment by segment, (H, L) each).</summary>
    internal static Tensor Forward(Tensor q, Tensor k, Tensor v, long[] segments, Tensor logSumExp)
    {
        var (b, heads, t, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        var scale = 1 / Math.Sqrt(d);
        var output = empty([b, t, heads, d], q.dtype);
        var lse = (float*)CpuTensorMemory.DataPointer(logSumExp);
        long position = 0;
        foreach (var length in segments)
        {
            using var segmentScope = NewDisposeScope();
            var (row, start) = (position / t, position % t);
            var (qs, ks, vs) = Slices(q, k, v, row, start, length);
            var scores = qs.matmul(ks.transpose(1, 2));                                              // (H_kv, G L, L)
            SoftmaxRows(scores, lse + position * heads, length, scale);                              // P in place
            var mixed = scores.matmul(vs);                                                           // (H_kv, G L, d)
            output.select(0, row).narrow(0, start, length).copy_(mixed.view(heads, length, d).transpose(0, 1));
            position += length;
        }
        using (output)
            return output.view(b, t, heads * d);
    }

    private static void Validate(Tensor q, Tensor k, Tensor v, long[] segments)
    {
        if (q.device_type != DeviceType.CPU || q.dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || k.dtype != q.dtype || v.dtype != q.dtype || k.device_type != DeviceType.CPU || v.device_type != DeviceType.CPU)
            throw new ArgumentException($"segment attention takes CPU float32 or bf16 q, k and v; got {q.dtype}, {k.dtype}, {v.dtype}");
        if (q.dim() != 4 || k.dim() != 4 || !k.shape.SequenceEqual(v.shape) || k.shape[0] != q.shape[0] || k.shape[2] != q.shape[2]
            || k.shape[3] != q.shape[3] || q.shape[1] % k.shape[1] != 0)
            throw new ArgumentException($"segment attention takes q (B, H, T, d) and k, v (B, H_kv, T, d); got [{string.Join(", ", q.shape)}] and [{string.Join(", ", k.shape)}]");
        var t = q.shape[2];
        long position = 0;
        foreach (var length in segments)
        {
            if (length < 1 || position / t != (position + length - 1) / t)
                throw new ArgumentException($"segment of {length} at position {position} is empty or crosses a row of {t}");
            position += length;
        }
        if (position != q.shape[0] * t)
            throw new ArgumentException($"segments cover {position} positions, not B x T = {q.shape[0] * t}");
    }

    /// <summary>One segment's queries grouped by KV head, (H_kv, G L, d), and its keys and values, (H_kv, L, d), contiguous.</summary>
    private static (Tensor Q, Tensor K, Tensor V) Slices(Tensor q, Tensor k, Tensor v, long row, long start, long length) =>
        (Grouped(q.select(0, row).narrow(1, start, length), k.shape[1]),
         k.select(0, row).narrow(1, start, length).contiguous(),
         v.select(0, row).narrow(1, start, length).contiguous());

    /// <summary>(H, L, d) as (H_kv, G L, d), contiguous: the G query heads of a KV head one after another.</summary>
    private static Tensor Grouped(Tensor perHead, long kvHeads) =>
        perHead.contiguous().view(kvHeads, -1, perHead.shape[^1]);

    // ---- row kernels: rows of (H_kv, G L, L); row r is query position r mod L, which sees keys 0..r mod L ----

    /// <summary>S -> P = softmax(scale S) over each row's visible keys, 0 beyond; lse[r] = log Σ exp(scale S).</summary>
    private static void SoftmaxRows(Tensor scores, float* lse, long length, double scale)
    {
        var data = (nint)CpuTensorMemory.DataPointer(scores);
        var bf16 = scores.dtype == ScalarType.BFloat16;
        var buffer = ArrayPool<float>.Shared.Rent((int)length);
        try
        {
            fixed (float* e = buffer)
                SoftmaxRowsAt(data, lse, e, scores.numel() / length, length, (float)scale, bf16);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxRowsAt(nint data, float* lse, float* e, long rows, long length, float scale, bool bf16)
    {
        for (long r = 0; r < rows; r++)
        {
            var visible = r % length + 1;
            var row = data + (nint)(r * length * (bf16 ? 2 : 4));
            var max = float.NegativeInfinity;
            long i = 0;
            var m = Vector256.Create(float.NegativeInfinity);
            for (; i + 8 <= visible; i += 8) m = Vector256.Max(m, Load8(row, i, bf16));
            for (var lane = 0; lane < 8; lane++) max = MathF.Max(max, m[lane]);
            for (; i < visible; i++) max = MathF.Max(max, Load1(row, i, bf16));
            var shift = max * scale;
            var (sv, shiftV, acc) = (Vector256.Create(scale), Vector256.Create(shift), Vector256<float>.Zero);
            i = 0;
            for (; i + 8 <= visible; i += 8)
            {
                var x = Vector256.Exp(Load8(row, i, bf16) * sv - shiftV);
                x.Store(e + i);
                acc += x;
            }
            var sum = Vector256.Sum(acc);
            for (; i < visible; i++) sum += e[i] = MathF.Exp(Load1(row, i, bf16) * scale - shift);
            var inverse = 1 / sum;
            var iv = Vector256.Create(inverse);
            i = 0;
            for (; i + 8 <= visible; i += 8) Store8(Vector256.Load(e + i) * iv, row, i, bf16);
            for (; i < visible; i++) Store1(e[i] * inverse, row, i, bf16);
            Clear(row, visible, length, bf16);
            lse[r] = shift + MathF.Log(sum);
        }
    }

    /// <summary>With P recomputed from S and lse: S -> P, dP -> dS = scale P (dP - rowsum(dO ⊙ O)); 0 beyond.</summary>
    private static void BackwardRows(Tensor scores, Tensor gradP, Tensor gradOut, Tensor output, float* lse, long length, double scale)
    {
        var (s, dp, dOut, o) = ((nint)CpuTensorMemory.DataPointer(scores), (nint)CpuTensorMemory.DataPointer(gradP), (nint)CpuTensorMemory.DataPointer(gradOut), (nint)CpuTensorMemory.DataPointer(output));
        var bf16 = scores.dtype == ScalarType.BFloat16;
        var d = gradOut.shape[^1];
        BackwardRowsAt(s, dp, dOut, o, lse, scores.numel() / length, length, d, (float)scale, bf16);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRowsAt(nint s, nint dp, nint dOut, nint o, float* lse, long rows, long length, long d, float scale, bool bf16)
    {
        var size = bf16 ? 2 : 4;
        for (long r = 0; r < rows; r++)
        {
            var visible = r % length + 1;
            var (dRow, oRow) = (dOut + (nint)(r * d * size), o + (nint)(r * d * size));
            var dot = Vector256<float>.Zero;
            long i = 0;
            for (; i + 8 <= d; i += 8) dot += Load8(dRow, i, bf16) * Load8(oRow, i, bf16);
            var rowSum = Vector256.Sum(dot);
            for (; i < d; i++) rowSum += Load1(dRow, i, bf16) * Load1(oRow, i, bf16);
            var (sRow, gRow) = (s + (nint)(r * length * size), dp + (nint)(r * length * size));
            var (sv, lv, rv) = (Vector256.Create(scale), Vector256.Create(lse[r]), Vector256.Create(rowSum));
            i = 0;
            for (; i + 8 <= visible; i += 8)
            {
                var p = Vector256.Exp(Load8(sRow, i, bf16) * sv - lv);
                Store8(p * (Load8(gRow, i, bf16) - rv) * sv, gRow, i, bf16);
                Store8(p, sRow, i, bf16);
            }
            for (; i < visible; i++)
            {
                var p = MathF.Exp(Load1(sRow, i, bf16) * scale - lse[r]);
                Store1(p * (Load1(gRow, i, bf16) - rowSum) * scale, gRow, i, bf16);
                Store1(p, sRow, i, bf16);
            }
            Clear(sRow, visible, length, bf16);
            Clear(gRow, visible, length, bf16);
        }
    }

    private static void Clear(nint row, long from, long length, bool bf16)
    {
        if (bf16) new Span<ushort>((ushort*)row + from, (int)(length - from)).Clear();
        else new Span<float>((float*)row + from, (int)(length - from)).Clear();
    }

    /// <summary>8 float32 or bf16 (the high half of a float32) elements from element <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load8(nint at, long i, bool bf16) => bf16
        ? (Vector256.WidenLower(Vector128.Load((ushort*)at + i).ToVector256Unsafe()) << 16).AsSingle()
        : Vector256.Load((float*)at + i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Load1(nint at, long i, bool bf16) =>
        bf16 ? FloatConversions.BFloat16ToSingle(((ushort*)at)[i]) : ((float*)at)[i];

    /// <summary>8 floats as float32, or as bf16 bit for bit as <see cref="FloatConversions.SingleToBFloat16(float)"/>
    /// (round to nearest even; a NaN keeps its top bits and gets the quiet bit). Written out rather than through
    /// FloatConversions' span form so that a row is read and written once (measured: 15 % slower through float
    /// scratch rows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store8(Vector256<float> values, nint at, long i, bool bf16)
    {
        if (!bf16)
        {
            values.Store((float*)at + i);
            return;
        }
        var bits = values.AsUInt32();
        var rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One)) >> 16;
        rounded = Vector256.ConditionalSelect(Vector256.Equals(values, values).AsUInt32(), rounded, (bits >> 16) | Vector256.Create(64u));
        Vector256.Narrow(rounded, rounded).GetLower().Store((ushort*)at + i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store1(float value, nint at, long i, bool bf16)
    {
        if (bf16) ((ushort*)at)[i] = FloatConversions.SingleToBFloat16(value);
        else ((float*)at)[i] = value;
    }
}

using Ertas.Modeling.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Modeling.Tests.Modeling;

public sealed class SegmentAttentionTests
{
    // Two rows of 96 cut into segments of several lengths (one of a single token),
    // three query heads per KV head, as Mistral's grouped-query attention.
    private const long Batch = 2, Length = 96, Heads = 6, KvHeads = 2, HeadDim = 16;
    private static readonly long[] Segments = [40, 1, 55, 10, 30, 56];

    private static (Tensor Q, Tensor K, Tensor V, Tensor Dy) Inputs(ScalarType dtype, long heads = Heads, long kvHeads = KvHeads, long headDim = HeadDim, long length = Length)
    {
        // Laid out as the model's projections leave them: (B, T, heads, d) viewed as (B, heads, T, d).
        var generator = new torch.Generator(11);
        Tensor Draw(long h) => randn([Batch, length, h, headDim], ScalarType.Float64, generator: generator).to(dtype).transpose(1, 2);
        return (Draw(heads), Draw(kvHeads), Draw(kvHeads), randn([Batch, length, heads * headDim], ScalarType.Float64, generator: generator).to(dtype));
    }

    /// <summary>The attention the node replaces: one causal SDPA per segment, keys and values repeated to every head.</summary>
    private static Tensor SdpaPerSegment(Tensor q, Tensor k, Tensor v, long[] segments)
    {
        var (b, heads, t, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        var groups = heads / k.shape[1];
        var outputs = new List<Tensor>();
        long position = 0;
        foreach (var length in segments)
        {
            var (row, start) = (position / t, position % t);
            Tensor Take(Tensor x, long repeat) => x.select(0, row).narrow(1, start, length).repeat_interleave(repeat, dim: 0).unsqueeze(0);
            var y = q.dtype == ScalarType.Float64
                ? Float64Causal(Take(q, 1), Take(k, groups), Take(v, groups))
                : F.scaled_dot_product_attention(Take(q, 1), Take(k, groups), Take(v, groups), is_casual: true);
            outputs.Add(y.squeeze(0).transpose(0, 1).reshape(length, heads * d));
            position += length;
        }
        return cat(outputs, 0).view(b, t, heads * d);
    }

    private static Tensor Float64Causal(Tensor q, Tensor k, Tensor v)
    {
        var length = q.shape[2];
        var scores = q.matmul(k.transpose(-1, -2)).div(Math.Sqrt(q.shape[3]));
        return scores.masked_fill(ones([length, length], ScalarType.Bool).triu(1), double.NegativeInfinity).softmax(-1).matmul(v);
    }

    private static (Tensor Y, Tensor Dq, Tensor Dk, Tensor Dv) Run(Func<Tensor, Tensor, Tensor, Tensor> attention, Tensor q, Tensor k, Tensor v, Tensor dy)
    {
        var (qq, kk, vv) = (q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_());
        var y = attention(qq, kk, vv);
        y.backward([dy]);
        return (y.detach(), qq.grad!, kk.grad!, vv.grad!);
    }

    private static double Relative(Tensor actual, Tensor reference) =>
        (actual.to(ScalarType.Float64) - reference.to(ScalarType.Float64)).abs().max().item<double>() / reference.to(ScalarType.Float64).abs().max().item<double>();

    [Fact]
    public void Float32_OutputAndGradients_MatchOneCausalSdpaPerSegment_WithGroupedKvHeads()
    {
        TorchSharpNativeFix.EnsureTorchLoaded();
        using var scope = NewDisposeScope();
        var (q, k, v, dy) = Inputs(ScalarType.Float32);
        var node = Run((a, b, c) => SegmentAttention.Apply(a, b, c, Segments), q, k, v, dy);
        var sdpa = Run((a, b, c) => SdpaPerSegment(a, b, c, Segments), q, k, v, dy);
        // Measured: 2-7e-7 for the node and for SDPA alike against float64.
        Assert.InRange(Relative(node.Y, sdpa.Y), 0, 1e-5);
        Assert.InRange(Relative(node.Dq, sdpa.Dq), 0, 1e-5);
        Assert.InRange(Relative(node.Dk, sdpa.Dk), 0, 1e-5);
        Assert.InRange(Relative(node.Dv, sdpa.Dv), 0, 1e-5);
    }

    [Fact]
    public void Bf16_OutputAndGradients_StayWithinBf16RoundingOfAFloat64Reference_AsSdpaDoes()
    {
        TorchSharpNativeFix.EnsureTorchLoaded();
        using var scope = NewDisposeScope();
        // The 100m preset's attention shapes: 12 heads on 4 KV heads of 64, segments of about 190.
        long[] segments = [190, 130, 64, 180, 204];
        var (q, k, v, dy) = Inputs(ScalarType.Float64, heads: 12, kvHeads: 4, headDim: 64, length: 384);
        var reference = Run((a, b, c) => SdpaPerSegment(a, b, c, segments), q, k, v, dy);
        Tensor Bf16(Tensor t) => t.to(ScalarType.BFloat16);
        var node = Run((a, b, c) => SegmentAttention.Apply(a, b, c, segments), Bf16(q), Bf16(k), Bf16(v), Bf16(dy));
        // Measured here: 6.8e-3 (output), 7.4e-3, 8.5e-3, 4.0e-3 (gradients); libtorch's flash SDPA: 4.2e-3 to 1.0e-2.
        Assert.InRange(Relative(node.Y, reference.Y), 0, 1e-2);
        Assert.InRange(Relative(node.Dq, reference.Dq), 0, 2e-2);
        Assert.InRange(Relative(node.Dk, reference.Dk), 0, 2e-2);
        Assert.InRange(Relative(node.Dv, reference.Dv), 0, 2e-2);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void WithoutAGraph_TheOutputIsTheNodesBitForBit(ScalarType dtype)
    {
        TorchSharpNativeFix.EnsureTorchLoaded();
        using var scope = NewDisposeScope();
        var (q, k, v, dy) = Inputs(dtype);
        var node = Run((a, b, c) => SegmentAttention.Apply(a, b, c, Segments), q, k, v, dy);
        using (no_grad())
        {
            var plain = SegmentAttention.Apply(q, k, v, Segments);
            Assert.False(plain.requires_grad);
            Assert.True(plain.eq(node.Y).all().item<bool>());
        }
    }

    [Fact]
    public void SegmentsThatCrossARow_OrDoNotCoverTheRows_AreRefused()
    {
        TorchSharpNativeFix.EnsureTorchLoaded();
        using var scope = NewDisposeScope();
        var (q, k, v, _) = Inputs(ScalarType.Float32);
        var crossing = Assert.Throws<ArgumentException>(() => SegmentAttention.Apply(q, k, v, [90, 12, 90]));
        Assert.Contains("crosses a row of 96", crossing.Message);
        var short_ = Assert.Throws<ArgumentException>(() => SegmentAttention.Apply(q, k, v, [96, 90]));
        Assert.Contains("cover 186 positions, not B x T = 192", short_.Message);
        Assert.Throws<ArgumentException>(() => SegmentAttention.Apply(q.to(ScalarType.Float64), k.to(ScalarType.Float64), v.to(ScalarType.Float64), Segments));
    }

    [Fact]
    public void AnInputWithoutGrad_GetsNoGradient_AndTheOthersAreUnchanged()
    {
        TorchSharpNativeFix.EnsureTorchLoaded();
        using var scope = NewDisposeScope();
        var (q, k, v, dy) = Inputs(ScalarType.Float32);
        var all = Run((a, b, c) => SegmentAttention.Apply(a, b, c, Segments), q, k, v, dy);
        var (qq, kk, vv) = (q.detach().requires_grad_(), k.detach(), v.detach().requires_grad_()); // k from a frozen projection
        SegmentAttention.Apply(qq, kk, vv, Segments).backward([dy]);
        Assert.Null(kk.grad);
        Assert.True(qq.grad!.eq(all.Dq).all().item<bool>());
        Assert.True(vv.grad!.eq(all.Dv).all().item<bool>());
    }

    [Fact]
    public void SegmentsLongerThanTheLimit_AreLeftToSdpa_WhoseScoresWouldNotGrowWithLSquared()
    {
        TorchSharpNativeFix.EnsureTorchLoaded();
        using var scope = NewDisposeScope();
        var q = empty([1, 4, 2048, 16], ScalarType.BFloat16);
        Assert.Equal(SegmentAttention.Takes(SegmentAttention.MaxSegmentLength), SegmentAttention.Handles(q, [SegmentAttention.MaxSegmentLength, 2048 - SegmentAttention.MaxSegmentLength]));
        Assert.False(SegmentAttention.Handles(q, [SegmentAttention.MaxSegmentLength + 1, 2047 - SegmentAttention.MaxSegmentLength]));
        Assert.False(SegmentAttention.Handles(q.to(ScalarType.Float64), [2048]));
    }
}

using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Ertas.Training.Tests;

public sealed class LinearCrossEntropyTests
{
    private const long Ignore = -100;

    /// <summary>Rows of hidden states, a frozen head, and labels with ignored rows mixed in; more rows than one chunk.</summary>
    private static (Tensor Hidden, Tensor Weight, Tensor Labels) Case(ScalarType dtype, long vocab, long rows, int seed)
    {
        var hidden = Tensors.Gaussian([2, rows / 2, 48], seed).to(dtype).requires_grad_();
        var weight = Tensors.Gaussian([vocab, 48], seed + 1, 0.3).to(dtype);
        var generator = new torch.Generator((ulong)seed + 2);
        var labels = randint(0, vocab, [2, rows / 2], dtype: ScalarType.Int64, generator: generator);
        var ignored = rand([2, rows / 2], generator: generator).lt(0.3);
        labels.masked_fill_(ignored, Ignore);
        return (hidden, weight, labels);
    }

    private static Tensor PlainSum(Tensor hidden, Tensor weight, Tensor labels)
    {
        var logits = F.linear(hidden, weight);
        if (logits.dtype != ScalarType.Float32) logits = logits.to(ScalarType.Float32);
        return F.cross_entropy(logits.view(-1, logits.shape[^1]), labels.view(-1), ignore_index: Ignore, reduction: nn.Reduction.Sum);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void ChunkedLoss_MatchesCrossEntropyOfTheFullLogits_InValueAndHiddenGradient(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        const long vocab = 30_000, rows = 600; // 139 rows per chunk: five chunks
        Assert.True(LinearCrossEntropy.ChunkRows(vocab) < rows / 4);
        var (hidden, weight, labels) = Case(dtype, vocab, rows, seed: 5);

        var plain = PlainSum(hidden, weight, labels);
        (plain / 37.0).backward();
        var plainGrad = hidden.grad!.to(ScalarType.Float32);
        hidden.grad!.zero_();

        var (chunked, counted) = LinearCrossEntropy.Sum(hidden, weight, labels, Ignore, expectedGradient: 1f / 37f);
        (chunked / 37.0).backward();

        Assert.Equal(labels.ne(Ignore).sum().item<long>(), counted);
        Assert.Equal(plain.item<float>(), chunked.item<float>(), 1e-5 * Math.Abs(plain.item<float>()));
        // Per row the arithmetic is autograd's own; bf16 rows may round one step apart where the head's matmul blocks differ.
        var chunkedGrad = hidden.grad!.to(ScalarType.Float32);
        var tolerance = dtype == ScalarType.Float32 ? 1e-6 : 2e-3;
        Assert.True(Tensors.MaxAbsDiff(plainGrad, chunkedGrad) <= tolerance * plainGrad.abs().max().item<float>(),
            $"max |diff| {Tensors.MaxAbsDiff(plainGrad, chunkedGrad)} against max |grad| {plainGrad.abs().max().item<float>()}");
        // Ignored rows get exactly no gradient.
        var ignoredRows = labels.view(-1).eq(Ignore).nonzero().squeeze(1);
        Assert.Equal(0, chunkedGrad.view(-1, 48).index_select(0, ignoredRows).abs().max().item<float>());
    }

    [Theory]
    [InlineData(ScalarType.Float32, 1e-6)]
    [InlineData(ScalarType.BFloat16, 1e-2)] // a rounding more: the gradient made for 1, then scaled
    public void AGradientOtherThanTheExpectedOne_IsScaledTo(ScalarType dtype, double tolerance)
    {
        using var scope = NewDisposeScope();
        var (hidden, weight, labels) = Case(dtype, 3000, 200, seed: 6);
        (PlainSum(hidden, weight, labels) * 0.25).backward();
        var plainGrad = hidden.grad!.to(ScalarType.Float32);
        hidden.grad!.zero_();
        var (chunked, _) = LinearCrossEntropy.Sum(hidden, weight, labels, Ignore); // expects 1
        (chunked * 0.25).backward();
        var chunkedGrad = hidden.grad!.to(ScalarType.Float32);
        Assert.True(Tensors.MaxAbsDiff(plainGrad, chunkedGrad) <= tolerance * plainGrad.abs().max().item<float>(),
            $"max |diff| {Tensors.MaxAbsDiff(plainGrad, chunkedGrad)} against max |grad| {plainGrad.abs().max().item<float>()}");
    }

    [Fact]
    public void WithoutGradients_TheLossIsTheSameAndOffTheGraph()
    {
        using var scope = NewDisposeScope();
        var (hidden, weight, labels) = Case(ScalarType.Float32, 3000, 200, seed: 8);
        var (withGrad, _) = LinearCrossEntropy.Sum(hidden, weight, labels, Ignore);
        using (no_grad())
        {
            var (evaluated, counted) = LinearCrossEntropy.Sum(hidden, weight, labels, Ignore);
            Assert.False(evaluated.requires_grad);
            Assert.Equal(withGrad.item<float>(), evaluated.item<float>());
            Assert.Equal(labels.ne(Ignore).sum().item<long>(), counted);
        }
    }

    [Fact]
    public void EveryRowIgnored_GivesZeroLossAndZeroGradient()
    {
        using var scope = NewDisposeScope();
        var (hidden, weight, labels) = Case(ScalarType.Float32, 1000, 8, seed: 9);
        labels.fill_(Ignore);
        var (sum, counted) = LinearCrossEntropy.Sum(hidden, weight, labels, Ignore);
        sum.backward();
        Assert.Equal(0, counted);
        Assert.Equal(0f, sum.item<float>());
        Assert.Equal(0f, hidden.grad!.abs().max().item<float>());
    }

    [Fact]
    public void TrainableOutputWeight_IsRefused_SinceItsGradientIsNotComputed()
    {
        using var scope = NewDisposeScope();
        var (hidden, weight, labels) = Case(ScalarType.Float32, 100, 8, seed: 3);
        weight.requires_grad_();
        Assert.Throws<ArgumentException>(() => LinearCrossEntropy.Sum(hidden, weight, labels, Ignore));
    }
}

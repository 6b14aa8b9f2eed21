using Ertas.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training.Tests;

public sealed class OptimizationTests
{
    [Fact]
    public void LinearSchedule_MatchesTransformersAtChosenSteps()
    {
        var s = LrSchedule.Create(LrSchedulerKind.Linear, 2e-4, totalSteps: 100, warmupSteps: 10);
        Assert.Equal(0.0, s.At(0));
        Assert.Equal(2e-4 * 5 / 10.0, s.At(5));
        Assert.Equal(2e-4, s.At(10));
        Assert.Equal(2e-4 * (45 / 90.0), s.At(55));
        Assert.Equal(2e-4 * (1 / 90.0), s.At(99));
        Assert.Equal(0.0, s.At(100));
        Assert.Equal(0.0, s.At(150)); // clamped at zero past the end
    }

    [Fact]
    public void CosineSchedule_MatchesTransformersAtChosenSteps()
    {
        var s = LrSchedule.Create(LrSchedulerKind.Cosine, 1e-3, totalSteps: 110, warmupSteps: 10);
        Assert.Equal(1e-3 * 0.3, s.At(3));
        Assert.Equal(1e-3, s.At(10));
        Assert.Equal(1e-3 * 0.5 * (1 + Math.Cos(Math.PI * 0.25)), s.At(35)); // progress 0.25
        Assert.Equal(1e-3 * 0.5, s.At(60), 15);                             // progress 0.5: cos(pi/2) ~ 6e-17
        Assert.Equal(1e-3 * 0.5 * (1 + Math.Cos(Math.PI * 0.99)), s.At(109));
        Assert.Equal(0.0, s.At(110));
    }

    [Fact]
    public void ConstantSchedule_WarmsUpThenHolds()
    {
        var s = LrSchedule.Create(LrSchedulerKind.Constant, 5e-5, totalSteps: 20, warmupSteps: 4);
        Assert.Equal([0.0, 5e-5 * 0.25, 5e-5 * 0.5, 5e-5 * 0.75, 5e-5, 5e-5], Enumerable.Range(0, 6).Select(k => s.At(k)));
        Assert.Equal(5e-5, LrSchedule.Create(LrSchedulerKind.Constant, 5e-5, totalSteps: 20).At(0)); // no warmup: full rate at once
    }

    [Fact]
    public void WarmupRatio_RoundsUpLikeTransformers_AndExplicitStepsWin()
    {
        Assert.Equal(30, LrSchedule.Create(LrSchedulerKind.Linear, 1e-4, 1000, warmupRatio: 0.03).WarmupSteps);
        Assert.Equal(4, LrSchedule.Create(LrSchedulerKind.Linear, 1e-4, 100, warmupRatio: 0.031).WarmupSteps);
        Assert.Equal(7, LrSchedule.Create(LrSchedulerKind.Linear, 1e-4, 100, warmupSteps: 7, warmupRatio: 0.5).WarmupSteps);
        Assert.Throws<ErtasException>(() => LrSchedule.Create(LrSchedulerKind.Linear, 0, 100));
        Assert.Throws<ErtasException>(() => LrSchedule.Create(LrSchedulerKind.Linear, 1e-4, 0));
    }

    [Fact]
    public void AdamW_MatchesTorchSharpsAdamW_OverSeveralSteps()
    {
        using var start = Tensors.Gaussian([16, 8], seed: 1);
        using var ours = start.clone().requires_grad_();
        using var theirs = new TorchSharp.Modules.Parameter(start.clone(), requires_grad: true);
        using var optimizer = new AdamW([ours], beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1);
        var reference = optim.AdamW([theirs], lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1);
        for (var step = 0; step < 5; step++)
        {
            using var target = Tensors.Gaussian([16, 8], seed: 10 + step);
            using (var loss = (ours - target).pow(2).sum()) loss.backward();
            optimizer.Step(1e-2);
            optimizer.ZeroGrad();
            reference.zero_grad();
            using (var loss = (theirs - target).pow(2).sum()) loss.backward();
            reference.step();
        }
        Assert.Equal(5, optimizer.StepCount);
        Assert.True(Tensors.MaxAbsDiff(ours, theirs) < 1e-6, $"max diff {Tensors.MaxAbsDiff(ours, theirs)}");
        Assert.True(Tensors.MaxAbsDiff(ours, start) > 1e-2); // it moved
    }

    [Fact]
    public void AdamW_RestoredState_ContinuesBitForBit()
    {
        using var start = Tensors.Gaussian([10], seed: 2);
        using var a = start.clone().requires_grad_();
        using var b = start.clone().requires_grad_();
        using var first = new AdamW([a], weightDecay: 0.01);
        void Step(AdamW o, Tensor p, int k)
        {
            using var target = Tensors.Gaussian([10], seed: 100 + k);
            using (var loss = (p * target).sin().sum()) loss.backward();
            o.Step(1e-2);
            o.ZeroGrad();
        }
        for (var k = 0; k < 3; k++) Step(first, a, k);
        using (no_grad()) b.copy_(a);
        using var resumed = new AdamW([b], weightDecay: 0.01);
        resumed.Restore(first.StepCount, first.ExpAvg, first.ExpAvgSq);
        for (var k = 3; k < 6; k++)
        {
            Step(first, a, k);
            Step(resumed, b, k);
        }
        Assert.True(Tensors.BitEqual(a, b));
    }

    [Fact]
    public void ClipGradNorm_MatchesTorchSharpsClipGradNorm()
    {
        using var p1 = Tensors.Gaussian([5, 4], seed: 1).requires_grad_();
        using var p2 = Tensors.Gaussian([7], seed: 2).requires_grad_();
        using var q1 = new TorchSharp.Modules.Parameter(p1.detach().clone(), requires_grad: true);
        using var q2 = new TorchSharp.Modules.Parameter(p2.detach().clone(), requires_grad: true);
        using (var loss = p1.pow(3).sum() + p2.exp().sum()) loss.backward();
        using (var loss = q1.pow(3).sum() + q2.exp().sum()) loss.backward();

        var total = GradientClipping.ClipGradNorm([p1, p2], maxNorm: 1.0);
        var reference = nn.utils.clip_grad_norm_(new[] { q1, q2 }, 1.0);
        Assert.Equal(reference, total, 4);
        Assert.True(total > 1.0); // clipping happened
        Assert.True(Tensors.MaxAbsDiff(p1.grad!, q1.grad!) < 1e-7);
        Assert.True(Tensors.MaxAbsDiff(p2.grad!, q2.grad!) < 1e-7);
        using var norms = stack([linalg.vector_norm(p1.grad!), linalg.vector_norm(p2.grad!)]);
        Assert.Equal(1.0, linalg.vector_norm(norms).item<float>(), 5);
    }

    [Fact]
    public void ClipGradNorm_BelowTheLimit_LeavesGradientsAsTheyAre()
    {
        using var p = Tensors.Gaussian([3], seed: 4).requires_grad_();
        using (var loss = (p * 0.01).sum()) loss.backward();
        var before = Tensors.Values(p.grad!);
        var total = GradientClipping.ClipGradNorm([p], maxNorm: 1.0);
        Assert.Equal(Math.Sqrt(3) * 0.01, total, 6);
        Assert.Equal(before, Tensors.Values(p.grad!)); // multiplied by exactly 1
    }

    [Fact]
    public void Accumulation_TokenWeightedMicroBatches_EqualOneBigBatch()
    {
        // Per-token squared error over two micro-batches of 3 and 5 trained tokens, against the mean over all 8.
        using var w = Tensors.Gaussian([4], seed: 1).requires_grad_();
        using var x1 = Tensors.Gaussian([3, 4], seed: 2);
        using var x2 = Tensors.Gaussian([5, 4], seed: 3);
        var accumulation = new GradientAccumulation(2);
        Assert.False(accumulation.EndsStep(0));
        Assert.True(accumulation.EndsStep(1));
        Assert.Equal(1, accumulation.StepOf(3));
        foreach (var (x, tokens) in new[] { (x1, 3L), (x2, 5L) })
        {
            using var loss = x.matmul(w).pow(2).mean() * GradientAccumulation.LossWeight(tokens, 8);
            loss.backward();
        }
        var accumulated = Tensors.Values(w.grad!);

        using var v = w.detach().clone().requires_grad_();
        using (var loss = cat([x1, x2]).matmul(v).pow(2).mean()) loss.backward();
        var whole = Tensors.Values(v.grad!);
        for (var i = 0; i < 4; i++) Assert.Equal(whole[i], accumulated[i], 5);
        Assert.Throws<ErtasException>(() => new GradientAccumulation(0));
    }
}

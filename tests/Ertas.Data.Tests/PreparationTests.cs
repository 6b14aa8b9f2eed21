using Ertas.Core;

namespace Ertas.Data.Tests;

public sealed class PreparationTests
{
    /// <summary>Twenty distinct Q/A examples of varied length, so packing has real choices to make.</summary>
    private static string[] QaLines(int count = 20) =>
        Enumerable.Range(0, count)
            .Select(i => TestData.ChatLine(("user", $"Question {i}: what is {i} plus {i}?"),
                ("assistant", $"{i} plus {i} is {2 * i}." + string.Concat(Enumerable.Repeat(" Indeed.", i % 5)))))
            .ToArray();

    private static PreparedDataset Prepare(ScratchFolder scratch, string[] lines, PreparationOptions options, string cache = "cache")
    {
        var path = scratch.WriteLines("data.jsonl", lines);
        return DatasetPreparer.Prepare([path], TestData.TinyTokenizer, null, options, scratch.File(cache), NullProgressSink.Instance);
    }

    /// <summary>The examples of a split, recovered from its rows by segment id.</summary>
    private static List<int[]> ExamplesIn(PackedSplit split)
    {
        var examples = new List<int[]>();
        for (var r = 0; r < split.RowCount; r++)
        {
            var row = split.Row(r);
            var ids = row.InputIds.Span;
            var segments = row.SegmentIds.Span;
            for (var t = 0; t < split.SequenceLength && segments[t] != 0;)
            {
                var end = t;
                while (end < split.SequenceLength && segments[end] == segments[t])
                    end++;
                examples.Add(ids[t..end].ToArray());
                t = end;
            }
        }
        return examples;
    }

    [Theory]
    [InlineData(PackingMode.FirstFit)]
    [InlineData(PackingMode.Sequential)]
    [InlineData(PackingMode.None)]
    public void PackedRows_NeverCrossExampleBoundaries(PackingMode packing)
    {
        using var scratch = new ScratchFolder();
        var dataset = Prepare(scratch, QaLines(), TestData.Options(96) with { Packing = packing });
        var train = dataset.Train;
        var tokenizer = TestData.TinyTokenizer;

        Assert.Equal(20, train.ExampleCount);
        for (var r = 0; r < train.RowCount; r++)
        {
            var row = train.Row(r);
            var ids = row.InputIds.Span;
            var labels = row.Labels.Span;
            var positions = row.PositionIds.Span;
            var segments = row.SegmentIds.Span;
            Assert.Equal(1, segments[0]);
            for (var t = 0; t < train.SequenceLength; t++)
            {
                var startsExample = segments[t] != 0 && (t == 0 || segments[t] != segments[t - 1]);
                if (segments[t] == 0)
                {
                    // Padding: only at the end, inert.
                    Assert.All(segments[t..].ToArray(), s => Assert.Equal(0, s));
                    Assert.Equal((tokenizer.EosId, PackedSplit.IgnoreIndex, 0), (ids[t], labels[t], positions[t]));
                    continue;
                }
                if (startsExample)
                {
                    Assert.Equal(0, positions[t]);
                    Assert.Equal(tokenizer.BosId, ids[t]);
                    Assert.True(t == 0 || segments[t] == segments[t - 1] + 1);
                }
                else
                {
                    Assert.Equal(positions[t - 1] + 1, positions[t]);
                }
                var lastOfExample = t + 1 == train.SequenceLength || segments[t + 1] != segments[t];
                if (lastOfExample)
                    Assert.Equal(PackedSplit.IgnoreIndex, labels[t]);
                else if (labels[t] != PackedSplit.IgnoreIndex)
                    Assert.Equal(ids[t + 1], labels[t]);
            }
        }
        if (packing == PackingMode.None)
            Assert.Equal(20, train.RowCount);
        else
            Assert.True(train.RowCount < 20);
    }

    [Fact]
    public void Labels_AreTheNextIdsOfExactlyTheAssistantAnswers()
    {
        using var scratch = new ScratchFolder();
        var tokenizer = TestData.TinyTokenizer;
        var dataset = Prepare(scratch, [TestData.ChatLine(("user", "Name a color."), ("assistant", "Blue."), ("user", "Another?"), ("assistant", "Green."))],
            TestData.Options(64));

        var labels = dataset.Train.Row(0).Labels.ToArray();
        var targets = labels.Where(l => l != PackedSplit.IgnoreIndex).ToArray();
        Assert.Equal([.. tokenizer.Encode("Blue.", false), tokenizer.EosId, .. tokenizer.Encode("Green.", false), tokenizer.EosId], targets);
        Assert.Equal(targets.Length, dataset.Train.TrainedTokenCount);
    }

    [Fact]
    public void FirstFit_FillsEarlierRowsBeforeOpeningNewOnes_AndKeepsEveryExampleWhole()
    {
        using var scratch = new ScratchFolder();
        var options = TestData.Options(96) with { Shuffle = false };
        var firstFit = Prepare(scratch, QaLines(), options, "a");
        var sequential = Prepare(scratch, QaLines(), options with { Packing = PackingMode.Sequential }, "b");

        Assert.True(firstFit.Train.RowCount <= sequential.Train.RowCount);
        var expected = DatasetValidator.Validate([scratch.File("data.jsonl")], TestData.TinyTokenizer, options).Encoded!.Select(e => e.Ids).ToList();
        Assert.Equal(Sorted(expected), Sorted(ExamplesIn(firstFit.Train)));
        // Sequential packing without shuffling keeps file order.
        Assert.Equal(expected, ExamplesIn(sequential.Train));

        static List<string> Sorted(IEnumerable<int[]> examples) => examples.Select(e => string.Join(',', e)).Order(StringComparer.Ordinal).ToList();
    }

    [Fact]
    public void SameSeed_GivesTheSameCacheBytes()
    {
        using var scratch = new ScratchFolder();
        var a = Prepare(scratch, QaLines(), TestData.Options(96) with { EvalCount = 4 }, "a");
        var b = Prepare(scratch, QaLines(), TestData.Options(96) with { EvalCount = 4 }, "b");

        Assert.False(b.LoadedFromCache);
        Assert.Equal(File.ReadAllBytes(a.CachePath), File.ReadAllBytes(b.CachePath));
        Assert.Equal(a.Train.InputIds.ToArray(), b.Train.InputIds.ToArray());
    }

    [Fact]
    public void DifferentSeed_GivesADifferentOrderOfTheSameExamples()
    {
        using var scratch = new ScratchFolder();
        var options = TestData.Options(96) with { Packing = PackingMode.None };
        var a = Prepare(scratch, QaLines(), options with { Seed = 1 });
        var b = Prepare(scratch, QaLines(), options with { Seed = 2 });

        var orderA = ExamplesIn(a.Train).Select(e => string.Join(',', e)).ToList();
        var orderB = ExamplesIn(b.Train).Select(e => string.Join(',', e)).ToList();
        Assert.NotEqual(orderA, orderB);
        Assert.Equal(orderA.Order(StringComparer.Ordinal), orderB.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(0, 0.0, 20, 0)]
    [InlineData(3, 0.0, 17, 3)]
    [InlineData(0, 0.25, 15, 5)]
    [InlineData(0, 0.01, 19, 1)]
    public void TrainEvalSplit_IsByExample_WithTheRequestedSizes_AndDisjoint(int evalCount, double evalFraction, int trainExamples, int evalExamples)
    {
        using var scratch = new ScratchFolder();
        var dataset = Prepare(scratch, QaLines(), TestData.Options(96) with { EvalCount = evalCount, EvalFraction = evalFraction });

        Assert.Equal((trainExamples, evalExamples), (dataset.Train.ExampleCount, dataset.Eval.ExampleCount));
        var train = ExamplesIn(dataset.Train).Select(e => string.Join(',', e)).ToHashSet();
        var eval = ExamplesIn(dataset.Eval).Select(e => string.Join(',', e)).ToHashSet();
        Assert.Equal(trainExamples, train.Count);
        Assert.Equal(evalExamples, eval.Count);
        Assert.Empty(train.Intersect(eval));
    }

    [Fact]
    public void AnEvalSplitTakingEveryExample_IsRejected()
    {
        using var scratch = new ScratchFolder();
        var error = Assert.Throws<ErtasException>(() => Prepare(scratch, QaLines(3), TestData.Options(96) with { EvalCount = 3 }));

        Assert.Equal(ErrorCode.DatasetInvalidOption, error.Code);
    }

    [Theory]
    [InlineData(1, 0.0, 0)]
    [InlineData(64, 1.0, 0)]
    [InlineData(64, 0.5, 2)]
    public void ImpossibleSettings_AreRejectedWithErtas6021(int sequenceLength, double evalFraction, int evalCount)
    {
        var options = TestData.Options(sequenceLength) with { EvalFraction = evalFraction, EvalCount = evalCount };

        Assert.Equal(ErrorCode.DatasetInvalidOption, Assert.Throws<ErtasException>(options.Validate).Code);
    }

    [Fact]
    public void ADatasetWithErrors_ReportsEveryDiagnostic_ThrowsAndWritesNoCache()
    {
        using var scratch = new ScratchFolder();
        var path = scratch.WriteLines("bad.jsonl", [TestData.ChatLine(("user", "a"), ("assistant", "b")), "{bad", "{\"messages\":[]}"]);
        var sink = new RecordingSink();

        var error = Assert.Throws<ErtasException>(() =>
            DatasetPreparer.Prepare([path], TestData.TinyTokenizer, null, TestData.Options(), scratch.File("cache"), sink));

        Assert.Equal((ErrorCode.DatasetHasErrors, 2), (error.Code, error.Line));
        Assert.Equal(2, sink.Lines.Count(l => l.Contains(": error ERTAS60", StringComparison.Ordinal)));
        Assert.False(Directory.Exists(scratch.File("cache")) && Directory.EnumerateFiles(scratch.File("cache")).Any());
    }
}

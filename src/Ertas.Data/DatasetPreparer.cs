using Ertas.Core;
using Ertas.Mistral.Presets;
using Ertas.Mistral.Tokenization;

namespace Ertas.Data;

/// <summary>
/// JSONL files in, packed training and evaluation rows out: validate (every problem reported, nothing prepared when
/// there is an error), encode with the chat template, split by example, shuffle, pack, and cache the result by
/// content hash so a second run with the same inputs loads it instead of tokenizing again.
/// </summary>
public static class DatasetPreparer
{
    /// <summary>
    /// Prepares <paramref name="dataFiles"/> (in the given order, which is part of the key). Every diagnostic is
    /// reported to <paramref name="progress"/> as one MSBuild-format line; errors then throw ERTAS6020 pointing at
    /// the first. <paramref name="tokenizerBytes"/> is what the key hashes for the tokenizer: pass the
    /// <c>tokenizer.model</c> file's bytes; when null the model's own serialization is hashed.
    /// </summary>
    /// <summary>
    /// The prepared dataset <see cref="Prepare"/> would load from <paramref name="cacheDir"/> for these inputs, or null
    /// when it is not cached (or a file cannot be read): nothing is validated or tokenized, so a plan can count rows and
    /// tokens for free when a run already prepared the data.
    /// </summary>
    public static PreparedDataset? TryLoadCached(IReadOnlyList<string> dataFiles, byte[] tokenizerBytes, PreparationOptions options, string cacheDir)
    {
        var contents = new List<byte[]>();
        foreach (var file in dataFiles)
        {
            if (!File.Exists(file)) return null;
            contents.Add(File.ReadAllBytes(file));
        }
        var key = DatasetCache.ComputeKey(contents, tokenizerBytes, options);
        var path = DatasetCache.PathFor(cacheDir, key);
        return File.Exists(path) ? DatasetCache.TryRead(path, key, dataFiles, out _) : null;
    }

    public static PreparedDataset Prepare(IReadOnlyList<string> dataFiles, MistralTokenizer tokenizer, byte[]? tokenizerBytes,
        PreparationOptions options, string cacheDir, IProgressSink progress, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataFiles);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(cacheDir);
        ArgumentNullException.ThrowIfNull(progress);
        options.Validate();
        if (dataFiles.Count == 0)
            throw new ErtasException(ErrorCode.DatasetNoExamples, "no data files were given");

        var readErrors = new List<DatasetDiagnostic>();
        var sources = new List<(string File, byte[] Content)>();
        foreach (var file in dataFiles)
        {
            var content = DatasetValidator.TryReadFile(file, readErrors);
            if (content is not null)
                sources.Add((file, content));
        }
        if (readErrors.Count > 0)
        {
            ReportAll(readErrors, progress);
            new ValidationReport(readErrors, [], null).ThrowIfErrors();
        }

        var key = DatasetCache.ComputeKey(sources.Select(s => s.Content).ToArray(), tokenizerBytes ?? tokenizer.Model.ToBytes(), options);
        var cachePath = DatasetCache.PathFor(cacheDir, key);
        if (File.Exists(cachePath))
        {
            var cached = DatasetCache.TryRead(cachePath, key, dataFiles, out var problem);
            if (cached is not null)
            {
                ReportAll(cached.Warnings, progress);
                progress.Report($"dataset: loaded from cache {cachePath} ({Describe(cached)})");
                return cached;
            }
            progress.Report($"dataset: ignoring cache {cachePath}: {problem}; preparing again");
        }

        var report = DatasetValidator.Validate(sources, tokenizer, options, [], cancellationToken);
        ReportAll(report.Diagnostics, progress);
        report.ThrowIfErrors();
        var encoded = report.Encoded!;

        var evalCount = options.EvalExampleCount(encoded.Count);
        if (evalCount >= encoded.Count)
            throw new ErtasException(ErrorCode.DatasetInvalidOption,
                $"the eval split would take {evalCount} of the {encoded.Count} examples, leaving none to train on; lower EvalCount or EvalFraction");
        var (trainOrder, evalOrder) = SplitAndOrder(encoded.Count, evalCount, options);
        cancellationToken.ThrowIfCancellationRequested();

        var train = SequencePacker.Pack(trainOrder.Select(i => encoded[i]).ToArray(), options.SequenceLength, options.Packing, tokenizer.EosId);
        var eval = SequencePacker.Pack(evalOrder.Select(i => encoded[i]).ToArray(), options.SequenceLength, options.Packing, tokenizer.EosId);
        var warnings = report.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Warning).ToArray();
        var dataset = new PreparedDataset(options.SequenceLength, train, eval, warnings,
            Convert.ToHexString(key).ToLowerInvariant(), cachePath, LoadedFromCache: false);
        cancellationToken.ThrowIfCancellationRequested();
        DatasetCache.Write(cachePath, key, dataset, dataFiles);
        progress.Report($"dataset: prepared {Describe(dataset)}; cached as {cachePath}");
        return dataset;
    }

    /// <summary>
    /// The split is by example, before packing, so no eval example shares a row with a training one. A seeded
    /// Fisher-Yates permutation (portable xoshiro256**) picks the eval examples (its first <paramref name="evalCount"/>);
    /// with shuffling on, both parts keep the permutation's order, otherwise file order.
    /// </summary>
    internal static (int[] Train, int[] Eval) SplitAndOrder(int exampleCount, int evalCount, PreparationOptions options)
    {
        var permutation = Enumerable.Range(0, exampleCount).ToArray();
        var random = new SeededUniform(options.Seed, SeededUniform.StreamId("ertas-dataset-order"), 0);
        for (var i = exampleCount - 1; i > 0; i--)
        {
            // Multiply-high maps 64 random bits onto [0, i]; its bias is below 2^-32 for any realistic dataset.
            var j = (int)Math.BigMul(random.NextUInt64(), (ulong)(i + 1), out _);
            (permutation[i], permutation[j]) = (permutation[j], permutation[i]);
        }
        var eval = permutation[..evalCount];
        var train = permutation[evalCount..];
        if (!options.Shuffle)
        {
            Array.Sort(eval);
            Array.Sort(train);
        }
        return (train, eval);
    }

    private static void ReportAll(IEnumerable<DatasetDiagnostic> diagnostics, IProgressSink progress)
    {
        foreach (var diagnostic in diagnostics)
            progress.Report(diagnostic.ToDiagnostic());
    }

    private static string Describe(PreparedDataset dataset) =>
        $"train {dataset.Train.ExampleCount} examples in {dataset.Train.RowCount} rows of {dataset.SequenceLength} " +
        $"({Fill(dataset.Train):P1} filled, {dataset.Train.TrainedTokenCount} trained tokens), " +
        $"eval {dataset.Eval.ExampleCount} examples in {dataset.Eval.RowCount} rows";

    private static double Fill(PackedSplit split) =>
        split.RowCount == 0 ? 0 : (double)split.TokenCount / ((long)split.RowCount * split.SequenceLength);
}

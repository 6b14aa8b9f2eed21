namespace Ertas.Data;

/// <summary>
/// Training and evaluation rows ready for a trainer, and where they came from. <see cref="Warnings"/> are the
/// validation warnings (also kept in the cache, with today's file names, so a cache hit still shows them).
/// </summary>
public sealed record PreparedDataset(
    int SequenceLength,
    PackedSplit Train,
    PackedSplit Eval,
    IReadOnlyList<DatasetDiagnostic> Warnings,
    string CacheKey,
    string CachePath,
    bool LoadedFromCache);

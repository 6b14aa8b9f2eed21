namespace Ertas.Data;

/// <summary>
/// Examples packed into rows of <see cref="SequenceLength"/> tokens, stored row-major as four int32 arrays of
/// <c>RowCount * SequenceLength</c>. Within a row, examples never see each other:
/// <list type="bullet">
/// <item><see cref="InputIds"/>: the ids; padding is the EOS id.</item>
/// <item><see cref="Labels"/>: next-token targets, already shifted: <c>Labels[t] = InputIds[t+1]</c> when t+1 is in
/// the same example and that id is trained, else <see cref="IgnoreIndex"/> (-100), which is also the value at each
/// example's last position and on padding. The loss is plain cross-entropy of logits[t] against Labels[t].</item>
/// <item><see cref="PositionIds"/>: restart at 0 for each example (RoPE positions); 0 on padding.</item>
/// <item><see cref="SegmentIds"/>: 1, 2, ... for the examples of a row in order, 0 on padding. Attention must be
/// <c>allowed(q, k) = SegmentIds[q] == SegmentIds[k] &amp;&amp; k &lt;= q</c>: block-diagonal and causal. Padding is
/// its own segment, so its rows are never empty (no NaN from a softmax over nothing).</item>
/// </list>
/// </summary>
public sealed class PackedSplit
{
    public const int IgnoreIndex = -100;

    private readonly int[] _inputIds;
    private readonly int[] _labels;
    private readonly int[] _positionIds;
    private readonly int[] _segmentIds;

    internal PackedSplit(int sequenceLength, int rowCount, int exampleCount, int[] inputIds, int[] labels, int[] positionIds, int[] segmentIds)
    {
        var cells = (long)sequenceLength * rowCount;
        if (inputIds.Length != cells || labels.Length != cells || positionIds.Length != cells || segmentIds.Length != cells)
            throw new ArgumentException($"every array must hold {rowCount} rows of {sequenceLength}");
        SequenceLength = sequenceLength;
        RowCount = rowCount;
        ExampleCount = exampleCount;
        _inputIds = inputIds;
        _labels = labels;
        _positionIds = positionIds;
        _segmentIds = segmentIds;
        foreach (var segment in segmentIds)
            if (segment != 0)
                TokenCount++;
        foreach (var label in labels)
            if (label != IgnoreIndex)
                TrainedTokenCount++;
    }

    public int SequenceLength { get; }
    public int RowCount { get; }
    public int ExampleCount { get; }

    /// <summary>Ids that belong to an example (everything but padding).</summary>
    public long TokenCount { get; }

    /// <summary>Positions whose label is a real target: what the loss averages over.</summary>
    public long TrainedTokenCount { get; }

    public ReadOnlySpan<int> InputIds => _inputIds;
    public ReadOnlySpan<int> Labels => _labels;
    public ReadOnlySpan<int> PositionIds => _positionIds;
    public ReadOnlySpan<int> SegmentIds => _segmentIds;

    public PackedRow Row(int row)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, RowCount);
        var start = row * SequenceLength;
        return new PackedRow(
            _inputIds.AsMemory(start, SequenceLength), _labels.AsMemory(start, SequenceLength),
            _positionIds.AsMemory(start, SequenceLength), _segmentIds.AsMemory(start, SequenceLength));
    }

    internal static PackedSplit Empty(int sequenceLength) => new(sequenceLength, 0, 0, [], [], [], []);
}

/// <summary>One packed row; see <see cref="PackedSplit"/> for what each array holds.</summary>
public readonly record struct PackedRow(ReadOnlyMemory<int> InputIds, ReadOnlyMemory<int> Labels, ReadOnlyMemory<int> PositionIds, ReadOnlyMemory<int> SegmentIds);

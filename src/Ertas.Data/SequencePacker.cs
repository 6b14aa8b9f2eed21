namespace Ertas.Data;

/// <summary>
/// Lays encoded examples into fixed-length rows (see <see cref="PackedSplit"/> for the layout). Deterministic: the
/// same examples in the same order give the same rows. No example is split across rows; callers enforce that every
/// example fits (the validator's length policy).
/// </summary>
public static class SequencePacker
{
    public static PackedSplit Pack(IReadOnlyList<EncodedExample> examples, int sequenceLength, PackingMode mode, int padId)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceLength, 2);
        if (examples.Count == 0)
            return PackedSplit.Empty(sequenceLength);
        foreach (var example in examples)
            if (example.Count > sequenceLength || example.Count == 0)
                throw new ArgumentException($"an example of {example.Count} ids (line {example.Source.Line}) cannot be packed into rows of {sequenceLength}");

        var rowOf = mode switch
        {
            PackingMode.None => Enumerable.Range(0, examples.Count).ToArray(),
            PackingMode.Sequential => AssignSequential(examples, sequenceLength),
            _ => AssignFirstFit(examples, sequenceLength),
        };
        var rowCount = rowOf.Max() + 1;
        var cells = checked(rowCount * sequenceLength);
        var inputIds = new int[cells];
        var labels = new int[cells];
        var positionIds = new int[cells];
        var segmentIds = new int[cells];
        inputIds.AsSpan().Fill(padId);
        labels.AsSpan().Fill(PackedSplit.IgnoreIndex);

        var fill = new int[rowCount];
        var segmentsInRow = new int[rowCount];
        for (var e = 0; e < examples.Count; e++)
        {
            var example = examples[e];
            var row = rowOf[e];
            var start = row * sequenceLength + fill[row];
            var segment = ++segmentsInRow[row];
            for (var t = 0; t < example.Count; t++)
            {
                inputIds[start + t] = example.Ids[t];
                positionIds[start + t] = t;
                segmentIds[start + t] = segment;
                // Shifted here, so the trainer's loss is plain cross-entropy; the last id of an example has no
                // successor inside the example, so its label stays IgnoreIndex and no target crosses a boundary.
                if (t + 1 < example.Count && example.Trained[t + 1])
                    labels[start + t] = example.Ids[t + 1];
            }
            fill[row] += example.Count;
        }
        return new PackedSplit(sequenceLength, rowCount, examples.Count, inputIds, labels, positionIds, segmentIds);
    }

    private static int[] AssignSequential(IReadOnlyList<EncodedExample> examples, int sequenceLength)
    {
        var rowOf = new int[examples.Count];
        int row = 0, used = 0;
        for (var e = 0; e < examples.Count; e++)
        {
            if (used + examples[e].Count > sequenceLength)
            {
                row++;
                used = 0;
            }
            rowOf[e] = row;
            used += examples[e].Count;
        }
        return rowOf;
    }

    /// <summary>
    /// First fit in O(n log n): a max segment tree over the free space of n potential rows finds the leftmost row
    /// with room. Unopened rows (all free) lie right of every opened one, so "leftmost" also opens rows in order.
    /// </summary>
    private static int[] AssignFirstFit(IReadOnlyList<EncodedExample> examples, int sequenceLength)
    {
        var leaves = 1;
        while (leaves < examples.Count)
            leaves <<= 1;
        var free = new int[2 * leaves];
        free.AsSpan(leaves, examples.Count).Fill(sequenceLength);
        for (var node = leaves - 1; node >= 1; node--)
            free[node] = Math.Max(free[2 * node], free[2 * node + 1]);

        var rowOf = new int[examples.Count];
        for (var e = 0; e < examples.Count; e++)
        {
            var need = examples[e].Count;
            var node = 1;
            while (node < leaves)
                node = free[2 * node] >= need ? 2 * node : 2 * node + 1;
            rowOf[e] = node - leaves;
            free[node] -= need;
            for (node >>= 1; node >= 1; node >>= 1)
                free[node] = Math.Max(free[2 * node], free[2 * node + 1]);
        }
        return rowOf;
    }
}

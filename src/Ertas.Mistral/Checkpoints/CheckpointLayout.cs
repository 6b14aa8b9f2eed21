using Ertas.Core;

namespace Ertas.Mistral.Checkpoints;

/// <summary>File names of a Hugging Face checkpoint folder and the strict tensor-set check both reader and writer apply.</summary>
public static class CheckpointLayout
{
    public const string ConfigFileName = "config.json";
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";
    public const string TokenizerFileName = "tokenizer.model";

    /// <summary>Hugging Face's shard naming: <c>model-00001-of-00003.safetensors</c>.</summary>
    public static string ShardFileName(int index, int count) => $"model-{index:D5}-of-{count:D5}.safetensors";

    /// <summary>
    /// Rotary inverse frequencies that some old exports saved as buffers. They are derived from rope_theta, not
    /// weights, and Hugging Face itself ignores them on load, so a checkpoint holding them is still accepted.
    /// </summary>
    public static bool IsIgnoredBuffer(string name) => name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal);

    private const int ListedNames = 12;

    /// <summary>
    /// Checks that <paramref name="actual"/> holds exactly the tensors <paramref name="config"/> implies, with the same
    /// shapes. Missing tensors are reported first (with any unexpected ones, since together they usually reveal a
    /// naming or layer-count mismatch), then unexpected ones, then shape mismatches with both shapes.
    /// </summary>
    public static void Verify(MistralConfig config, IReadOnlyDictionary<string, long[]> actual, string location)
    {
        var expected = config.ExpectedTensors().ToList();
        var expectedNames = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        var missing = expected.Where(e => !actual.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        var unexpected = actual.Keys.Where(n => !expectedNames.Contains(n) && !IsIgnoredBuffer(n))
            .OrderBy(n => n, StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
        {
            var message = $"checkpoint lacks {missing.Count} tensor(s) that config.json implies: {List(missing)}";
            if (unexpected.Count > 0)
                message += $"; it also holds {unexpected.Count} tensor(s) the config does not expect: {List(unexpected)}";
            throw new ErtasException(ErrorCode.CheckpointMissingTensor, message, location);
        }
        if (unexpected.Count > 0)
            throw new ErtasException(ErrorCode.CheckpointUnexpectedTensor,
                $"checkpoint holds {unexpected.Count} tensor(s) that config.json does not imply: {List(unexpected)}", location);
        var mismatches = expected.Where(e => !e.Shape.AsSpan().SequenceEqual(actual[e.Name]))
            .Select(e => $"'{e.Name}' should be {SafeTensorInfo.FormatShape(e.Shape)} per config.json but is {SafeTensorInfo.FormatShape(actual[e.Name])}")
            .ToList();
        if (mismatches.Count > 0)
            throw new ErtasException(ErrorCode.CheckpointShapeMismatch,
                $"{mismatches.Count} tensor(s) have the wrong shape: {string.Join("; ", mismatches.Take(ListedNames))}" +
                (mismatches.Count > ListedNames ? $"; and {mismatches.Count - ListedNames} more" : ""), location);
    }

    private static string List(IReadOnlyList<string> names) =>
        string.Join(", ", names.Take(ListedNames).Select(n => $"'{n}'")) +
        (names.Count > ListedNames ? $", and {names.Count - ListedNames} more" : "");
}

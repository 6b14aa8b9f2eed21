using Ertas.Core;
using Ertas.Mistral.Templates;

namespace Ertas.Data;

/// <summary>
/// Every setting that shapes the prepared data. All of them are part of the cache key, so changing any one
/// prepares again. Defaults are the documented ones (README, "Datasets").
/// </summary>
public sealed record PreparationOptions
{
    /// <summary>Format of every file; <see cref="DatasetFormat.Auto"/> detects it per file.</summary>
    public DatasetFormat Format { get; init; } = DatasetFormat.Auto;

    /// <summary>Chat template that turns conversations into ids (see <see cref="ChatTemplates.Names"/>).</summary>
    public string TemplateName { get; init; } = ChatTemplates.AutoName;

    /// <summary>Length of each packed row in tokens; also the longest example that fits.</summary>
    public int SequenceLength { get; init; } = 2048;

    public LengthPolicy LengthPolicy { get; init; } = LengthPolicy.Error;

    public DuplicatePolicy DuplicatePolicy { get; init; } = DuplicatePolicy.Warn;

    /// <summary>Train on every token (prompts and template markup too), not just assistant answers and their EOS.</summary>
    public bool TrainOnPrompt { get; init; }

    public PackingMode Packing { get; init; } = PackingMode.FirstFit;

    /// <summary>Shuffle the training examples before packing (seeded). The split is seeded either way.</summary>
    public bool Shuffle { get; init; } = true;

    public ulong Seed { get; init; } = 42;

    /// <summary>Fraction of examples held out for evaluation, in [0, 1); rounded down, at least one when above zero.</summary>
    public double EvalFraction { get; init; }

    /// <summary>Number of examples held out for evaluation; use this or <see cref="EvalFraction"/>, not both.</summary>
    public int EvalCount { get; init; }

    /// <summary>Throws ERTAS6021 naming the setting when a value cannot work.</summary>
    public void Validate()
    {
        if (SequenceLength < 2)
            throw Invalid($"SequenceLength must be at least 2, not {SequenceLength}");
        if (double.IsNaN(EvalFraction) || EvalFraction < 0 || EvalFraction >= 1)
            throw Invalid($"EvalFraction must be in [0, 1), not {EvalFraction}");
        if (EvalCount < 0)
            throw Invalid($"EvalCount must not be negative, not {EvalCount}");
        if (EvalCount > 0 && EvalFraction > 0)
            throw Invalid("set EvalFraction or EvalCount, not both");
        if (!Enum.IsDefined(Format) || !Enum.IsDefined(LengthPolicy) || !Enum.IsDefined(DuplicatePolicy) || !Enum.IsDefined(Packing))
            throw Invalid("an enum setting holds an undefined value");
        ChatTemplates.Get(TemplateName);
    }

    /// <summary>The held-out count for <paramref name="exampleCount"/> examples.</summary>
    public int EvalExampleCount(int exampleCount)
    {
        if (EvalCount > 0)
            return EvalCount;
        if (EvalFraction <= 0)
            return 0;
        return Math.Max(1, (int)Math.Floor(exampleCount * EvalFraction));
    }

    /// <summary>A canonical text of every setting, for the cache key (invariant culture, fixed order).</summary>
    internal string CanonicalText() => string.Join('\n',
        $"format={Format}", $"template={TemplateName}", $"sequence_len={SequenceLength}", $"length_policy={LengthPolicy}",
        $"duplicate_policy={DuplicatePolicy}", $"train_on_prompt={TrainOnPrompt}", $"packing={Packing}", $"shuffle={Shuffle}",
        $"seed={Seed}", $"eval_fraction={EvalFraction.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}",
        $"eval_count={EvalCount}");

    private static ErtasException Invalid(string message) => new(ErrorCode.DatasetInvalidOption, message);
}

using System.Text.Json.Nodes;
using Ertas.Mistral.Templates;

namespace Ertas.Eval;

/// <summary>
/// One check on a generated answer, as written in a suite: <c>{"type":"contains","value":"Paris","weight":1}</c>.
/// <see cref="Threshold"/> means what the type says (token_f1: the least F1; levenshtein: the most edits).
/// </summary>
public sealed record EvalAssert(string Type, JsonNode? Value, double Weight = 1.0, double? Threshold = null, bool IgnoreCase = false)
{
    /// <summary>1-based character column of the assert in its suite line, for diagnostics (0: unknown).</summary>
    public int Column { get; init; }
}

/// <summary>
/// One evaluation case from a suite file. Exactly one of <see cref="Messages"/> (chat, through the template) and
/// <see cref="Prompt"/> (raw completion) is set. A case with <see cref="Choices"/> is multiple choice, scored by
/// log-likelihood; any other case generates greedily and is scored by its asserts.
/// </summary>
public sealed record EvalCase
{
    public required string Id { get; init; }
    /// <summary>The suite file as the user named it (relative to the project), and the case's 1-based line.</summary>
    public required string File { get; init; }
    public required int Line { get; init; }
    public IReadOnlyList<ChatMessage>? Messages { get; init; }
    /// <summary>Functions offered to the model (OpenAI's <c>tools</c>), put in the prompt by the template as training
    /// puts them; empty for a plain chat.</summary>
    public IReadOnlyList<ChatTool> Tools { get; init; } = [];
    /// <summary>1-based character column of <c>tools</c> in the line (0: none), where a template without tool tokens
    /// is reported.</summary>
    public int ToolsColumn { get; init; }
    public string? Prompt { get; init; }
    public string? Ideal { get; init; }
    public IReadOnlyList<EvalAssert> Asserts { get; init; } = [];
    public IReadOnlyList<string> Tags { get; init; } = [];
    /// <summary>Tokens to generate at most; null takes the run's default (EvalMaxTokens).</summary>
    public int? MaxTokens { get; init; }
    public IReadOnlyList<string>? Choices { get; init; }
    public int? Answer { get; init; }
    /// <summary>The weighted mean score at or above which the case passes.</summary>
    public double Threshold { get; init; } = 1.0;
    /// <summary>SHA-256 of the case's canonical JSON (not its line or file): an edited case is a new case.</summary>
    public required string Hash { get; init; }

    public bool IsMultipleChoice => Choices is not null;
    public bool IsCritical => Tags.Contains(EvalTags.Critical, StringComparer.Ordinal);
}

public static class EvalTags
{
    /// <summary>A case tagged critical may never regress, whatever EvalMaxNewFailures allows.</summary>
    public const string Critical = "critical";
}

/// <summary>What one assert made of one output. <see cref="Score"/> is 1 when it passes, else its partial credit
/// in [0, 1); <see cref="Metric"/> is the measured value where the type has one (F1, edit distance).</summary>
public sealed record AssertResult(string Type, bool Pass, double Score, double? Metric = null, string? Detail = null);

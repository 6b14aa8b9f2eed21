using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Ertas.Eval;

/// <summary>
/// Text similarity measures for the local asserts: the openai/evals answer normalization and token F1, and the
/// Levenshtein edit distance. Written for clarity, not speed; outputs are a few hundred tokens at most.
/// </summary>
public static partial class TextMetrics
{
    /// <summary>
    /// The openai/evals normalization: lowercase (invariant), drop punctuation characters (<see cref="char.IsPunctuation(char)"/>),
    /// drop the articles "a", "an" and "the" as whole words, then collapse runs of whitespace to one space and trim.
    /// </summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var lower = text.ToLowerInvariant();

        var withoutPunctuation = new StringBuilder(lower.Length);
        foreach (var c in lower)
            if (!char.IsPunctuation(c))
                withoutPunctuation.Append(c);

        var withoutArticles = Articles().Replace(withoutPunctuation.ToString(), " ");
        return string.Join(' ', Tokens(withoutArticles));
    }

    /// <summary>
    /// Token F1 as in openai/evals: both sides are <see cref="Normalize"/>d and split on whitespace; precision and
    /// recall count the tokens the two share as multisets; F1 = 2PR / (P + R). 0 when nothing is shared or exactly
    /// one side is empty; 1 when both are empty.
    /// </summary>
    public static double TokenF1(string prediction, string reference)
    {
        var predicted = Tokens(Normalize(prediction));
        var expected = Tokens(Normalize(reference));
        if (predicted.Length == 0 && expected.Length == 0)
            return 1.0;
        if (predicted.Length == 0 || expected.Length == 0)
            return 0.0;

        var remaining = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var token in expected)
            remaining[token] = remaining.GetValueOrDefault(token) + 1;

        var shared = 0;
        foreach (var token in predicted)
        {
            if (remaining.GetValueOrDefault(token) > 0)
            {
                remaining[token]--;
                shared++;
            }
        }

        if (shared == 0)
            return 0.0;
        var precision = (double)shared / predicted.Length;
        var recall = (double)shared / expected.Length;
        return 2 * precision * recall / (precision + recall);
    }

    /// <summary>
    /// The Levenshtein distance (insertions, deletions and substitutions, each costing 1) between
    /// <paramref name="a"/> and <paramref name="b"/>, counted in user-perceived characters (text elements / grapheme
    /// clusters), so an emoji or a letter with combining marks is one character. Compared ordinally; no normalization.
    /// </summary>
    public static int Levenshtein(string a, string b)
    {
        var left = TextElements(a);
        var right = TextElements(b);

        // Two rows of the classic dynamic-programming table: previous[j] is the distance between the first i - 1
        // elements of left and the first j elements of right.
        var previous = new int[right.Length + 1];
        var current = new int[right.Length + 1];
        for (var j = 0; j <= right.Length; j++)
            previous[j] = j;

        for (var i = 1; i <= left.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= right.Length; j++)
            {
                var substitution = previous[j - 1] + (string.Equals(left[i - 1], right[j - 1], StringComparison.Ordinal) ? 0 : 1);
                var deletion = previous[j] + 1;
                var insertion = current[j - 1] + 1;
                current[j] = Math.Min(substitution, Math.Min(deletion, insertion));
            }
            (previous, current) = (current, previous);
        }
        return previous[right.Length];
    }

    /// <summary>The number of text elements (grapheme clusters) in <paramref name="text"/>, the unit of <see cref="Levenshtein"/>.</summary>
    internal static int TextLength(string text) => TextElements(text).Length;

    private static string[] TextElements(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var elements = new List<string>(text.Length);
        var enumerator = StringInfo.GetTextElementEnumerator(text);
        while (enumerator.MoveNext())
            elements.Add(enumerator.GetTextElement());
        return [.. elements];
    }

    private static string[] Tokens(string text) => text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    [GeneratedRegex(@"\b(?:a|an|the)\b", RegexOptions.CultureInvariant)]
    private static partial Regex Articles();
}

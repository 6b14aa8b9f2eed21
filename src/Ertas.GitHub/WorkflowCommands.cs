using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Ertas.GitHub;

/// <summary>A build diagnostic as an annotation: a file path relative to the workspace, so GitHub places it on the diff.</summary>
public sealed record Annotation(string Severity, string Message, string? File = null, int Line = 0, int Column = 0, string? Title = null);

/// <summary>
/// GitHub Actions' workflow commands (<c>::error file=..::</c>) and environment files (<c>GITHUB_OUTPUT</c>,
/// <c>GITHUB_STEP_SUMMARY</c>), with the escaping the runner expects.
/// </summary>
public static class WorkflowCommands
{
    /// <summary>GitHub shows at most this many annotations of one severity per step; the rest are lost from the UI.</summary>
    public const int AnnotationsPerStep = 10;

    /// <summary>A step summary larger than this is refused by the runner (and the summary upload fails).</summary>
    public const int MaxSummaryBytes = 1024 * 1024;

    /// <summary>
    /// The annotation lines for <paramref name="annotations"/>: per severity, the first nine as they are and, past GitHub's
    /// ten, a tenth that counts the rest and points at the log group listing them all (where nothing is lost).
    /// </summary>
    public static IReadOnlyList<string> Annotate(IReadOnlyList<Annotation> annotations)
    {
        var lines = new List<string>();
        foreach (var group in annotations.GroupBy(a => a.Severity))
        {
            var all = group.ToList();
            if (all.Count <= AnnotationsPerStep)
            {
                lines.AddRange(all.Select(Line));
                continue;
            }

            var shown = all.Take(AnnotationsPerStep - 1).ToList();
            lines.AddRange(shown.Select(Line));
            var rest = all.Count - shown.Count;
            var word = group.Key == "error" ? "errors" : group.Key + "s";
            lines.Add(Line(new Annotation(group.Key,
                string.Create(CultureInfo.InvariantCulture, $"{rest} more build {word} (GitHub shows {AnnotationsPerStep} per step): see the log group 'All {all.Count} build {word}'."),
                Title: string.Create(CultureInfo.InvariantCulture, $"{rest} more {word}"))));
            lines.Add($"::group::All {all.Count} build {word}");
            lines.AddRange(all.Select(a => Location(a) + a.Message));
            lines.Add("::endgroup::");
        }
        return lines;
    }

    /// <summary>One <c>::error file=F,line=L,col=C,title=T::message</c> line.</summary>
    public static string Line(Annotation a)
    {
        var properties = new List<string>();
        if (a.File is not null)
            properties.Add("file=" + EscapeProperty(a.File));
        if (a.Line > 0)
            properties.Add("line=" + a.Line.ToString(CultureInfo.InvariantCulture));
        if (a.Column > 0)
            properties.Add("col=" + a.Column.ToString(CultureInfo.InvariantCulture));
        if (a.Title is not null)
            properties.Add("title=" + EscapeProperty(a.Title));
        return $"::{a.Severity}{(properties.Count > 0 ? " " + string.Join(',', properties) : "")}::{EscapeData(a.Message)}";
    }

    /// <summary>The runner's escaping for a command's message: '%', CR and LF.</summary>
    public static string EscapeData(string value) =>
        value.Replace("%", "%25", StringComparison.Ordinal).Replace("\r", "%0D", StringComparison.Ordinal).Replace("\n", "%0A", StringComparison.Ordinal);

    /// <summary>A property value also escapes the separators ':' and ','.</summary>
    public static string EscapeProperty(string value) =>
        EscapeData(value).Replace(":", "%3A", StringComparison.Ordinal).Replace(",", "%2C", StringComparison.Ordinal);

    /// <summary>
    /// Appends outputs to the GITHUB_OUTPUT file; multi-line values use the heredoc form with a random delimiter that
    /// the value cannot contain, so an output can never inject another.
    /// </summary>
    public static void WriteOutputs(string outputFile, IEnumerable<KeyValuePair<string, string>> outputs)
    {
        var sb = new StringBuilder();
        foreach (var (name, value) in outputs)
        {
            if (name.Length == 0 || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_')))
                throw new ArgumentException($"'{name}' is not an output name", nameof(outputs));
            if (!value.Contains('\n') && !value.Contains('\r'))
            {
                sb.Append(name).Append('=').Append(value).Append('\n');
                continue;
            }
            string delimiter;
            do
            {
                delimiter = "ertas_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
            } while (value.Contains(delimiter, StringComparison.Ordinal));
            sb.Append(name).Append("<<").Append(delimiter).Append('\n').Append(value.ReplaceLineEndings("\n")).Append('\n').Append(delimiter).Append('\n');
        }
        File.AppendAllText(outputFile, sb.ToString(), new UTF8Encoding(false));
    }

    /// <summary>
    /// Appends Markdown to the step summary, cut at a line so that the step's summary stays under GitHub's 1 MiB;
    /// returns whether it was cut.
    /// </summary>
    public static bool AppendSummary(string summaryFile, string markdown)
    {
        var existing = File.Exists(summaryFile) ? new FileInfo(summaryFile).Length : 0;
        var budget = MaxSummaryBytes - existing - 1024; // room for the note
        var bytes = Encoding.UTF8.GetBytes(markdown);
        var cut = bytes.Length > budget;
        if (cut)
        {
            // Whole lines only: a '\n' byte never sits inside a UTF-8 sequence, and a table row stays whole.
            var newline = budget > 0 ? Array.LastIndexOf(bytes, (byte)'\n', (int)budget - 1) : -1;
            markdown = (newline > 0 ? Encoding.UTF8.GetString(bytes, 0, newline) : "") + string.Create(CultureInfo.InvariantCulture,
                $"\n\n> The report was cut to fit GitHub's {MaxSummaryBytes / 1024} KiB step summary; the full report.md is in the run's artifact.\n");
        }
        File.AppendAllText(summaryFile, markdown.EndsWith('\n') ? markdown : markdown + "\n", new UTF8Encoding(false));
        return cut;
    }

    private static string Location(Annotation a) =>
        a.File is null ? "" : a.Line > 0 ? string.Create(CultureInfo.InvariantCulture, $"{a.File}({a.Line},{Math.Max(a.Column, 1)}): ") : a.File + ": ";
}

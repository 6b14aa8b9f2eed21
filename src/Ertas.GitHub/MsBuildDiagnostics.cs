using System.Globalization;
using System.Text.RegularExpressions;

namespace Ertas.GitHub;

/// <summary>
/// MSBuild's canonical error and warning lines (<c>origin(line,col): error CODE: text [project]</c>) read back from a
/// build log, so the action can turn them into annotations on the pull request's files.
/// </summary>
public static partial class MsBuildDiagnostics
{
    // origin, then (line), (line,col) or (line,col,endLine,endCol), a colon, an optional subcategory, the severity and
    // code, the text, and the " [project]" suffix the console logger appends.
    [GeneratedRegex(@"^\s*(?<origin>.+?)(?:\((?<line>\d+)(?:-\d+)?(?:,(?<col>\d+)(?:-\d+)?)?(?:,\d+,\d+)?\))?\s*:\s*(?:[^:]*?\s)?(?<severity>error|warning)\s+(?<code>[A-Za-z]+[0-9]+)\s*:\s*(?<text>.*?)(?:\s+\[(?<project>[^\[\]]+)\])?\s*$",
        RegexOptions.CultureInvariant)]
    private static partial Regex Canonical();

    /// <summary>
    /// Every distinct diagnostic in <paramref name="lines"/>, in order (the console logger prints each twice: as it
    /// happens and in the closing summary). File paths become relative to <paramref name="workspace"/> with '/'
    /// separators when they lie under it; relative origins are resolved against the project's folder first.
    /// </summary>
    public static IReadOnlyList<Annotation> Parse(IEnumerable<string> lines, string? workspace)
    {
        var seen = new HashSet<Annotation>();
        var result = new List<Annotation>();
        foreach (var line in lines)
        {
            if (TryParse(line, workspace) is { } annotation && seen.Add(annotation))
                result.Add(annotation);
        }
        return result;
    }

    public static Annotation? TryParse(string line, string? workspace)
    {
        var m = Canonical().Match(line);
        if (!m.Success)
            return null;
        var origin = m.Groups["origin"].Value.Trim();
        var project = m.Groups["project"].Success ? m.Groups["project"].Value : null;
        var lineNumber = m.Groups["line"].Success ? int.Parse(m.Groups["line"].Value, CultureInfo.InvariantCulture) : 0;
        var column = m.Groups["col"].Success ? int.Parse(m.Groups["col"].Value, CultureInfo.InvariantCulture) : 0;
        var code = m.Groups["code"].Value;
        // "MSBUILD", "CSC", "ertas", "EXEC": a tool, not a file; the project then is where to look.
        var isFile = lineNumber > 0 || origin.Contains('/') || origin.Contains('\\') || Path.HasExtension(origin);
        var file = isFile ? Relative(origin, project, workspace) : project is null ? null : Relative(project, null, workspace);
        return new Annotation(m.Groups["severity"].Value, $"{code}: {m.Groups["text"].Value}", file, lineNumber, column, code);
    }

    private static string Relative(string path, string? project, string? workspace)
    {
        var full = Path.IsPathRooted(path)
            ? path
            : Path.GetFullPath(path, project is not null && Path.GetDirectoryName(project) is { Length: > 0 } directory ? directory : workspace ?? Environment.CurrentDirectory);
        if (workspace is null)
            return full.Replace('\\', '/');
        var relative = Path.GetRelativePath(Path.GetFullPath(workspace), full);
        return (relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? full : relative).Replace('\\', '/');
    }
}

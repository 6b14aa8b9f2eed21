using System.Xml;
using System.Xml.Linq;

namespace Ertas.Build.Tasks;

/// <summary>
/// Where a property or item is written in a project file, so that a bad value is reported at its line. MSBuild gives
/// tasks values, not locations; reading the XML again with line info is cheap (one small file).
/// </summary>
public sealed class ProjectFileLines
{
    private readonly XDocument? _document;

    private ProjectFileLines(XDocument? document) => _document = document;

    public static ProjectFileLines Load(string projectFile)
    {
        try
        {
            return new ProjectFileLines(XDocument.Load(projectFile, LoadOptions.SetLineInfo));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or XmlException)
        {
            return new ProjectFileLines(null); // MSBuild already read it; a race here only loses the line number
        }
    }

    /// <summary>The line and column of the last <c>&lt;name&gt;</c> inside a PropertyGroup (the one that wins), or (0, 0).</summary>
    public (int Line, int Column) Property(string name) =>
        Position(Elements().LastOrDefault(e => e.Name.LocalName == name && e.Parent?.Name.LocalName == "PropertyGroup"));

    /// <summary>The first item element of type <paramref name="itemType"/> whose Include names <paramref name="value"/>
    /// (any case), else the first item of that type, else (0, 0).</summary>
    public (int Line, int Column) Item(string itemType, string? value)
    {
        var items = Elements().Where(e => e.Name.LocalName == itemType && e.Parent?.Name.LocalName == "ItemGroup").ToList();
        var match = value is null ? null : items.FirstOrDefault(e =>
            ((string?)e.Attribute("Include") ?? "").Split(';', StringSplitOptions.TrimEntries)
            .Any(part => string.Equals(part, value.Trim(), StringComparison.OrdinalIgnoreCase)));
        return Position(match ?? items.FirstOrDefault());
    }

    private IEnumerable<XElement> Elements() => _document?.Root?.Descendants() ?? [];

    private static (int, int) Position(XElement? element) =>
        element is IXmlLineInfo info && info.HasLineInfo() ? (info.LineNumber, Math.Max(1, info.LinePosition - 1)) : (0, 0); // the column of "<", as MSBuild reports elements
}

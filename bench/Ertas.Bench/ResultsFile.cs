using System.Text;

namespace Ertas.Bench;

/// <summary>Updates one scenario's section of bench/results.md, so a single scenario can be rerun without `all`.</summary>
public static class ResultsFile
{
    /// <summary>Replaces the section whose heading starts with <c>## NAME:</c> (up to the next <c>## </c>) by
    /// <paramref name="section"/>, or appends it.</summary>
    public static void Upsert(string path, string scenario, string section)
    {
        var text = File.Exists(path) ? File.ReadAllText(path) : "# Ertas.Build benchmarks\n";
        var heading = $"\n## {scenario}:";
        var start = text.IndexOf(heading, StringComparison.Ordinal);
        var body = "\n" + section.Trim('\n') + "\n";
        if (start < 0)
        {
            text = text.TrimEnd('\n') + "\n" + body;
        }
        else
        {
            var next = text.IndexOf("\n## ", start + heading.Length, StringComparison.Ordinal);
            text = text[..start].TrimEnd('\n') + "\n" + body + (next < 0 ? "" : text[next..]);
        }
        File.WriteAllText(path, text, new UTF8Encoding(false));
    }
}

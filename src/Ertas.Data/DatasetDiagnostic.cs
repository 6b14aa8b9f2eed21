using Ertas.Core;

namespace Ertas.Data;

public enum DiagnosticSeverity
{
    Warning,
    Error,
}

/// <summary>
/// One problem in a dataset file. <see cref="Line"/> is 1-based (0: the whole file), <see cref="Column"/> is the
/// 1-based character column in that line (0: the whole line).
/// </summary>
public sealed record DatasetDiagnostic(DiagnosticSeverity Severity, ErrorCode Code, string File, int Line, int Column, string Message)
{
    public string CodeText => $"ERTAS{(int)Code:D4}";

    /// <summary>MSBuild's canonical format: <c>path(line,col): error ERTAS6001: message</c>.</summary>
    public string ToDiagnostic()
    {
        var origin = Line > 0 ? $"{File}({Line},{Math.Max(Column, 1)})" : File;
        var severity = Severity == DiagnosticSeverity.Error ? "error" : "warning";
        return $"{origin}: {severity} {CodeText}: {Message}";
    }

    public override string ToString() => ToDiagnostic();
}

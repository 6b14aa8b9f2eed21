namespace Ertas.Core;

/// <summary>
/// A user-facing failure: bad input, not a bug. Rendered in MSBuild's canonical diagnostic format
/// (<c>path(line,col): error ERTAS1234: message</c>) so that build logs and IDEs can jump to the cause.
/// </summary>
public sealed class ErtasException : Exception
{
    public ErtasException(ErrorCode code, string message, string? file = null, int line = 0, int column = 0, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
        File = file;
        Line = line;
        Column = column;
    }

    public ErrorCode Code { get; }
    public string? File { get; }
    public int Line { get; }
    public int Column { get; }

    public string CodeText => $"ERTAS{(int)Code:D4}";

    /// <summary>One line in MSBuild's format; a line of 0 means "the whole file".</summary>
    public string ToDiagnostic()
    {
        var origin = File is null ? "ertas" : Line > 0 ? $"{File}({Line},{Math.Max(Column, 1)})" : File;
        return $"{origin}: error {CodeText}: {Message}";
    }

    public override string ToString() => ToDiagnostic();
}

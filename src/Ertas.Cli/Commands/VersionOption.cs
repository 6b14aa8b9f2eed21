using System.Text.RegularExpressions;
using Ertas.Core;

namespace Ertas.Cli.Commands;

/// <summary>The <c>--version</c> option of the verbs that write <c>general.version</c>: SemVer 2.0, checked before any work.</summary>
internal static partial class VersionOption
{
    public static OptionSpec Spec => new("--version", "general.version, a semantic version such as 1.2.0.", "SEMVER");

    public static string? Read(ParsedArgs args)
    {
        var version = args.Get("--version");
        if (version is not null && !SemVer().IsMatch(version))
            throw new ErtasException(ErrorCode.InvalidArgument, $"--version must be a semantic version (MAJOR.MINOR.PATCH[-pre][+build]), got '{version}'");
        return version;
    }

    // semver.org's grammar, without the leading "v".
    [GeneratedRegex(@"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")]
    private static partial Regex SemVer();
}

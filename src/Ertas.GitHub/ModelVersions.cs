using System.Globalization;
using Ertas.Core;
using NuGet.Versioning;

namespace Ertas.GitHub;

/// <summary>
/// The version rules of model releases (issue 12): pull-request builds get a prerelease version that can never be
/// mistaken for a release, tags name the model when a repository holds several, and a release must be newer than
/// every release before it, in SemVer order (rc.2 before rc.10).
/// </summary>
public static class ModelVersions
{
    /// <summary><c>X.Y.Z-pr.N.RUN</c> from the model's version: never released, ordered by run within a pull request.</summary>
    public static SemanticVersion PullRequest(SemanticVersion modelVersion, int pullRequest, long runNumber)
    {
        if (pullRequest <= 0)
            throw new ArgumentOutOfRangeException(nameof(pullRequest), pullRequest, "a pull request number is positive");
        if (runNumber <= 0)
            throw new ArgumentOutOfRangeException(nameof(runNumber), runNumber, "a run number is positive");
        return new SemanticVersion(modelVersion.Major, modelVersion.Minor, modelVersion.Patch,
            ["pr", pullRequest.ToString(CultureInfo.InvariantCulture), runNumber.ToString(CultureInfo.InvariantCulture)], metadata: null);
    }

    /// <summary><c>v1.2.0</c>, or <c>Name-v1.2.0</c> when the repository holds several models (each needs its own tags).</summary>
    public static string ReleaseTag(string modelName, SemanticVersion version, bool severalModels) =>
        (severalModels ? modelName + "-v" : "v") + version.ToNormalizedString();

    /// <summary>
    /// The version a release tag names for <paramref name="modelName"/>: <c>v1.2.0</c> or <c>Name-v1.2.0</c>; null for
    /// another model's tag (<c>Other-v1.0.0</c>) or a tag that is no version at all, so those never block a release.
    /// </summary>
    public static SemanticVersion? VersionOfTag(string tag, string modelName)
    {
        ArgumentNullException.ThrowIfNull(tag);
        ArgumentNullException.ThrowIfNull(modelName);
        var prefix = modelName + "-v";
        var text = tag.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) ? tag[prefix.Length..]
            : tag.StartsWith('v') ? tag[1..]
            : null;
        return text is not null && SemanticVersion.TryParse(text, out var version) ? version : null;
    }

    /// <summary>
    /// Refuses a release that is not newer than the newest one already published (ERTAS1001 with both versions), so a
    /// forgotten ModelVersion bump never shadows or reorders a release; build metadata does not count, as in SemVer.
    /// </summary>
    public static void EnsureNewer(SemanticVersion candidate, IEnumerable<SemanticVersion> published)
    {
        var newest = published.Max(VersionComparer.VersionRelease);
        if (newest is not null && VersionComparer.VersionRelease.Compare(candidate, newest) <= 0)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"ModelVersion {candidate.ToNormalizedString()} is not newer than the latest release {newest.ToNormalizedString()}; raise ModelVersion");
    }
}

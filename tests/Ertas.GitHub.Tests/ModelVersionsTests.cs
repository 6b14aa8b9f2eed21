using Ertas.Core;
using NuGet.Versioning;

namespace Ertas.GitHub.Tests;

public sealed class ModelVersionsTests
{
    [Theory]
    [InlineData("1.2.0", 17, 4, "1.2.0-pr.17.4")]
    [InlineData("1.2.0-rc.1+build.5", 3, 12, "1.2.0-pr.3.12")]
    public void PullRequestBuilds_GetAPrereleaseVersion_FromTheModelVersionsCore(string model, int pr, long run, string expected)
    {
        var version = ModelVersions.PullRequest(SemanticVersion.Parse(model), pr, run);
        Assert.Equal(expected, version.ToNormalizedString());
        Assert.True(version.IsPrerelease);
        // Runs order numerically within a pull request (9 before 10), as SemVer compares numeric labels.
        Assert.True(ModelVersions.PullRequest(SemanticVersion.Parse(model), pr, 9) < ModelVersions.PullRequest(SemanticVersion.Parse(model), pr, 10));
    }

    [Fact]
    public void ReleaseTags_NameTheModel_OnlyWhenTheRepositoryHoldsSeveral()
    {
        var version = SemanticVersion.Parse("1.2.0-rc.2");
        Assert.Equal("v1.2.0-rc.2", ModelVersions.ReleaseTag("Support", version, severalModels: false));
        Assert.Equal("Support-v1.2.0-rc.2", ModelVersions.ReleaseTag("Support", version, severalModels: true));
    }

    [Fact]
    public void AReleaseMustBeNewerThanEveryPublishedOne_InSemVerOrder()
    {
        var published = new[] { "1.0.0", "1.1.0-rc.2", "1.0.1" }.Select(SemanticVersion.Parse).ToList();
        ModelVersions.EnsureNewer(SemanticVersion.Parse("1.1.0-rc.10"), published); // rc.10 after rc.2
        ModelVersions.EnsureNewer(SemanticVersion.Parse("1.1.0"), published);
        ModelVersions.EnsureNewer(SemanticVersion.Parse("0.1.0"), []);
        var e = Assert.Throws<ErtasException>(() => ModelVersions.EnsureNewer(SemanticVersion.Parse("1.1.0-rc.2+rebuild"), published));
        Assert.Equal(ErrorCode.InvalidArgument, e.Code);
        Assert.Equal("ModelVersion 1.1.0-rc.2 is not newer than the latest release 1.1.0-rc.2; raise ModelVersion", e.Message);
        Assert.Throws<ErtasException>(() => ModelVersions.EnsureNewer(SemanticVersion.Parse("1.0.5"), published));
    }
}

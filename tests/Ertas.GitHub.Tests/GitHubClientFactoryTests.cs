using Ertas.Core;

namespace Ertas.GitHub.Tests;

public sealed class GitHubClientFactoryTests
{
    [Theory]
    [InlineData("https://api.github.com", "https://api.github.com/")]
    [InlineData("https://ghes.example/api/v3", "https://ghes.example/api/v3/")]
    [InlineData("https://ghes.example/api/v3/", "https://ghes.example/api/v3/")]
    public void The_api_address_is_kept_as_given_with_one_trailing_slash(string apiUrl, string expected)
    {
        var client = GitHubClientFactory.Create(apiUrl, "t0ken");

        Assert.Equal(expected, client.Connection.BaseAddress.AbsoluteUri);
    }

    [Theory]
    [InlineData("api.github.com")]
    [InlineData("ftp://ghes.example/api/v3")]
    [InlineData("https://user:secret@ghes.example/api/v3")]
    public void An_address_that_is_not_plain_http_is_refused_without_echoing_credentials(string apiUrl)
    {
        var ex = Assert.Throws<ErtasException>(() => GitHubClientFactory.Create(apiUrl, "t0ken"));

        Assert.Equal(ErrorCode.InvalidArgument, ex.Code);
        Assert.DoesNotContain("secret", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_empty_token_is_refused_naming_GITHUB_TOKEN()
    {
        var ex = Assert.Throws<ErtasException>(() => GitHubClientFactory.Create("https://api.github.com", " "));

        Assert.Equal(ErrorCode.MissingArgument, ex.Code);
        Assert.Contains("GITHUB_TOKEN", ex.Message, StringComparison.Ordinal);
    }
}

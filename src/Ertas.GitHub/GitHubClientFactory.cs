using Ertas.Core;
using Octokit;
using Octokit.Internal;

namespace Ertas.GitHub;

/// <summary>Octokit clients for github.com and GitHub Enterprise Server, pointed at the API address the runner gives.</summary>
public static class GitHubClientFactory
{
    /// <summary>
    /// A client for <paramref name="apiUrl"/> used exactly as given: <c>GITHUB_API_URL</c> is
    /// <c>https://api.github.com</c> on github.com and already ends in <c>/api/v3</c> on GHES.
    /// </summary>
    /// <remarks>
    /// Built on <see cref="Connection"/> rather than <c>new GitHubClient(header, uri)</c>: that constructor appends
    /// <c>api/v3</c> to any host that is not github.com, which would double the suffix GITHUB_API_URL already carries.
    /// The trailing slash matters: Octokit resolves relative paths against the base, and without it the last segment
    /// (<c>v3</c>) would be dropped.
    /// </remarks>
    public static IGitHubClient Create(string apiUrl, string token, string product = "ertas")
    {
        ArgumentNullException.ThrowIfNull(apiUrl);
        ArgumentNullException.ThrowIfNull(token);
        ArgumentException.ThrowIfNullOrWhiteSpace(product);

        if (!Uri.TryCreate(apiUrl.Trim(), UriKind.Absolute, out var parsed)
            || (parsed.Scheme != Uri.UriSchemeHttps && parsed.Scheme != Uri.UriSchemeHttp))
        {
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"the GitHub API address '{apiUrl}' is not an absolute http(s) URL (expected GITHUB_API_URL, e.g. https://api.github.com or https://HOST/api/v3)");
        }

        // A URL with user:password@ would carry a secret into every message that quotes the address.
        if (!string.IsNullOrEmpty(parsed.UserInfo))
        {
            throw new ErtasException(ErrorCode.InvalidArgument,
                "the GitHub API address must not carry credentials; pass the token through GITHUB_TOKEN instead");
        }

        if (string.IsNullOrWhiteSpace(token))
        {
            throw new ErtasException(ErrorCode.MissingArgument,
                "no GitHub token: set GITHUB_TOKEN (in a workflow, `github-token: ${{ github.token }}`)");
        }

        var baseAddress = new Uri(parsed.AbsoluteUri.TrimEnd('/') + "/");
        var connection = new Connection(
            new ProductHeaderValue(product),
            baseAddress,
            new InMemoryCredentialStore(new Credentials(token.Trim())));
        return new GitHubClient(connection);
    }
}

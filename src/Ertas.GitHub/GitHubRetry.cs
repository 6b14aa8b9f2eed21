using System.Globalization;
using System.Net;
using Octokit;

namespace Ertas.GitHub;

/// <summary>
/// When and how long to wait before asking GitHub again, shared by the sticky comment and releases so both read
/// rate limits and Retry-After the same way. Octokit's exceptions are the one currency: the streamed upload's raw
/// HTTP failures are turned into the same types (<see cref="RawResponse"/>) before they reach here.
/// </summary>
internal static class GitHubRetry
{
    // Waiting longer than this inside a CI step (a primary rate limit can reset an hour away) costs more than
    // failing and letting the caller re-run the job later.
    internal static readonly TimeSpan MaxHonouredWait = TimeSpan.FromMinutes(2);
    internal static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(2);

    // GitHub's guidance for a secondary rate limit without Retry-After: wait at least a minute.
    private static readonly TimeSpan SecondaryRateLimitWait = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Runs <paramref name="attempt"/> (given the try number, from 1) until it succeeds, retrying 5xx answers, rate
    /// limits and dropped connections up to <paramref name="maxAttempts"/> tries; the last failure propagates as is.
    /// </summary>
    internal static async Task<T> RunAsync<T>(
        Func<int, Task<T>> attempt,
        int maxAttempts,
        Func<TimeSpan, CancellationToken, Task> delay,
        CancellationToken ct)
    {
        var wait = TimeSpan.Zero;
        for (var tried = 1; ; tried++)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                return await attempt(tried).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsTransient(ex, ct) && tried < maxAttempts && (wait = RetryWait(ex, tried)) <= MaxHonouredWait)
            {
                await delay(wait, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Rate limits arrive as ForbiddenExceptions too (a 403 with "rate limit" in the body): they are retried, and
    /// never read as a missing permission.
    /// </summary>
    internal static bool IsRateLimit(Exception ex) =>
        ex is RateLimitExceededException or SecondaryRateLimitExceededException or AbuseException
        || ex is ApiException { StatusCode: (HttpStatusCode)429 };

    /// <summary>A 403 that is a refusal of the token's rights, not a rate limit.</summary>
    internal static bool IsPermissionRefusal(Exception ex) => ex is ForbiddenException && !IsRateLimit(ex);

    internal static bool IsTransient(Exception ex, CancellationToken ct) => ex switch
    {
        _ when IsRateLimit(ex) => true,
        ApiException api => (int)api.StatusCode >= 500,
        // A connection reset or refused on the way, or a request timing out; not our own cancellation.
        HttpRequestException or IOException or TaskCanceledException => !ct.IsCancellationRequested,
        _ => false,
    };

    internal static TimeSpan RetryWait(Exception ex, int attempt)
    {
        if (ex is ApiException api && RetryAfter(api) is { } asked)
        {
            return asked;
        }

        return ex switch
        {
            // Octokit computes the wait from X-RateLimit-Reset.
            RateLimitExceededException primary => primary.GetRetryAfterTimeSpan(),
            SecondaryRateLimitExceededException or AbuseException => SecondaryRateLimitWait,
            _ => FirstBackoff * (1 << (attempt - 1)),
        };
    }

    /// <summary>GitHub's own words for a refusal, e.g. "Resource not accessible by integration", quoted; else empty.</summary>
    internal static string GitHubSays(ApiException ex) =>
        string.IsNullOrWhiteSpace(ex.ApiError?.Message) ? "" : $" \"{ex.ApiError.Message}\"";

    /// <remarks>
    /// Messages quote GitHub's answers, and a proxy or a misbehaving server can echo the request's headers back:
    /// the token is scrubbed before a message reaches a log.
    /// </remarks>
    internal static string Scrub(string message, string? token) =>
        string.IsNullOrEmpty(token) ? message : message.Replace(token, "***", StringComparison.Ordinal);

    /// <summary>The token Octokit sends, when the client was made with one.</summary>
    internal static string? TokenOf(IGitHubClient client) => client.Connection?.Credentials?.Password;

    /// <summary>The Retry-After header (seconds or an HTTP date), when GitHub sent one.</summary>
    private static TimeSpan? RetryAfter(ApiException ex)
    {
        var headers = ex.HttpResponse?.Headers;
        if (headers is null)
        {
            return null;
        }

        // Octokit copies the headers into an ordinal dictionary, so the name's case is whatever the server sent.
        var value = headers.FirstOrDefault(h => string.Equals(h.Key, "Retry-After", StringComparison.OrdinalIgnoreCase)).Value;
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }

        if (int.TryParse(value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds))
        {
            return TimeSpan.FromSeconds(seconds);
        }

        if (DateTimeOffset.TryParse(value.Trim(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
        {
            var wait = at - DateTimeOffset.UtcNow;
            return wait < TimeSpan.Zero ? TimeSpan.Zero : wait;
        }

        return null;
    }
}

/// <summary>
/// An answer our own HttpClient got (uploads, downloads), in Octokit's <see cref="IResponse"/> shape so that the
/// same exception types, and so the same retry and refusal rules, apply to it.
/// </summary>
internal sealed class RawResponse(HttpStatusCode status, string body, IReadOnlyDictionary<string, string> headers, string? contentType) : IResponse
{
    public object Body { get; } = body;
    public IReadOnlyDictionary<string, string> Headers { get; } = headers;

    // RateLimitExceededException reads the reset time from here, as Octokit parses it from X-RateLimit-*.
    public ApiInfo ApiInfo { get; } = new(
        new Dictionary<string, Uri>(), [], [], "",
        new RateLimit(headers.ToDictionary(h => h.Key, h => h.Value, StringComparer.OrdinalIgnoreCase)), TimeSpan.Zero);

    public HttpStatusCode StatusCode { get; } = status;
    public string ContentType { get; } = contentType ?? "application/json";

    /// <summary>The Octokit exception Octokit itself would throw for this answer.</summary>
    internal static async Task<ApiException> ToExceptionAsync(HttpResponseMessage response, CancellationToken ct)
    {
        var body = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
        var headers = response.Headers.Concat(response.Content.Headers)
            .GroupBy(h => h.Key, StringComparer.OrdinalIgnoreCase)
            .ToDictionary(g => g.Key, g => string.Join(",", g.SelectMany(h => h.Value)), StringComparer.OrdinalIgnoreCase);
        var raw = new RawResponse(response.StatusCode, body, headers, response.Content.Headers.ContentType?.MediaType);
        var status = (int)response.StatusCode;
        var limited = body.Contains("rate limit", StringComparison.OrdinalIgnoreCase);
        return status switch
        {
            401 => new AuthorizationException(raw),
            403 when body.Contains("secondary rate limit", StringComparison.OrdinalIgnoreCase) => new SecondaryRateLimitExceededException(raw),
            403 when limited => new RateLimitExceededException(raw),
            403 => new ForbiddenException(raw),
            404 => new NotFoundException(raw),
            422 => new ApiValidationException(raw),
            _ => new ApiException(raw),
        };
    }
}

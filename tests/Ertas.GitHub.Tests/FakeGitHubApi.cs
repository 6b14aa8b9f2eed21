using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using WireMock;
using WireMock.Matchers;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;
using WireMock.Types;
using WireMock.Util;

namespace Ertas.GitHub.Tests;

/// <summary>
/// Just enough of GitHub's API on loopback (GHES form, under /api/v3) to exercise Octokit for real: issue comments
/// here, releases and their assets in FakeGitHubApi.Releases.cs. Lists page and answer Link rel="next" as GitHub
/// does, writes keep their state in memory, and faults can be queued per method (and path).
/// </summary>
public sealed partial class FakeGitHubApi : IDisposable
{
    public const string Owner = "octo";
    public const string Repo = "models";
    public const int PullRequest = 7;
    public const string BotLogin = "github-actions[bot]";

    private static readonly DateTimeOffset Epoch = new(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private readonly WireMockServer _server;
    private readonly Lock _gate = new();
    private readonly List<Comment> _comments = [];
    private readonly List<Fault> _faults = [];
    private readonly List<string> _requests = [];
    private long _nextId = 1000;

    public FakeGitHubApi(string token)
    {
        Token = token;
        _server = WireMockServer.Start();
        // One catch-all mapping routed in the callback: WireMock's per-mapping matchers cannot keep state between
        // calls, and a single router answers 404 for anything Octokit asks that the fake does not know.
        _server
            .Given(Request.Create().WithPath(new RegexMatcher(".*")).UsingAnyMethod())
            .RespondWith(Response.Create().WithCallback(Handle));
    }

    public string Token { get; }

    /// <summary>The GHES-style API address, as GITHUB_API_URL gives it there.</summary>
    public string ApiUrl => _server.Url + "/api/v3";

    public sealed record Comment(long Id, string Author, string Body, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);

    private sealed class Fault(string method, int status, string body, IReadOnlyDictionary<string, string> headers, int times)
    {
        public string Method { get; } = method;
        public int Status { get; } = status;
        public string Body { get; } = body;
        public IReadOnlyDictionary<string, string> Headers { get; } = headers;
        public int Remaining { get; set; } = times;

        /// <summary>Only requests whose path contains this; null for any.</summary>
        public string? PathContains { get; init; }

        /// <summary>Matching requests to let through before the fault begins.</summary>
        public int Skip { get; set; }

        /// <summary>A faulted upload leaves a half-created asset (state "starter"), as an upload cut off on GitHub does.</summary>
        public bool LeaveStarter { get; init; }
    }

    /// <summary>
    /// The login GET /user answers for the token (a personal access token); null answers 403 "Resource not accessible
    /// by integration", as GitHub does for GITHUB_TOKEN and GitHub App installation tokens. Comments the fake creates
    /// are written as this login, or as the Actions bot when null.
    /// </summary>
    public string? UserLogin { get; set; }

    public IReadOnlyList<Comment> Comments
    {
        get
        {
            lock (_gate)
            {
                return [.. _comments];
            }
        }
    }

    /// <summary>"METHOD /path?query" for every request, in order.</summary>
    public IReadOnlyList<string> Requests
    {
        get
        {
            lock (_gate)
            {
                return [.. _requests];
            }
        }
    }

    /// <summary>Adds a comment as if someone (or an earlier run) had posted it.</summary>
    public Comment Seed(string body, string author = "reviewer")
    {
        lock (_gate)
        {
            var id = _nextId++;
            var at = Epoch.AddMinutes(id - 1000);
            var comment = new Comment(id, author, body, at, at);
            _comments.Add(comment);
            return comment;
        }
    }

    /// <summary>The next <paramref name="times"/> requests with <paramref name="method"/> get this answer instead.</summary>
    public void Fail(string method, int status, string body, int times = 1, IReadOnlyDictionary<string, string>? headers = null)
    {
        lock (_gate)
        {
            _faults.Add(new Fault(method, status, body, headers ?? new Dictionary<string, string>(), times));
        }
    }

    /// <summary>
    /// Like <see cref="Fail"/>, for requests whose path contains <paramref name="pathContains"/> only, after letting
    /// <paramref name="skip"/> of them through; a faulted upload can leave a half-created asset behind.
    /// </summary>
    public void FailAt(string method, string pathContains, int status, string body, int skip = 0, int times = 1,
        bool leaveStarter = false, IReadOnlyDictionary<string, string>? headers = null)
    {
        lock (_gate)
        {
            _faults.Add(new Fault(method, status, body, headers ?? new Dictionary<string, string>(), times)
            {
                PathContains = pathContains,
                Skip = skip,
                LeaveStarter = leaveStarter,
            });
        }
    }

    public void Dispose() => _server.Stop();

    private ResponseMessage Handle(IRequestMessage request)
    {
        lock (_gate)
        {
            _requests.Add($"{request.Method} {request.Path}{QueryString(request)}");

            // Where an asset download is redirected: storage takes a signed URL, not the token.
            if (request.Path.StartsWith(StoragePrefix, StringComparison.Ordinal))
            {
                return Storage(request);
            }

            // Octokit 14 sends "Token <value>" (GitHub takes the scheme in any case); anything else is a 401. The
            // refusal echoes the header on purpose, a worse server than GitHub, so the tests prove the token is
            // scrubbed from what the server says rather than merely never sent back.
            var auth = request.Headers!.TryGetValue("Authorization", out var values) ? values.Single() : "";
            var parts = auth.Split(' ', 2);
            if (parts.Length != 2 || !parts[0].Equals("token", StringComparison.OrdinalIgnoreCase) || parts[1] != Token)
            {
                return Json(401, new { message = $"Bad credentials ({auth})", documentation_url = "https://docs.github.com/rest" });
            }

            var fault = _faults.FirstOrDefault(f => f.Remaining > 0 && f.Method == request.Method
                && (f.PathContains is null || request.Path.Contains(f.PathContains, StringComparison.Ordinal)));
            if (fault is { Skip: > 0 })
            {
                fault.Skip--;
                fault = null;
            }

            if (fault is not null)
            {
                fault.Remaining--;
                if (fault.LeaveStarter)
                {
                    LeaveStarterAsset(request);
                }

                var faulted = Text(fault.Status, fault.Body);
                foreach (var (name, value) in fault.Headers)
                {
                    faulted.AddHeader(name, value);
                }

                return faulted;
            }

            var list = ListPath().Match(request.Path);
            if (list.Success && list.Groups["owner"].Value == Owner && list.Groups["repo"].Value == Repo
                && list.Groups["number"].Value == PullRequest.ToString(CultureInfo.InvariantCulture))
            {
                return request.Method switch
                {
                    "GET" => ListPage(request),
                    "POST" => Create(request),
                    _ => Json(405, new { message = "Method not allowed" }),
                };
            }

            var one = CommentPath().Match(request.Path);
            if (one.Success && request.Method == "PATCH")
            {
                return Update(long.Parse(one.Groups["id"].Value, CultureInfo.InvariantCulture), request);
            }

            if (request.Path == "/api/v3/user" && request.Method == "GET")
            {
                return UserLogin is null
                    ? Json(403, new { message = "Resource not accessible by integration", documentation_url = "https://docs.github.com/rest/users/users#get-the-authenticated-user" })
                    : Json(200, UserJson(UserLogin));
            }

            if (HandleReleases(request) is { } answered)
            {
                return answered;
            }

            return Json(404, new { message = "Not Found", documentation_url = "https://docs.github.com/rest" });
        }
    }

    private ResponseMessage ListPage(IRequestMessage request) =>
        Page(request, _comments.OrderBy(c => c.Id).ToList(), $"{ApiUrl}/repos/{Owner}/{Repo}/issues/{PullRequest}/comments", ToJson);

    /// <summary>One page of <paramref name="ordered"/>, with GitHub's defaults and cap (30 a page, at most 100) and Link.</summary>
    private static ResponseMessage Page<T>(IRequestMessage request, IReadOnlyList<T> ordered, string listUrl, Func<T, object> toJson)
    {
        var perPage = Math.Clamp(QueryInt(request, "per_page") ?? 30, 1, 100);
        var page = Math.Max(QueryInt(request, "page") ?? 1, 1);
        var slice = ordered.Skip((page - 1) * perPage).Take(perPage).Select(toJson).ToList();
        var response = Json(200, slice);

        var last = Math.Max(1, (ordered.Count + perPage - 1) / perPage);
        if (page < last)
        {
            // As GitHub does: the request's own query (Octokit adds sort and direction) with the page replaced.
            var others = request.Query!.Where(q => q.Key != "page").Select(q => $"{q.Key}={q.Value.FirstOrDefault()}");
            var pageUrl = $"{listUrl}?{string.Join("&", others)}&page=";
            response.AddHeader("Link", $"<{pageUrl}{page + 1}>; rel=\"next\", <{pageUrl}{last}>; rel=\"last\"");
        }

        return response;
    }

    private ResponseMessage Create(IRequestMessage request)
    {
        var body = ReadBody(request);
        if (body.Length > 65_536)
        {
            return Json(422, new { message = "Validation Failed", errors = new[] { new { resource = "IssueComment", code = "custom", field = "body", message = "body is too long (maximum is 65536 characters)" } } });
        }

        var id = _nextId++;
        var at = Epoch.AddMinutes(id - 1000);
        var comment = new Comment(id, UserLogin ?? BotLogin, body, at, at);
        _comments.Add(comment);
        return Json(201, ToJson(comment));
    }

    private ResponseMessage Update(long id, IRequestMessage request)
    {
        var index = _comments.FindIndex(c => c.Id == id);
        if (index < 0)
        {
            return Json(404, new { message = "Not Found" });
        }

        var body = ReadBody(request);
        if (body.Length > 65_536)
        {
            return Json(422, new { message = "Validation Failed" });
        }

        var updated = _comments[index] with { Body = body, UpdatedAt = _comments[index].UpdatedAt.AddSeconds(1) };
        _comments[index] = updated;
        return Json(200, ToJson(updated));
    }

    private static string ReadBody(IRequestMessage request)
    {
        // WireMock parses a JSON request body, but keeps the text beside it.
        var text = request.Body ?? request.BodyData?.BodyAsString ?? "{}";
        using var doc = JsonDocument.Parse(text);
        return doc.RootElement.GetProperty("body").GetString() ?? "";
    }

    private object ToJson(Comment c) => new Dictionary<string, object?>
    {
        ["id"] = c.Id,
        ["node_id"] = "IC_" + c.Id.ToString(CultureInfo.InvariantCulture),
        ["url"] = $"{ApiUrl}/repos/{Owner}/{Repo}/issues/comments/{c.Id}",
        ["html_url"] = $"https://github.example/{Owner}/{Repo}/pull/{PullRequest}#issuecomment-{c.Id}",
        ["issue_url"] = $"{ApiUrl}/repos/{Owner}/{Repo}/issues/{PullRequest}",
        ["body"] = c.Body,
        ["user"] = UserJson(c.Author),
        // GitHub's form; Octokit parses these into DateTimeOffset and fails on anything it cannot read.
        ["created_at"] = c.CreatedAt.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
        ["updated_at"] = c.UpdatedAt.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
        ["author_association"] = c.Author == BotLogin ? "NONE" : "MEMBER",
    };

    /// <summary>An account as GitHub shows it: bots (logins ending in [bot]) have type Bot.</summary>
    private static Dictionary<string, object?> UserJson(string login) => new()
    {
        ["login"] = login,
        ["id"] = login == BotLogin ? 41898282 : 583231,
        ["node_id"] = "U_1",
        ["type"] = login.EndsWith("[bot]", StringComparison.Ordinal) ? "Bot" : "User",
        ["site_admin"] = false,
    };

    private static ResponseMessage Json(int status, object payload)
    {
        var response = Text(status, JsonSerializer.Serialize(payload));
        return response;
    }

    private static ResponseMessage Text(int status, string body)
    {
        var response = new ResponseMessage
        {
            StatusCode = status,
            BodyData = new BodyData { BodyAsString = body, DetectedBodyType = BodyType.String },
        };
        response.AddHeader("Content-Type", "application/json; charset=utf-8");
        return response;
    }

    private static int? QueryInt(IRequestMessage request, string name) =>
        request.Query is not null && request.Query.TryGetValue(name, out var values)
            && int.TryParse(values.FirstOrDefault(), NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? value
            : null;

    private static string QueryString(IRequestMessage request) =>
        request.Query is null || request.Query.Count == 0
            ? ""
            : "?" + string.Join("&", request.Query.OrderBy(q => q.Key, StringComparer.Ordinal).Select(q => $"{q.Key}={q.Value.FirstOrDefault()}"));

    [GeneratedRegex(@"^/api/v3/repos/(?<owner>[^/]+)/(?<repo>[^/]+)/issues/(?<number>\d+)/comments$")]
    private static partial Regex ListPath();

    [GeneratedRegex(@"^/api/v3/repos/[^/]+/[^/]+/issues/comments/(?<id>\d+)$")]
    private static partial Regex CommentPath();
}

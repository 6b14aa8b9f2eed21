using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using WireMock;
using WireMock.ResponseBuilders;
using WireMock.Types;
using WireMock.Util;

namespace Ertas.GitHub.Tests;

/// <summary>
/// Releases and their assets as GitHub keeps them: drafts are listed but not found by tag, a second release with a
/// taken tag_name is refused with 422 already_exists, uploads go to a separate /api/uploads address (GHES form) on
/// the same server, and an asset download through the API answers 302 to a storage address, as GitHub's does to S3.
/// </summary>
public sealed partial class FakeGitHubApi
{
    private const string StoragePrefix = "/storage/";

    private readonly List<FakeRelease> _releases = [];
    private long _nextReleaseId = 5000;
    private long _nextAssetId = 90000;

    public sealed record AssetView(long Id, string Name, string State, byte[] Content);

    public sealed record ReleaseView(
        long Id, string TagName, string? Name, string? Body, bool Draft, bool Prerelease, string? TargetCommitish, IReadOnlyList<AssetView> Assets)
    {
        public AssetView? Asset(string name) => Assets.FirstOrDefault(a => a.Name == name);
    }

    /// <summary>Whether a storage download arrived with an Authorization header (it must not: the token stays with GitHub).</summary>
    public bool StorageSawAuthorization { get; private set; }

    public IReadOnlyList<ReleaseView> Releases
    {
        get
        {
            lock (_gate)
            {
                return [.. _releases.Select(View)];
            }
        }
    }

    /// <summary>Requests that change something (anything but GET), uploads included.</summary>
    public IReadOnlyList<string> Writes => [.. Requests.Where(r => !r.StartsWith("GET ", StringComparison.Ordinal))];

    /// <summary>Adds a release as if another run or a person had made it.</summary>
    public ReleaseView SeedRelease(string tag, bool draft = false, bool prerelease = false, IEnumerable<(string Name, byte[] Content)>? assets = null)
    {
        lock (_gate)
        {
            var release = new FakeRelease { Id = _nextReleaseId++, TagName = tag, Name = tag, Draft = draft, Prerelease = prerelease };
            foreach (var (name, content) in assets ?? [])
            {
                release.Assets.Add(new FakeAsset { Id = _nextAssetId++, Name = name, State = "uploaded", Content = content });
            }

            _releases.Add(release);
            return View(release);
        }
    }

    private sealed class FakeRelease
    {
        public long Id { get; init; }
        public string TagName { get; set; } = "";
        public string? Name { get; set; }
        public string? Body { get; set; }
        public bool Draft { get; set; }
        public bool Prerelease { get; set; }
        public string? TargetCommitish { get; set; }
        public List<FakeAsset> Assets { get; } = [];
    }

    private sealed class FakeAsset
    {
        public long Id { get; init; }
        public string Name { get; init; } = "";
        public string State { get; set; } = "uploaded";
        public byte[] Content { get; set; } = [];
    }

    private static ReleaseView View(FakeRelease r) =>
        new(r.Id, r.TagName, r.Name, r.Body, r.Draft, r.Prerelease, r.TargetCommitish, [.. r.Assets.Select(a => new AssetView(a.Id, a.Name, a.State, a.Content))]);

    /// <summary>The releases routes; null when the path is none of them.</summary>
    private ResponseMessage? HandleReleases(IRequestMessage request)
    {
        var upload = UploadPath().Match(request.Path);
        if (upload.Success && request.Method == "POST")
        {
            return Upload(Id(upload), request);
        }

        var m = ReleasesPath().Match(request.Path);
        if (!m.Success || m.Groups["owner"].Value != Owner || m.Groups["repo"].Value != Repo)
        {
            return null;
        }

        var rest = m.Groups["rest"].Value;
        var listUrl = $"{ApiUrl}/repos/{Owner}/{Repo}/releases";
        switch (request.Method, rest)
        {
            case ("GET", ""):
                // Newest first, drafts included (the token can push), as GitHub lists them.
                return Page(request, _releases.OrderByDescending(r => r.Id).ToList(), listUrl, ReleaseJson);
            case ("POST", ""):
                return CreateRelease(request);
        }

        if (rest.StartsWith("/tags/", StringComparison.Ordinal) && request.Method == "GET")
        {
            var tag = Uri.UnescapeDataString(rest["/tags/".Length..]);
            var published = _releases.FirstOrDefault(r => r.TagName == tag && !r.Draft);
            return published is null ? NotFound() : Json(200, ReleaseJson(published));
        }

        var asset = AssetPath().Match(rest);
        if (asset.Success)
        {
            var id = Id(asset);
            var owner = _releases.FirstOrDefault(r => r.Assets.Any(a => a.Id == id));
            var found = owner?.Assets.First(a => a.Id == id);
            if (found is null)
            {
                return NotFound();
            }

            switch (request.Method)
            {
                case "DELETE":
                    owner!.Assets.Remove(found);
                    return Text(204, "");
                case "GET" when Accepts(request, "application/octet-stream"):
                    var redirect = Text(302, "");
                    redirect.AddHeader("Location", $"{_server.Url}{StoragePrefix}{found.Id}/{found.Name}?signature=abc");
                    return redirect;
                case "GET":
                    return Json(200, AssetJson(found));
            }
        }

        var one = ReleasePath().Match(rest);
        if (one.Success)
        {
            var release = _releases.FirstOrDefault(r => r.Id == Id(one));
            if (release is null)
            {
                return NotFound();
            }

            return (request.Method, one.Groups["assets"].Success) switch
            {
                ("GET", true) => Page(request, release.Assets.OrderBy(a => a.Id).ToList(), $"{listUrl}/{release.Id}/assets", AssetJson),
                ("GET", false) => Json(200, ReleaseJson(release)),
                ("PATCH", false) => UpdateRelease(release, request),
                ("DELETE", false) => DeleteRelease(release),
                _ => Json(405, new { message = "Method not allowed" }),
            };
        }

        return NotFound();
    }

    private ResponseMessage CreateRelease(IRequestMessage request)
    {
        using var doc = JsonDocument.Parse(request.Body ?? request.BodyData?.BodyAsString ?? "{}");
        var root = doc.RootElement;
        var tag = root.GetProperty("tag_name").GetString() ?? "";
        if (_releases.Any(r => r.TagName == tag))
        {
            return Json(422, new
            {
                message = "Validation Failed",
                errors = new[] { new { resource = "Release", code = "already_exists", field = "tag_name" } },
                documentation_url = "https://docs.github.com/rest/releases/releases#create-a-release",
            });
        }

        var release = new FakeRelease
        {
            Id = _nextReleaseId++,
            TagName = tag,
            Name = OptionalString(root, "name"),
            Body = OptionalString(root, "body"),
            Draft = root.TryGetProperty("draft", out var draft) && draft.GetBoolean(),
            Prerelease = root.TryGetProperty("prerelease", out var pre) && pre.GetBoolean(),
            TargetCommitish = OptionalString(root, "target_commitish"),
        };
        _releases.Add(release);
        return Json(201, ReleaseJson(release));
    }

    private ResponseMessage UpdateRelease(FakeRelease release, IRequestMessage request)
    {
        using var doc = JsonDocument.Parse(request.Body ?? request.BodyData?.BodyAsString ?? "{}");
        foreach (var p in doc.RootElement.EnumerateObject().Where(p => p.Value.ValueKind != JsonValueKind.Null))
        {
            switch (p.Name)
            {
                case "name": release.Name = p.Value.GetString(); break;
                case "body": release.Body = p.Value.GetString(); break;
                case "draft": release.Draft = p.Value.GetBoolean(); break;
                case "prerelease": release.Prerelease = p.Value.GetBoolean(); break;
                case "target_commitish": release.TargetCommitish = p.Value.GetString(); break;
                case "tag_name": release.TagName = p.Value.GetString() ?? release.TagName; break;
            }
        }

        return Json(200, ReleaseJson(release));
    }

    private ResponseMessage DeleteRelease(FakeRelease release)
    {
        _releases.Remove(release);
        return Text(204, "");
    }

    private ResponseMessage Upload(long releaseId, IRequestMessage request)
    {
        var release = _releases.FirstOrDefault(r => r.Id == releaseId);
        var name = request.Query is not null && request.Query.TryGetValue("name", out var names) ? names.FirstOrDefault() ?? "" : "";
        if (release is null)
        {
            return NotFound();
        }

        if (release.Assets.Any(a => a.Name == name))
        {
            return Json(422, new { message = "Validation Failed", errors = new[] { new { resource = "ReleaseAsset", code = "already_exists", field = "name" } } });
        }

        var asset = new FakeAsset { Id = _nextAssetId++, Name = name, State = "uploaded", Content = request.BodyAsBytes ?? [] };
        release.Assets.Add(asset);
        return Json(201, AssetJson(asset));
    }

    /// <summary>What an upload cut off on GitHub's side leaves: an asset holding the name, in state "starter".</summary>
    private void LeaveStarterAsset(IRequestMessage request)
    {
        var upload = UploadPath().Match(request.Path);
        var release = upload.Success ? _releases.FirstOrDefault(r => r.Id == Id(upload)) : null;
        if (release is not null && request.Query is not null && request.Query.TryGetValue("name", out var names))
        {
            release.Assets.Add(new FakeAsset { Id = _nextAssetId++, Name = names.FirstOrDefault() ?? "", State = "starter" });
        }
    }

    private ResponseMessage Storage(IRequestMessage request)
    {
        StorageSawAuthorization |= request.Headers?.ContainsKey("Authorization") == true;
        var parts = request.Path[StoragePrefix.Length..].Split('/', 2);
        var id = long.Parse(parts[0], CultureInfo.InvariantCulture);
        var asset = _releases.SelectMany(r => r.Assets).FirstOrDefault(a => a.Id == id);
        if (asset is null)
        {
            return NotFound();
        }

        var response = new ResponseMessage
        {
            StatusCode = 200,
            BodyData = new BodyData { BodyAsBytes = asset.Content, DetectedBodyType = BodyType.Bytes },
        };
        response.AddHeader("Content-Type", "application/octet-stream");
        return response;
    }

    private Dictionary<string, object?> ReleaseJson(FakeRelease r) => new()
    {
        ["url"] = $"{ApiUrl}/repos/{Owner}/{Repo}/releases/{r.Id}",
        ["html_url"] = r.Draft
            ? $"https://github.example/{Owner}/{Repo}/releases/tag/untagged-{r.Id}"
            : $"https://github.example/{Owner}/{Repo}/releases/tag/{r.TagName}",
        ["assets_url"] = $"{ApiUrl}/repos/{Owner}/{Repo}/releases/{r.Id}/assets",
        ["upload_url"] = $"{_server.Url}/api/uploads/repos/{Owner}/{Repo}/releases/{r.Id}/assets{{?name,label}}",
        ["tarball_url"] = $"{ApiUrl}/repos/{Owner}/{Repo}/tarball/{r.TagName}",
        ["zipball_url"] = $"{ApiUrl}/repos/{Owner}/{Repo}/zipball/{r.TagName}",
        ["id"] = r.Id,
        ["node_id"] = "RE_" + r.Id.ToString(CultureInfo.InvariantCulture),
        ["tag_name"] = r.TagName,
        ["target_commitish"] = r.TargetCommitish ?? "main",
        ["name"] = r.Name,
        ["body"] = r.Body,
        ["draft"] = r.Draft,
        ["prerelease"] = r.Prerelease,
        ["created_at"] = Stamp(Epoch.AddMinutes(r.Id - 5000)),
        ["published_at"] = r.Draft ? null : Stamp(Epoch.AddMinutes(r.Id - 5000)),
        ["author"] = UserJson(BotLogin),
        ["assets"] = r.Assets.Select(AssetJson).ToList(),
    };

    private object AssetJson(FakeAsset a) => new Dictionary<string, object?>
    {
        ["url"] = $"{ApiUrl}/repos/{Owner}/{Repo}/releases/assets/{a.Id}",
        ["browser_download_url"] = $"https://github.example/{Owner}/{Repo}/releases/download/x/{a.Name}",
        ["id"] = a.Id,
        ["node_id"] = "RA_" + a.Id.ToString(CultureInfo.InvariantCulture),
        ["name"] = a.Name,
        ["label"] = "",
        ["state"] = a.State,
        ["content_type"] = "application/octet-stream",
        ["size"] = a.Content.Length,
        ["download_count"] = 0,
        ["created_at"] = Stamp(Epoch),
        ["updated_at"] = Stamp(Epoch),
        ["uploader"] = UserJson(BotLogin),
    };

    private static string Stamp(DateTimeOffset at) => at.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);

    private static ResponseMessage NotFound() => Json(404, new { message = "Not Found", documentation_url = "https://docs.github.com/rest" });

    private static bool Accepts(IRequestMessage request, string mediaType) =>
        request.Headers is not null && request.Headers.TryGetValue("Accept", out var accept)
        && accept.Any(v => v.Contains(mediaType, StringComparison.OrdinalIgnoreCase));

    private static string? OptionalString(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static long Id(Match m) => long.Parse(m.Groups["id"].Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^/api/v3/repos/(?<owner>[^/]+)/(?<repo>[^/]+)/releases(?<rest>.*)$")]
    private static partial Regex ReleasesPath();

    [GeneratedRegex(@"^/(?<id>\d+)(?<assets>/assets)?$")]
    private static partial Regex ReleasePath();

    [GeneratedRegex(@"^/assets/(?<id>\d+)$")]
    private static partial Regex AssetPath();

    [GeneratedRegex(@"^/api/uploads/repos/[^/]+/[^/]+/releases/(?<id>\d+)/assets$")]
    private static partial Regex UploadPath();
}

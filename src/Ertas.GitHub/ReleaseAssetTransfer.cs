using System.Net.Http.Headers;
using System.Text.Json;

namespace Ertas.GitHub;

/// <summary>What GitHub answered to an upload.</summary>
/// <param name="State">"uploaded" once GitHub has the whole file.</param>
public sealed record UploadedAsset(long Id, string Name, long Size, string State, string? BrowserDownloadUrl);

/// <summary>
/// Release asset bytes over our own HttpClient. Octokit's UploadAsset copies the body into memory first, which for a
/// 2 GB GGUF means 2 GB of RAM in a CI runner; here the file is streamed from disk with its length declared, so memory
/// stays at a buffer's worth whatever the size. Failures come back as Octokit's exception types (see
/// <see cref="RawResponse"/>), so the caller's retry and refusal rules are the ones it uses for every other call.
/// </summary>
public sealed class ReleaseAssetTransfer : IDisposable
{
    /// <summary>Downloads are for SHA256SUMS and the lock; anything larger is not one of ours.</summary>
    public const long MaxDownloadBytes = 16 << 20;

    private const int BufferBytes = 1 << 20;

    private readonly HttpClient _http;
    private readonly string _token;

    /// <param name="token">Sent as <c>Authorization: token ...</c>; never written to a message.</param>
    /// <param name="handler">
    /// Tests and benchmarks pass their own; the default follows redirects (asset downloads answer 302 to storage) and
    /// drops the Authorization header on the way, as HttpClient does for every redirect.
    /// </param>
    public ReleaseAssetTransfer(string token, HttpMessageHandler? handler = null, string product = "ertas")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(token);
        ArgumentException.ThrowIfNullOrWhiteSpace(product);
        _token = token.Trim();
        _http = new HttpClient(handler ?? new SocketsHttpHandler { AllowAutoRedirect = true }, disposeHandler: handler is null)
        {
            // A 2 GB upload on a slow runner link takes longer than any fixed timeout; the caller's token cancels.
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue(product, null));
    }

    /// <summary>
    /// The upload address for <paramref name="name"/>: the release's <c>upload_url</c> with its RFC 6570 template
    /// (<c>{?name,label}</c>) replaced by the query. On GHES it is https://HOST/api/uploads/repos/O/R/releases/ID/assets.
    /// </summary>
    public static Uri UploadUri(string uploadUrlTemplate, string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(uploadUrlTemplate);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var brace = uploadUrlTemplate.IndexOf('{', StringComparison.Ordinal);
        var bare = brace < 0 ? uploadUrlTemplate : uploadUrlTemplate[..brace];
        return new Uri(bare + (bare.Contains('?', StringComparison.Ordinal) ? "&" : "?") + "name=" + Uri.EscapeDataString(name));
    }

    /// <summary>Streams <paramref name="path"/> to the release as asset <paramref name="name"/>; one try, no retry.</summary>
    public async Task<UploadedAsset> UploadAsync(string uploadUrlTemplate, string name, string path, CancellationToken ct)
    {
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, BufferBytes,
            FileOptions.Asynchronous | FileOptions.SequentialScan);
        await using (file.ConfigureAwait(false))
        {
            using var content = new StreamContent(file, BufferBytes);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            content.Headers.ContentLength = file.Length;
            using var request = new HttpRequestMessage(HttpMethod.Post, UploadUri(uploadUrlTemplate, name)) { Content = content };
            Authorize(request, "application/vnd.github+json");
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw await RawResponse.ToExceptionAsync(response, ct).ConfigureAwait(false);
            }

            var json = await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            return new UploadedAsset(
                root.GetProperty("id").GetInt64(),
                root.GetProperty("name").GetString() ?? name,
                root.GetProperty("size").GetInt64(),
                root.TryGetProperty("state", out var state) ? state.GetString() ?? "" : "",
                root.TryGetProperty("browser_download_url", out var url) ? url.GetString() : null);
        }
    }

    /// <summary>
    /// An asset's bytes through the API (<c>GET /repos/O/R/releases/assets/ID</c> with Accept: application/octet-stream,
    /// which works for drafts and private repositories, unlike browser_download_url); one try, no retry.
    /// </summary>
    public async Task<byte[]> DownloadAsync(string assetApiUrl, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(assetApiUrl);
        using var request = new HttpRequestMessage(HttpMethod.Get, assetApiUrl);
        Authorize(request, "application/octet-stream");
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw await RawResponse.ToExceptionAsync(response, ct).ConfigureAwait(false);
        }

        if (response.Content.Headers.ContentLength > MaxDownloadBytes)
        {
            throw new InvalidDataException($"the asset at {assetApiUrl} is {response.Content.Headers.ContentLength} bytes, more than a checksum list or lock file");
        }

        await using var stream = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await stream.ReadAsync(chunk, ct).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > MaxDownloadBytes)
            {
                throw new InvalidDataException($"the asset at {assetApiUrl} is more than {MaxDownloadBytes} bytes, more than a checksum list or lock file");
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }

    public void Dispose() => _http.Dispose();

    private void Authorize(HttpRequestMessage request, string accept)
    {
        request.Headers.Authorization = new AuthenticationHeaderValue("token", _token);
        request.Headers.Accept.ParseAdd(accept);
        request.Headers.Add("X-GitHub-Api-Version", "2022-11-28");
    }
}

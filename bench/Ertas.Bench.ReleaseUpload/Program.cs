using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Ertas.GitHub;
using Octokit;

// Peak memory of a release asset upload (issue 12): a child process uploads a large sparse file to a loopback sink
// that reads and discards the body, and reports its own VmHWM. The streamed upload (ReleaseAssetTransfer, what
// `ertas github release` uses) is measured against a 1 MB upload of the same code (the runtime's floor) and, with
// --octokit, against Octokit's UploadAsset, which buffers the body in memory.
//
//   dotnet run -c Release --project bench/Ertas.Bench.ReleaseUpload -- [--bytes N] [--dir DIR] [--octokit]

return args.Length > 0 && args[0] == "child"
    ? await Child.RunAsync(args[1], args[2], args[3])
    : await Parent.RunAsync(args);

internal static class Parent
{
    public static async Task<int> RunAsync(string[] args)
    {
        var bytes = 1_900_000_000L;
        var dir = Path.GetTempPath();
        var octokit = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--bytes": bytes = long.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--dir": dir = args[++i]; break;
                case "--octokit": octokit = true; break;
                default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
            }
        }

        var big = Path.Combine(dir, $"ertas-upload-bench-{Environment.ProcessId}.bin");
        var small = Path.Combine(dir, $"ertas-upload-bench-{Environment.ProcessId}-small.bin");
        try
        {
            // Sparse: the bytes are zeros the file system never stores, so the benchmark needs no 1.9 GB of disk, and
            // reading them costs no disk time (the upload's memory, not the disk, is what is measured).
            using (var f = File.Create(big)) f.SetLength(bytes);
            using (var f = File.Create(small)) f.SetLength(1 << 20);

            using var sink = new Sink();
            Console.WriteLine($"# release asset upload, peak RSS of the uploading process ({Environment.ProcessorCount} cores, .NET {Environment.Version})");
            Console.WriteLine("| upload | bytes | wall s | MB/s | peak RSS (VmHWM) MB |");
            Console.WriteLine("|---|---:|---:|---:|---:|");
            var failed = false;
            failed |= !await MeasureAsync("streamed (ReleaseAssetTransfer), 1 MB: runtime floor", "streamed", sink, small);
            failed |= !await MeasureAsync("streamed (ReleaseAssetTransfer)", "streamed", sink, big);
            if (octokit)
            {
                failed |= !await MeasureAsync("Octokit UploadAsset (buffers the body)", "octokit", sink, big);
            }

            return failed ? 1 : 0;
        }
        finally
        {
            File.Delete(big);
            File.Delete(small);
        }
    }

    private static async Task<bool> MeasureAsync(string label, string mode, Sink sink, string file)
    {
        var self = Environment.ProcessPath!;
        var start = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // Under `dotnet Program.dll` the process is dotnet itself: hand it the assembly again.
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            start.ArgumentList.Add(typeof(Parent).Assembly.Location);
        }

        foreach (var arg in new[] { "child", mode, sink.UploadUrl, file })
        {
            start.ArgumentList.Add(arg);
        }

        var clock = Stopwatch.StartNew();
        using var child = Process.Start(start)!;
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEndAsync();
        await child.WaitForExitAsync();
        var wall = clock.Elapsed.TotalSeconds;
        var line = (await stdout).Trim();
        if (child.ExitCode != 0 || !line.StartsWith("ok ", StringComparison.Ordinal))
        {
            Console.WriteLine($"| {label} | failed (exit {child.ExitCode}) | | | |");
            Console.Error.WriteLine(await stderr);
            return false;
        }

        // "ok SIZE SECONDS HWM_KB"
        var parts = line.Split(' ');
        var size = long.Parse(parts[1], CultureInfo.InvariantCulture);
        var seconds = double.Parse(parts[2], CultureInfo.InvariantCulture);
        var hwmKb = long.Parse(parts[3], CultureInfo.InvariantCulture);
        if (size != new FileInfo(file).Length || sink.LastReceived != size)
        {
            Console.WriteLine($"| {label} | sink received {sink.LastReceived}, expected {new FileInfo(file).Length} | | | |");
            return false;
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {label} | {size:N0} | {wall:F1} | {size / 1e6 / seconds:F0} | {hwmKb / 1024.0:F0} |"));
        return true;
    }
}

internal static class Child
{
    public static async Task<int> RunAsync(string mode, string uploadUrl, string file)
    {
        var clock = Stopwatch.StartNew();
        long size;
        if (mode == "octokit")
        {
            var client = new GitHubClient(new Octokit.ProductHeaderValue("ertas-bench"), new Uri(uploadUrl.Split("/api/")[0] + "/api/v3/"))
            {
                Credentials = new Credentials("bench-token"),
            };
            await using var stream = File.OpenRead(file);
            var asset = await client.Repository.Release.UploadAsset(
                new Release(uploadUrl), new ReleaseAssetUpload("model.gguf", "application/octet-stream", stream, TimeSpan.FromMinutes(30)), CancellationToken.None);
            size = asset.Size;
        }
        else
        {
            using var transfer = new ReleaseAssetTransfer("bench-token");
            size = (await transfer.UploadAsync(uploadUrl, "model.gguf", file, CancellationToken.None)).Size;
        }

        var seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ok {size} {seconds:F3} {VmHwmKb()}"));
        return 0;
    }

    /// <summary>The kernel's high-water mark of this process's resident memory.</summary>
    private static long VmHwmKb()
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }
}

/// <summary>
/// An upload endpoint on loopback that reads each request body to the end and throws it away, then answers as
/// GitHub does (201 and the asset). Plain sockets, so the sink's own buffering never looks like the client's.
/// </summary>
internal sealed class Sink : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private long _lastReceived;

    public Sink()
    {
        _listener.Start();
        _ = Task.Run(AcceptAsync);
    }

    public string UploadUrl => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/api/uploads/repos/o/r/releases/1/assets{{?name,label}}";

    public long LastReceived => Interlocked.Read(ref _lastReceived);

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }

            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using var _ = client;
        var stream = client.GetStream();
        var buffer = new byte[1 << 20];
        var filled = 0;
        int headerEnd;
        while ((headerEnd = IndexOf(buffer, filled, "\r\n\r\n"u8)) < 0)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(filled));
            if (read == 0)
            {
                return;
            }

            filled += read;
        }

        var head = Encoding.ASCII.GetString(buffer, 0, headerEnd);
        var lines = head.Split("\r\n");
        var length = lines.Skip(1)
            .Where(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
            .Select(l => long.Parse(l["Content-Length:".Length..].Trim(), CultureInfo.InvariantCulture))
            .FirstOrDefault(-1);
        if (lines.Any(l => l.StartsWith("Expect: 100-continue", StringComparison.OrdinalIgnoreCase)))
        {
            await stream.WriteAsync("HTTP/1.1 100 Continue\r\n\r\n"u8.ToArray());
        }

        long received = filled - headerEnd - 4;
        while (length >= 0 && received < length)
        {
            var read = await stream.ReadAsync(buffer);
            if (read == 0)
            {
                break;
            }

            received += read;
        }

        Interlocked.Exchange(ref _lastReceived, received);
        var name = lines[0].Split(' ')[1].Split("name=").ElementAtOrDefault(1)?.Split('&')[0] ?? "asset";
        var status = length < 0 ? "411 Length Required" : "201 Created";
        var json = string.Create(CultureInfo.InvariantCulture,
            $$"""{"url":"http://127.0.0.1/api/v3/repos/o/r/releases/assets/1","id":1,"node_id":"RA_1","name":"{{name}}","label":"","state":"uploaded","content_type":"application/octet-stream","size":{{received}},"download_count":0,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","browser_download_url":"http://127.0.0.1/d/{{name}}"}""");
        var body = Encoding.UTF8.GetBytes(json);
        var response = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n");
        await stream.WriteAsync(response);
        await stream.WriteAsync(body);
    }

    private static int IndexOf(byte[] buffer, int count, ReadOnlySpan<byte> needle) => buffer.AsSpan(0, count).IndexOf(needle);
}

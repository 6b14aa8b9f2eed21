using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace Ertas.Eval.Tests;

public class EvalHtmlTests(ITestOutputHelper output)
{
    private const string SvgNamespace = "http://www.w3.org/2000/svg";

    private static readonly TimeSpan ChromiumTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public void Render_IsSelfContained()
    {
        var html = EvalHtml.Render(SampleReports.TwoQuantizations());

        // Any "http" other than the SVG namespace would be something a browser could fetch or a reader could follow.
        var stray = Regex.Matches(html, "http", RegexOptions.IgnoreCase)
            .Where(m => string.Compare(html, m.Index, SvgNamespace, 0, SvgNamespace.Length, StringComparison.Ordinal) != 0)
            .Select(m => html.Substring(m.Index, Math.Min(60, html.Length - m.Index)))
            .ToList();
        Assert.Empty(stray);
        foreach (var reference in new[] { "<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import", "@font-face" })
            Assert.DoesNotContain(reference, html, StringComparison.OrdinalIgnoreCase);
        Assert.StartsWith("<!DOCTYPE html>\n", html, StringComparison.Ordinal);
        Assert.Contains("<meta charset=\"utf-8\">", html, StringComparison.Ordinal);
        Assert.Contains($"<title>Eval report: {SampleReports.ModelName}</title>", html, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_EncodesModelOutput()
    {
        var html = EvalHtml.Render(SampleReports.TwoQuantizations());

        Assert.Contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;more&quot;", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<script>alert", html, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Render_IsDeterministic()
    {
        var first = Encoding.UTF8.GetBytes(EvalHtml.Render(SampleReports.TwoQuantizations()));
        var second = Encoding.UTF8.GetBytes(EvalHtml.Render(SampleReports.TwoQuantizations()));

        Assert.Equal(first, second);
        Assert.DoesNotContain((byte)'\r', first);
    }

    [Fact]
    public void Render_ShowsEveryQuantizationCaseAndSection()
    {
        var report = SampleReports.TwoQuantizations();
        var html = EvalHtml.Render(report);

        Assert.Equal("fail", report.VerdictWord);
        Assert.Contains("<p id=\"verdict\" class=\"verdict verdict-fail\">❌ <strong>Eval gate failed</strong> for support-bot:", html, StringComparison.Ordinal);
        Assert.DoesNotContain("**", html, StringComparison.Ordinal);
        foreach (var q in report.Quants)
        {
            Assert.Contains($"<h2>{q.Quantization} <span class=\"file\">({q.Now.File})</span></h2>", html, StringComparison.Ordinal);
            Assert.Contains($"<code>{q.Now.Sha256[..12]}</code>", html, StringComparison.Ordinal);
        }
        var ids = report.Quants.SelectMany(q => q.Now.Cases.Concat(q.Baseline!.Cases)).Select(c => c.Id).Distinct();
        foreach (var id in ids)
            Assert.Contains($"<code>{id}</code>", html, StringComparison.Ordinal);
        foreach (var word in new[] { "regression", "improvement", "new", "edited", "removed", "drift" })
            Assert.Contains($"<details class=\"case case-{word}", html, StringComparison.Ordinal);

        // The broken acc_norm rule of Q4_K_M, its status worded as in report.md, and the allowed multiple-choice regression.
        Assert.Contains("❌ acc_norm dropped by 1 (1 -&gt; 0), more than the 0.02 allowed", html, StringComparison.Ordinal);
        Assert.Contains("<li>❌ EvalRule acc_norm: acc_norm dropped by 1 ", html, StringComparison.Ordinal);
        Assert.Contains("⚠️ Q4_K_M · <code>mc-planet</code> · regression · fails", html, StringComparison.Ordinal);
        Assert.Contains("<tr class=\"reference\"><td>Q8_0 <span class=\"tag\">reference</span>", html, StringComparison.Ordinal);
        Assert.Contains("aria-label=\"Training loss by step\"", html, StringComparison.Ordinal);
        foreach (var metric in new[] { "pass_rate", "acc", "acc_norm", "mean target_nll" })
            Assert.Contains($"<figcaption>{metric}", html, StringComparison.Ordinal);
        Assert.Contains("greedy, context 4096, batch 512, threads 8, max_tokens 256", html, StringComparison.Ordinal);
        Assert.Contains("LLamaSharp 0.30.0, llama.cpp b5002", html, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_WithoutBaselineOrCurve_ShowsNoneVerdictAndNoLossChart()
    {
        var sample = SampleReports.TwoQuantizations();
        var fresh = new EvalReport(sample.ModelName,
            [EvalGate.Compare(null, sample.Quants[0].Now, new GateOptions())], [new LossPoint(1, 2.0)]);

        var html = EvalHtml.Render(fresh);

        Assert.Contains("class=\"verdict verdict-none\"", html, StringComparison.Ordinal);
        Assert.Contains("No baseline: these results become the baseline once accepted.", html, StringComparison.Ordinal);
        Assert.DoesNotContain("Training loss", html, StringComparison.Ordinal);
        Assert.DoesNotContain("Changed cases", html, StringComparison.Ordinal);
        Assert.DoesNotContain("Quantization matrix", html, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_CapsTheCaseList()
    {
        var template = SampleReports.TwoQuantizations().Quants[0].Now;
        CaseResult Case(int i, bool pass) => new() { Id = $"case-{i:D4}", Hash = $"h{i}", Pass = pass, Score = pass ? 1 : 0, Output = pass ? "yes" : "no" };
        var extra = 120;
        var baseline = template with { Cases = [.. Enumerable.Range(0, EvalHtml.MaxCases + extra).Select(i => Case(i, true))] };
        var now = template with { Cases = [.. Enumerable.Range(0, EvalHtml.MaxCases + extra).Select(i => Case(i, false))] };
        var report = new EvalReport("big", [EvalGate.Compare(baseline, now, new GateOptions(MaxNewFailures: 10_000))]);

        var html = EvalHtml.Render(report);

        Assert.Equal(EvalHtml.MaxCases, Regex.Count(html, "<details class=\"case "));
        Assert.Contains($"… and {extra} more changed case(s)", html, StringComparison.Ordinal);
    }

    [Fact]
    public void Axis_RoundsToReadableTicks()
    {
        Assert.Equal((0.0, 500.0, 100.0), EvalHtml.Axis(10, 500, 6, integer: true));
        // Steps are whole numbers: a short run does not get ticks at half steps.
        Assert.Equal((1.0, 3.0, 1.0), EvalHtml.Axis(1, 3, 6, integer: true));
        var (lo, hi, step) = EvalHtml.Axis(0.42, 2.31, 5, integer: false);
        Assert.Equal(0.0, lo, 9);
        Assert.Equal(2.5, hi, 9);
        Assert.Equal(0.5, step, 9);
        var flat = EvalHtml.Axis(2, 2, 5, integer: false);
        Assert.True(flat.Lo < 2 && flat.Hi > 2);
    }

    /// <summary>
    /// Loads the page in headless Chromium: it must parse (the dumped DOM holds the verdict and the charts), log no
    /// console error, and render to a screenshot kept as an artifact for a reviewer to look at.
    /// </summary>
    [SkippableFact]
    public async Task Render_LoadsInHeadlessChromium()
    {
        var chromium = FindChromium();
        Skip.If(chromium is null, "no Chromium found (/usr/bin/chromium, or chromium, chromium-browser or google-chrome on PATH); install one (apt-get install -y chromium) to run this test");

        var report = SampleReports.TwoQuantizations();
        var artifacts = Path.Combine(AppContext.BaseDirectory, "artifacts", "eval-report");
        Directory.CreateDirectory(artifacts);
        var htmlPath = Path.Combine(artifacts, "report.html");
        var pngPath = Path.Combine(artifacts, "report.png");
        File.Delete(pngPath);
        await File.WriteAllTextAsync(htmlPath, EvalHtml.Render(report), new UTF8Encoding(false));
        var url = new Uri(htmlPath).AbsoluteUri;

        var shot = await RunChromium(chromium!, $"--screenshot={pngPath}", "--window-size=1280,2000", url);
        output.WriteLine($"HTML: {htmlPath}");
        output.WriteLine($"screenshot: {pngPath}");
        Assert.True(shot.ExitCode == 0, $"chromium --screenshot exited with {shot.ExitCode}:\n{shot.Stderr}");
        Assert.True(File.Exists(pngPath), $"chromium wrote no screenshot:\n{shot.Stderr}");
        Assert.True(new FileInfo(pngPath).Length > 5_000, $"the screenshot is {new FileInfo(pngPath).Length} bytes, too small to show the page");
        AssertNoConsoleErrors(shot.Stderr);

        var dump = await RunChromium(chromium!, "--dump-dom", url);
        Assert.True(dump.ExitCode == 0, $"chromium --dump-dom exited with {dump.ExitCode}:\n{dump.Stderr}");
        AssertNoConsoleErrors(dump.Stderr);
        // The verdict as the parser built it: the bold part is its own element, the rest follows it as text.
        var verdict = report.Verdict;
        Assert.Contains("<strong>Eval gate failed</strong>", dump.Stdout, StringComparison.Ordinal);
        Assert.Contains(verdict[(verdict.LastIndexOf("**", StringComparison.Ordinal) + 2)..], dump.Stdout, StringComparison.Ordinal);
        Assert.Contains("<svg", dump.Stdout, StringComparison.Ordinal);
        Assert.Contains("&lt;script&gt;alert(1)&lt;/script&gt;", dump.Stdout, StringComparison.Ordinal);
    }

    private static void AssertNoConsoleErrors(string stderr)
    {
        // Chromium 156 logs even console.error and uncaught exceptions as "INFO:CONSOLE:<line>]"; older ones wrote
        // "ERROR:CONSOLE(<line>)". The page runs no script, so any console line at all is a fault.
        var errors = stderr.Split('\n').Where(l => l.Contains("Uncaught", StringComparison.Ordinal) || l.Contains(":CONSOLE", StringComparison.Ordinal)).ToList();
        Assert.True(errors.Count == 0, "the page logged console errors:\n" + string.Join("\n", errors));
    }

    private static string? FindChromium()
    {
        if (File.Exists("/usr/bin/chromium"))
            return "/usr/bin/chromium";
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var name in new[] { "chromium", "chromium-browser", "google-chrome" })
            foreach (var dir in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            {
                var candidate = Path.Combine(dir, name);
                if (File.Exists(candidate))
                    return candidate;
            }
        return null;
    }

    private sealed record ChromiumRun(int ExitCode, string Stdout, string Stderr);

    private async Task<ChromiumRun> RunChromium(string chromium, params string[] args)
    {
        // A fresh profile each run: a shared one could hold a lock or a cached page from an earlier run.
        var profile = Directory.CreateTempSubdirectory("ertas-chromium-");
        try
        {
            var info = new ProcessStartInfo(chromium)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var arg in new[]
            {
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", $"--user-data-dir={profile.FullName}", "--enable-logging=stderr", "--v=0",
            }.Concat(args))
                info.ArgumentList.Add(arg);

            using var process = Process.Start(info)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(ChromiumTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
                Assert.Fail($"chromium {string.Join(' ', args)} did not finish within {ChromiumTimeout.TotalSeconds:0} s; killed it. stderr:\n{await stderr}");
            }
            var run = new ChromiumRun(process.ExitCode, await stdout, await stderr);
            output.WriteLine($"chromium {string.Join(' ', args)}: exit {run.ExitCode}, {run.Stdout.Length} chars of stdout");
            return run;
        }
        finally
        {
            try
            {
                profile.Delete(recursive: true);
            }
            catch (IOException)
            {
                // A helper process may still hold a file for a moment; the temp folder is cleaned eventually.
            }
        }
    }
}

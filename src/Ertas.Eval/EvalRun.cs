using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Ertas.Core;
using Ertas.Data;
using Ertas.Gguf;
using Ertas.Mistral.Templates;

namespace Ertas.Eval;

/// <summary>Everything one <c>ertas eval</c> needs. Snapshots live in <see cref="SnapshotDirectory"/> as
/// <c>{ModelName}.{QUANT}.verified.json</c> / <c>.received.json</c>; reports and the result cache under
/// <see cref="OutputDirectory"/>.</summary>
public sealed record EvalRunOptions
{
    public required IReadOnlyList<string> Models { get; init; }
    public required IReadOnlyList<string> Suites { get; init; }
    public required string SnapshotDirectory { get; init; }
    public required string OutputDirectory { get; init; }
    public required string ModelName { get; init; }
    public string Template { get; init; } = ChatTemplates.AutoName;
    public DecodeSettings Decode { get; init; } = new(2048, 2048, 4, 64);
    public GateOptions Gate { get; init; } = new();
    /// <summary>Where errors that belong to no case (pass-rate floor, rules) point: the project file.</summary>
    public string? ProjectFile { get; init; }
    /// <summary>The adapter's metrics.jsonl, for the loss curve in report.html.</summary>
    public string? TrainingMetrics { get; init; }
    public IProgressSink Progress { get; init; } = NullProgressSink.Instance;
}

public sealed record EvalRunResult(EvalReport? Report, IReadOnlyList<DatasetDiagnostic> Diagnostics, IReadOnlyList<string> Messages)
{
    public bool Failed => Diagnostics.Any(d => d.Severity == DiagnosticSeverity.Error);
}

/// <summary>
/// The eval stage: read and check the suites, score every case on every model through llama.cpp (reusing cached
/// results for unchanged cases on an unchanged model), write the snapshots, apply the gate, write the reports.
/// </summary>
public static class EvalRun
{
    /// <summary>Bumped when scoring changes meaning, so cached results from an older scorer are not reused.</summary>
    private const string ScorerVersion = "3";

    /// <summary>The builds of the code that scores (asserts, templates, tokenizer): a rebuilt engine with a fixed bug
    /// must not reuse results the old code cached, whether or not someone bumped <see cref="ScorerVersion"/>.</summary>
    private static string ScorerBuild { get; } = string.Join(",",
        new[] { typeof(EvalRun), typeof(ChatTemplates), typeof(DatasetDiagnostic) }.Select(t => t.Assembly.ManifestModule.ModuleVersionId));

    /// <summary>Every id a case is scored from: the key then changes whenever the template or tokenizer encodes it otherwise.</summary>
    private static string Ids(PreparedCase p) =>
        string.Join(" ", p.Prompt) + " | " + string.Join(" / ", (p.ChoiceTokens ?? []).Select(c => string.Join(" ", c))) + " | " + string.Join(" ", p.IdealTokens ?? []);

    public static EvalRunResult Run(EvalRunOptions options, CancellationToken cancellationToken = default)
    {
        var diagnostics = new List<DatasetDiagnostic>();
        var messages = new List<string>();
        // Cases with errors are left out here; the valid ones are still encoded below, so a case too long for the
        // context is reported in the same round as every other problem.
        var cases = EvalSuiteReader.Read(options.Suites, diagnostics, cancellationToken);
        if (cases.Count == 0 && Errors(diagnostics) > 0)
            return Stop(diagnostics, messages, "the eval suites have errors; nothing was scored", options.ProjectFile);
        if (cases.Count == 0)
        {
            diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.EvalNoCases, options.ProjectFile ?? "ertas", 0, 0, "no eval cases"));
            return Stop(diagnostics, messages, "nothing was scored", options.ProjectFile);
        }
        var byId = cases.ToDictionary(c => c.Id, StringComparer.Ordinal);
        var suiteHash = Sha256Text(string.Join("\n", cases.Select(c => c.Hash).Order(StringComparer.Ordinal)));

        // Every model's prompts are encoded and checked before anything is scored: a bad case stops the run early.
        var models = new List<(string Path, string Quant, string Sha, IReadOnlyList<PreparedCase> Cases, Mistral.Tokenization.MistralTokenizer Tokenizer)>();
        foreach (var path in options.Models)
        {
            if (!File.Exists(path))
                throw new ErtasException(ErrorCode.FileNotFound, "the model to evaluate does not exist", path);
            using var gguf = new GgufTensorSource(path);
            var tokenizer = TokenizerVocabularies.ToTokenizer(gguf.ReadVocabulary());
            var template = ChatTemplates.Get(options.Template, tokenizer);
            var before = diagnostics.Count;
            var prepared = EvalScorer.Prepare(cases, tokenizer, template, options.Decode, diagnostics);
            // One model's encoding errors are every model's (they share the tokenizer): report them once.
            if (diagnostics.Count > before && models.Count > 0)
                diagnostics.RemoveRange(before, diagnostics.Count - before);
            models.Add((path, QuantizationOf(path, gguf), "", prepared, tokenizer));
        }
        if (Errors(diagnostics) > 0)
            return Stop(diagnostics, messages, "the eval suites have errors; nothing was scored", options.ProjectFile);

        var runtime = new Dictionary<string, string>
        {
            ["ertas"] = typeof(EvalRun).Assembly.GetName().Version?.ToString(3) ?? "0.0.0",
            ["llamasharp"] = LlamaCppEvaluator.RuntimeVersion,
        };
        // Hashed only once every case is known to be valid: a 7B GGUF takes seconds to read.
        for (var i = 0; i < models.Count; i++)
            models[i] = models[i] with { Sha = Sha256File(models[i].Path, cancellationToken) };
        var cacheDirectory = Path.Combine(options.OutputDirectory, "cache");
        Directory.CreateDirectory(cacheDirectory);
        var comparisons = new List<QuantComparison>();
        foreach (var model in models)
        {
            var clock = Stopwatch.StartNew();
            var errorsBeforeScoring = Errors(diagnostics);
            var results = new List<CaseResult>();
            var cached = 0;
            LlamaCppEvaluator? evaluator = null;
            try
            {
                foreach (var p in model.Cases)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var key = Sha256Text($"ertas-eval {ScorerVersion} {ScorerBuild}\n{model.Sha}\n{p.Case.Hash}\n{p.MaxTokens}\n{options.Decode}\n{options.Template}\n" +
                                         $"{string.Join(",", runtime.Select(r => r.Key + "=" + r.Value))}\n{Ids(p)}");
                    var cacheFile = Path.Combine(cacheDirectory, key + ".json");
                    CaseResult? result = null;
                    if (File.Exists(cacheFile))
                    {
                        try { result = EvalSnapshot.CaseFromJson(File.ReadAllText(cacheFile)); cached++; }
                        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException) { result = null; }
                    }
                    if (result is null)
                    {
                        evaluator ??= LlamaCppEvaluator.Load(model.Path, options.Decode);
                        result = EvalSnapshot.Rounded(EvalScorer.Score(p, evaluator, model.Tokenizer, diagnostics, cancellationToken));
                        // A tie is an error, and an error is never cached: the next run reports it again.
                        if (!(result.IsMultipleChoice && result.Predicted < 0))
                            AtomicFile.WriteAllText(cacheFile, EvalSnapshot.CaseToJson(result));
                    }
                    results.Add(result with { Tags = p.Case.Tags });
                    if (results.Count % 10 == 0 || results.Count == model.Cases.Count)
                        options.Progress.Advance($"eval {model.Quant}: case {results.Count}/{model.Cases.Count} ({cached} cached), {results.Count(r => r.Pass)} passed, " +
                                                 $"{results.Count / Math.Max(clock.Elapsed.TotalSeconds, 1e-9):F1} cases/s", results.Count, model.Cases.Count);
                }
            }
            finally
            {
                evaluator?.Dispose();
            }
            var snapshot = new EvalSnapshot
            {
                Model = options.ModelName,
                Quantization = model.Quant,
                File = Path.GetFileName(model.Path),
                Sha256 = model.Sha,
                Runtime = runtime,
                Decode = options.Decode,
                SuiteHash = suiteHash,
                Cases = results.OrderBy(r => r.Id, StringComparer.Ordinal).ToList(),
            };
            comparisons.Add(Gate(options, snapshot, byId, diagnostics, messages, scoringFailed: Errors(diagnostics) > errorsBeforeScoring));
            messages.Add($"eval {model.Quant}: {snapshot.Summary.Passed}/{snapshot.Summary.Cases} passed in {clock.Elapsed.TotalSeconds:F2} s ({cached} cached)");
        }

        var report = new EvalReport(options.ModelName, comparisons, ReadLossCurve(options.TrainingMetrics));
        Directory.CreateDirectory(options.OutputDirectory);
        AtomicFile.WriteAllText(Path.Combine(options.OutputDirectory, "report.md"), EvalMarkdown.Render(report));
        AtomicFile.WriteAllText(Path.Combine(options.OutputDirectory, "report.html"), EvalHtml.Render(report));
        AtomicFile.WriteAllText(Path.Combine(options.OutputDirectory, VerdictFileName), VerdictJson(options, report, Errors(diagnostics) > 0));
        messages.Add($"eval: {report.Verdict.Replace("**", "")} Report: {Path.Combine(options.OutputDirectory, "report.md")}");
        return new EvalRunResult(report, diagnostics, messages);
    }

    /// <summary>The run's outcome for tools (the GitHub Action's eval-verdict output), beside report.md.</summary>
    public const string VerdictFileName = "verdict.json";

    /// <summary>
    /// <c>{"model","verdict":"pass|fail|none","quantizations":[{"quantization","file","passed","cases","snapshot"}]}</c>,
    /// where snapshot is the file holding these results: the received one when they differ from the baseline, else the
    /// verified one (relative to the snapshot folder).
    /// </summary>
    private static string VerdictJson(EvalRunOptions options, EvalReport report, bool failed)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("model", options.ModelName);
            w.WriteString("verdict", failed ? "fail" : report.VerdictWord);
            w.WriteStartArray("quantizations");
            foreach (var q in report.Quants)
            {
                w.WriteStartObject();
                w.WriteString("quantization", q.Quantization);
                w.WriteString("file", q.Now.File);
                w.WriteNumber("passed", q.Now.Summary.Passed);
                w.WriteNumber("cases", q.Now.Summary.Cases);
                var received = ReceivedPath(options.SnapshotDirectory, options.ModelName, q.Quantization);
                w.WriteString("snapshot", Path.GetFileName(File.Exists(received) ? received : VerifiedPath(options.SnapshotDirectory, options.ModelName, q.Quantization)));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    public static string VerifiedPath(string directory, string model, string quant) => Path.Combine(directory, $"{model}.{quant}.verified.json");
    public static string ReceivedPath(string directory, string model, string quant) => Path.Combine(directory, $"{model}.{quant}.received.json");

    /// <summary>Compares with the committed baseline and decides what to write: nothing when equal, the received
    /// file on any difference, the verified file itself only when there is none yet and this is not CI.</summary>
    private static QuantComparison Gate(EvalRunOptions options, EvalSnapshot now, IReadOnlyDictionary<string, EvalCase> cases,
        List<DatasetDiagnostic> diagnostics, List<string> messages, bool scoringFailed)
    {
        var verified = VerifiedPath(options.SnapshotDirectory, options.ModelName, now.Quantization);
        var received = ReceivedPath(options.SnapshotDirectory, options.ModelName, now.Quantization);
        var json = now.ToJson();
        var baseline = File.Exists(verified) ? EvalSnapshot.Read(verified) : null;
        var comparison = EvalGate.Compare(baseline, now, options.Gate);
        var project = options.ProjectFile ?? "ertas";
        if (baseline is null)
        {
            // Without a baseline there are no regressions, but the pass-rate floor and absolute rule limits still hold.
            var failures = EvalGate.Diagnostics(comparison, cases, project).Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
            diagnostics.AddRange(failures);
            if (scoringFailed || failures.Count > 0)
            {
                // Results with errors (tied choices, a broken floor) are never a baseline.
                AtomicFile.WriteAllText(received, json);
                messages.Add($"eval {now.Quantization}: no baseline written, since the results have errors; wrote {received}");
            }
            else if (options.Gate.Ci)
            {
                AtomicFile.WriteAllText(received, json);
                diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.EvalNoBaseline, project, 0, 0,
                    $"{now.Quantization}: no eval baseline {verified}, and CI never accepts one; run the build locally, or accept " +
                    $"{received} (dotnet build -t:ErtasAcceptEvals, or ertas eval accept {options.SnapshotDirectory}), and commit the verified file"));
            }
            else
            {
                AtomicFile.WriteAllText(verified, json);
                File.Delete(received);
                messages.Add($"eval {now.Quantization}: no baseline yet; wrote {verified} ({now.Summary.Passed}/{now.Summary.Cases} passed). Review and commit it.");
            }
            return comparison;
        }
        diagnostics.AddRange(EvalGate.Diagnostics(comparison, cases, project));
        // A checkout with CRLF line ends (git autocrlf) holds the same snapshot.
        if (File.ReadAllText(verified).ReplaceLineEndings("\n") == json)
        {
            File.Delete(received);
            return comparison;
        }
        AtomicFile.WriteAllText(received, json);
        var counts = string.Join(", ", comparison.Changes.GroupBy(c => c.Kind).OrderBy(g => g.Key).Select(g => $"{g.Count()} {g.Key.ToString().ToLowerInvariant()}"));
        messages.Add($"eval {now.Quantization}: results differ from the baseline ({(counts.Length > 0 ? counts : "model or settings changed")}); wrote {received}. " +
                     "Accept them with dotnet build -t:ErtasAcceptEvals (or ertas eval accept).");
        return comparison;
    }

    /// <summary>Moves received snapshots over verified ones (all, or one quantization's); returns the accepted files.</summary>
    public static IReadOnlyList<string> Accept(string directory, string? model = null, string? quantization = null)
    {
        if (!Directory.Exists(directory))
            throw new ErtasException(ErrorCode.DirectoryNotFound, "the snapshot folder does not exist", directory);
        var accepted = new List<string>();
        foreach (var received in Directory.GetFiles(directory, "*.received.json").Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(received);
            var stem = name[..^".received.json".Length];
            // NAME.QUANT exactly: model "Tiny" must not accept "Tiny.Chat.Q8_0".
            var dot = stem.LastIndexOf('.');
            if (dot < 0)
                continue;
            if (quantization is not null && !string.Equals(stem[(dot + 1)..], quantization, StringComparison.OrdinalIgnoreCase))
                continue;
            if (model is not null && stem[..dot] != model)
                continue;
            var verified = Path.Combine(directory, stem + ".verified.json");
            File.Move(received, verified, overwrite: true);
            accepted.Add(verified);
        }
        return accepted;
    }

    /// <summary>The quantization a GGUF holds: from its name (NAME-VERSION.Q4_K_M.gguf, as the SDK writes it),
    /// else from general.file_type.</summary>
    internal static string QuantizationOf(string path, GgufTensorSource gguf)
    {
        var stem = Path.GetFileNameWithoutExtension(path);
        var dot = stem.LastIndexOf('.');
        if (dot >= 0 && Gguf.Mixes.QuantizationMixes.TryParse(stem[(dot + 1)..], out var named))
            return named.Name;
        if (gguf.Reader.TryGet(Keys.General.FileType, out var entry) && entry.Value is uint fileType
            && Gguf.Mixes.QuantizationMixes.ForFileType((LlamaFileType)fileType) is { } mix)
            return mix.Name;
        return stem;
    }

    private static IReadOnlyList<LossPoint>? ReadLossCurve(string? metricsFile)
    {
        if (metricsFile is null || !File.Exists(metricsFile))
            return null;
        var points = new List<LossPoint>();
        foreach (var line in File.ReadLines(metricsFile))
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                var root = doc.RootElement;
                if (root.TryGetProperty("step", out var step) && root.TryGetProperty("loss", out var loss) && loss.ValueKind == JsonValueKind.Number)
                    points.Add(new LossPoint(step.GetInt32(), loss.GetDouble()));
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
            {
                // metrics.jsonl is ours; a torn last line of a killed run is simply not plotted.
            }
        }
        return points;
    }

    private static int Errors(List<DatasetDiagnostic> diagnostics) => diagnostics.Count(d => d.Severity == DiagnosticSeverity.Error);

    private static EvalRunResult Stop(List<DatasetDiagnostic> diagnostics, List<string> messages, string why, string? projectFile)
    {
        var files = diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.File).Distinct().ToList();
        diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.EvalSuiteHasErrors, files.Count == 1 ? files[0] : projectFile ?? "ertas", 0, 0,
            $"{Errors(diagnostics)} error(s); {why}"));
        return new EvalRunResult(null, diagnostics, messages);
    }

    public static string Sha256Text(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    public static string Sha256File(string path, CancellationToken cancellationToken)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        int read;
        while ((read = stream.Read(buffer)) > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            sha.AppendData(buffer, 0, read);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}

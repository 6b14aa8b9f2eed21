using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ertas.Core;

namespace Ertas.Eval;

/// <summary>How one choice of a multiple-choice case scored: the summed log-probability of its tokens.</summary>
public sealed record ChoiceScore(string Text, double LogProb, int Tokens);

/// <summary>
/// One case's result. Generated cases have <see cref="Output"/> and <see cref="Asserts"/>; multiple-choice cases have
/// <see cref="Choices"/>, <see cref="Predicted"/> (argmax of the sum) and <see cref="PredictedNorm"/> (argmax of the
/// sum divided by the choice's length in characters, lm-evaluation-harness's acc_norm).
/// </summary>
public sealed record CaseResult
{
    public required string Id { get; init; }
    public required string Hash { get; init; }
    public IReadOnlyList<string> Tags { get; init; } = [];
    public required bool Pass { get; init; }
    public required double Score { get; init; }
    public string? Output { get; init; }
    /// <summary>"eos" when the model ended its answer, "max_tokens" when it was cut off.</summary>
    public string? Stopped { get; init; }
    public int? FirstToken { get; init; }
    public IReadOnlyList<AssertResult>? Asserts { get; init; }
    public double? TargetNll { get; init; }
    public IReadOnlyList<ChoiceScore>? Choices { get; init; }
    public int? Answer { get; init; }
    public int? Predicted { get; init; }
    public int? PredictedNorm { get; init; }

    public bool IsMultipleChoice => Choices is not null;
    /// <summary>The chosen choice's text; null for a tie or an index a hand-edited snapshot got wrong.</summary>
    public string? PredictedText => ChoiceText(Predicted);
    public string? AnswerText => ChoiceText(Answer);
    private string? ChoiceText(int? index) => Choices is { } ch && index is { } i && i >= 0 && i < ch.Count ? ch[i].Text : null;
    public double? Acc => IsMultipleChoice ? (Predicted == Answer ? 1 : 0) : null;
    public double? AccNorm => IsMultipleChoice ? (PredictedNorm == Answer ? 1 : 0) : null;
    public bool IsCritical => Tags.Contains(EvalTags.Critical, StringComparer.Ordinal);
}

public sealed record EvalSummary(int Cases, int Passed, double PassRate, double MeanScore, double? Acc, double? AccNorm, double? MeanTargetNll)
{
    public static EvalSummary Of(IReadOnlyCollection<CaseResult> cases)
    {
        var choices = cases.Where(c => c.IsMultipleChoice).ToList();
        var nll = cases.Where(c => c.TargetNll is not null).Select(c => c.TargetNll!.Value).ToList();
        var passed = cases.Count(c => c.Pass);
        return new EvalSummary(
            cases.Count,
            passed,
            cases.Count == 0 ? 0 : (double)passed / cases.Count,
            cases.Count == 0 ? 0 : cases.Average(c => c.Score),
            choices.Count == 0 ? null : choices.Average(c => c.Acc!.Value),
            choices.Count == 0 ? null : choices.Average(c => c.AccNorm!.Value),
            nll.Count == 0 ? null : nll.Average());
    }

    /// <summary>A summary metric by its public name (EvalRule items use these).</summary>
    public double? Metric(string name) => name switch
    {
        "pass_rate" => PassRate,
        "mean_score" => MeanScore,
        "acc" => Acc,
        "acc_norm" => AccNorm,
        "target_nll" => MeanTargetNll,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    public static IReadOnlyList<string> MetricNames { get; } = ["pass_rate", "mean_score", "acc", "acc_norm", "target_nll"];

    /// <summary>Metrics where smaller is better.</summary>
    public static bool LowerIsBetter(string name) => name == "target_nll";
}

/// <summary>The settings that decide what llama.cpp computes; any change makes every result new.</summary>
public sealed record DecodeSettings(int ContextSize, int BatchSize, int Threads, int MaxTokens)
{
    public string Describe() => $"greedy, context {ContextSize}, batch {BatchSize}, threads {Threads}, max_tokens {MaxTokens}, f32 KV cache";
}

/// <summary>
/// The results of one suite on one GGUF: the committed baseline (<c>NAME.QUANT.verified.json</c>) and what a build
/// received. Written with a fixed key order, cases sorted by id and floats rounded to 4 decimals, so two runs give
/// the same bytes and a baseline change reads well in a pull-request diff.
/// </summary>
public sealed record EvalSnapshot
{
    public const int SchemaVersion = 1;

    public required string Model { get; init; }
    public required string Quantization { get; init; }
    public required string File { get; init; }
    public required string Sha256 { get; init; }
    public required IReadOnlyDictionary<string, string> Runtime { get; init; }
    public required DecodeSettings Decode { get; init; }
    public required string SuiteHash { get; init; }
    public required IReadOnlyList<CaseResult> Cases { get; init; }

    public EvalSummary Summary => EvalSummary.Of(Cases.ToList());

    public static double Round(double value) => Math.Round(value, 4, MidpointRounding.ToEven);

    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, NewLine = "\n" }))
        {
            w.WriteStartObject();
            w.WriteNumber("schema", SchemaVersion);
            w.WriteString("model", Model);
            w.WriteString("quantization", Quantization);
            w.WriteString("file", File);
            w.WriteString("sha256", Sha256);
            w.WriteStartObject("runtime");
            foreach (var (k, v) in Runtime.OrderBy(p => p.Key, StringComparer.Ordinal))
                w.WriteString(k, v);
            w.WriteEndObject();
            w.WriteStartObject("decode");
            w.WriteString("sampling", "greedy");
            w.WriteNumber("context", Decode.ContextSize);
            w.WriteNumber("batch", Decode.BatchSize);
            w.WriteNumber("threads", Decode.Threads);
            w.WriteNumber("max_tokens", Decode.MaxTokens);
            w.WriteString("kv_cache", "f32");
            w.WriteEndObject();
            w.WriteString("suite_hash", SuiteHash);
            var s = Summary;
            w.WriteStartObject("summary");
            w.WriteNumber("cases", s.Cases);
            w.WriteNumber("passed", s.Passed);
            Number(w, "pass_rate", s.PassRate);
            Number(w, "mean_score", s.MeanScore);
            Number(w, "acc", s.Acc);
            Number(w, "acc_norm", s.AccNorm);
            Number(w, "mean_target_nll", s.MeanTargetNll);
            w.WriteEndObject();
            w.WriteStartArray("cases");
            foreach (var c in Cases.OrderBy(c => c.Id, StringComparer.Ordinal))
                WriteCase(w, c);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    internal static void WriteCase(Utf8JsonWriter w, CaseResult c)
    {
        w.WriteStartObject();
        w.WriteString("id", c.Id);
        w.WriteString("hash", c.Hash);
        if (c.Tags.Count > 0)
        {
            w.WriteStartArray("tags");
            foreach (var t in c.Tags) w.WriteStringValue(t);
            w.WriteEndArray();
        }
        w.WriteBoolean("pass", c.Pass);
        Number(w, "score", c.Score);
        if (c.Output is not null) w.WriteString("output", c.Output);
        if (c.Stopped is not null) w.WriteString("stopped", c.Stopped);
        if (c.FirstToken is { } ft) w.WriteNumber("first_token", ft);
        if (c.Asserts is not null)
        {
            w.WriteStartArray("asserts");
            foreach (var a in c.Asserts)
            {
                w.WriteStartObject();
                w.WriteString("type", a.Type);
                w.WriteBoolean("pass", a.Pass);
                Number(w, "score", a.Score);
                Number(w, "metric", a.Metric);
                if (a.Detail is not null) w.WriteString("detail", a.Detail);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        Number(w, "target_nll", c.TargetNll);
        if (c.Choices is not null)
        {
            w.WriteStartArray("choices");
            foreach (var ch in c.Choices)
            {
                w.WriteStartObject();
                w.WriteString("text", ch.Text);
                Number(w, "logprob", ch.LogProb);
                w.WriteNumber("tokens", ch.Tokens);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("answer", c.Answer ?? -1);
            w.WriteNumber("predicted", c.Predicted ?? -1);
            w.WriteNumber("predicted_norm", c.PredictedNorm ?? -1);
        }
        w.WriteEndObject();
    }

    private static void Number(Utf8JsonWriter w, string name, double? value)
    {
        if (value is not { } v) return;
        // Written from the rounded decimal's shortest text, so "0.1" stays "0.1" whatever the platform prints.
        w.WritePropertyName(name);
        w.WriteRawValue(Format(v));
    }

    public static string Format(double value)
    {
        var r = Round(value);
        if (r == 0) r = 0; // no "-0"
        return r.ToString("0.####", CultureInfo.InvariantCulture);
    }

    public static EvalSnapshot Read(string path)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(System.IO.File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.EvalSnapshotInvalid,
                $"the snapshot is not valid JSON ({e.Message}); restore it from git or delete it to write a new baseline", path, (int)(e.LineNumber ?? 0) + 1);
        }
        try
        {
            return FromJson(root!.AsObject());
        }
        catch (Exception e) when (e is InvalidOperationException or NullReferenceException or FormatException or KeyNotFoundException or ArgumentException)
        {
            throw new ErtasException(ErrorCode.EvalSnapshotInvalid,
                $"the snapshot is not an ertas eval snapshot ({e.Message}); restore it from git or delete it to write a new baseline", path);
        }
    }

    public static EvalSnapshot FromJson(JsonObject o)
    {
        if ((int?)o["schema"] != SchemaVersion)
            throw new FormatException($"schema {o["schema"]?.ToJsonString() ?? "missing"}, expected {SchemaVersion}");
        var decode = o["decode"]!.AsObject();
        var cases = o["cases"]!.AsArray().Select(c => ReadCase(c!.AsObject())).ToList();
        if (cases.GroupBy(c => c.Id, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1) is { } duplicate)
            throw new FormatException($"case id \"{duplicate.Key}\" appears {duplicate.Count()} times (a bad merge?)");
        return new EvalSnapshot
        {
            Model = (string)o["model"]!,
            Quantization = (string)o["quantization"]!,
            File = (string)o["file"]!,
            Sha256 = (string)o["sha256"]!,
            Runtime = o["runtime"]!.AsObject().ToDictionary(p => p.Key, p => (string)p.Value!),
            Decode = new DecodeSettings((int)decode["context"]!, (int)decode["batch"]!, (int)decode["threads"]!, (int)decode["max_tokens"]!),
            SuiteHash = (string)o["suite_hash"]!,
            Cases = cases,
        };
    }

    private static CaseResult ReadCase(JsonObject c) => new()
    {
        Id = (string)c["id"]!,
        Hash = (string)c["hash"]!,
        Tags = c["tags"]?.AsArray().Select(t => (string)t!).ToList() ?? [],
        Pass = (bool)c["pass"]!,
        Score = (double)c["score"]!,
        Output = (string?)c["output"],
        Stopped = (string?)c["stopped"],
        FirstToken = (int?)c["first_token"],
        Asserts = c["asserts"]?.AsArray().Select(a => new AssertResult(
            (string)a!["type"]!, (bool)a["pass"]!, (double)a["score"]!, (double?)a["metric"], (string?)a["detail"])).ToList(),
        TargetNll = (double?)c["target_nll"],
        Choices = c["choices"]?.AsArray().Select(ch => new ChoiceScore((string)ch!["text"]!, (double)ch["logprob"]!, (int)ch["tokens"]!)).ToList(),
        Answer = (int?)c["answer"],
        Predicted = (int?)c["predicted"],
        PredictedNorm = (int?)c["predicted_norm"],
    };

    /// <summary>The case as it is stored: rounded. Results are rounded before they are compared or cached, so a
    /// fresh result and one read back from a snapshot are equal.</summary>
    public static CaseResult Rounded(CaseResult c) => c with
    {
        Score = Round(c.Score),
        TargetNll = c.TargetNll is { } n ? Round(n) : null,
        Asserts = c.Asserts?.Select(a => a with { Score = Round(a.Score), Metric = a.Metric is { } m ? Round(m) : null }).ToList(),
        Choices = c.Choices?.Select(ch => ch with { LogProb = Round(ch.LogProb) }).ToList(),
    };

    /// <summary>One case alone as JSON (the per-case result cache).</summary>
    public static string CaseToJson(CaseResult c)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            WriteCase(w, c);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    public static CaseResult CaseFromJson(string json) => ReadCase(JsonNode.Parse(json)!.AsObject());
}

using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Ertas.Core;
using Ertas.Gguf;

namespace Ertas.GitHub;

/// <summary>What the model card takes from the GGUF's own metadata (what GgufExporter writes when given); null when absent.</summary>
internal sealed record GgufCardMetadata(string? Name, string? License, string? Description, string? BaseModel)
{
    public static readonly GgufCardMetadata Empty = new(null, null, null, null);

    public static GgufCardMetadata Read(string path)
    {
        using var reader = new GgufReader(path);
        return new GgufCardMetadata(
            Text(reader, Keys.General.Name),
            Text(reader, Keys.General.License),
            Text(reader, Keys.General.Description),
            Text(reader, Keys.General.BaseModelName(0)));
    }

    private static string? Text(GgufReader reader, string key) =>
        reader.TryGet(key, out var kv) && kv.Value is string s && !string.IsNullOrWhiteSpace(s) ? s.Trim() : null;
}

/// <summary>
/// The release's README.md (a Hugging Face model card, so the same file can be pushed to the Hub) and its shorter
/// release notes. Everything in them comes from the lock, the GGUF metadata, the snapshots and the assets, never a
/// clock, so two preparations of one build give the same bytes.
/// </summary>
internal static class ModelCard
{
    private static readonly JsonSerializerOptions YamlStrings = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    internal sealed record Context(
        ModelLock Lock,
        string Tag,
        ReleasePlanOptions Options,
        GgufCardMetadata Metadata,
        string? ModelfileGguf,
        IReadOnlyList<EvalSummaryLine> Evals,
        IReadOnlyList<SplitGguf> Splits);

    public static string Title(ModelLock lockFile) => $"{lockFile.Model} {lockFile.SemanticVersion.ToNormalizedString()}";

    /// <summary>The card; <paramref name="assets"/> are the files it lists (everything but itself and SHA256SUMS).</summary>
    public static string Render(Context c, IReadOnlyList<ReleaseFile> assets)
    {
        var sb = new StringBuilder();
        FrontMatter(sb, c);
        sb.Append("# ").Append(Title(c.Lock)).Append("\n\n");
        if (c.Metadata.Description is { } description)
        {
            sb.Append(description).Append("\n\n");
        }

        sb.Append(Provenance(c)).Append("\n\n");

        if (c.Evals.Count > 0)
        {
            sb.Append("## Evals\n\n");
            EvalTable(sb, c.Evals, assets, c.Splits);
            sb.Append('\n');
        }

        sb.Append("## Files\n\n| file | size | SHA-256 |\n|---|---:|---|\n");
        foreach (var asset in assets.OrderBy(a => a.Name, StringComparer.Ordinal))
        {
            sb.Append("| ").Append(Link(c, asset.Name)).Append(" | ").Append(Size(asset.Bytes)).Append(" | `").Append(asset.Sha256).Append("` |\n");
        }

        sb.Append("\nREADME.md is this card; SHA256SUMS lists every file's SHA-256, this card's included.\n\n");
        Usage(sb, c, assets);
        Training(sb, c.Lock);
        return sb.ToString();
    }

    /// <summary>The GitHub release body: who, from what, how it scored, where the rest is.</summary>
    public static string Notes(Context c, IReadOnlyList<ReleaseFile> assets)
    {
        var sb = new StringBuilder();
        sb.Append(Provenance(c)).Append("\n\n");
        if (c.Evals.Count > 0)
        {
            EvalTable(sb, c.Evals, assets, c.Splits);
            sb.Append('\n');
        }

        foreach (var split in c.Splits)
        {
            sb.Append(CultureInfo.InvariantCulture,
                $"`{split.Name}` is over GitHub's asset limit and ships as {split.Shards.Count} shards: llama.cpp loads `{split.Shards[0]}` directly; for Ollama join them first (see README.md).\n\n");
        }

        sb.Append(CultureInfo.InvariantCulture,
            $"{assets.Count} files. **README.md** is the model card: how to run the model with llama.cpp and Ollama. Verify downloads with `sha256sum -c SHA256SUMS`.\n");
        return sb.ToString();
    }

    /// <summary>The GGUF a Modelfile's <c>FROM ./NAME.gguf</c> line names, to show the commands with the file Ollama gets.</summary>
    public static string? ModelfileSource(string modelfile)
    {
        foreach (var line in File.ReadLines(modelfile))
        {
            var trimmed = line.Trim();
            if (trimmed.StartsWith("FROM ", StringComparison.OrdinalIgnoreCase))
            {
                var from = trimmed[5..].Trim();
                return from.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? Path.GetFileName(from) : null;
            }
        }

        return null;
    }

    /// <summary>An eval snapshot's summary block; ErtasException naming the file when it has none.</summary>
    public static EvalSummaryLine ReadEvalSummary(string path)
    {
        var name = Path.GetFileName(path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            var summary = root.GetProperty("summary");
            var metrics = summary.EnumerateObject()
                .Where(p => p.Name is not ("cases" or "passed" or "pass_rate") && p.Value.ValueKind == JsonValueKind.Number)
                .Select(p => new KeyValuePair<string, string>(p.Name, p.Value.GetRawText()))
                .ToList();
            return new EvalSummaryLine(
                name,
                OptionalString(root, "quantization"),
                OptionalString(root, "file"),
                OptionalString(root, "sha256"),
                summary.GetProperty("cases").GetInt32(),
                summary.GetProperty("passed").GetInt32(),
                summary.GetProperty("pass_rate").GetDouble(),
                metrics);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new ErtasException(ErrorCode.EvalSnapshotInvalid,
                $"the eval snapshot {name} has no readable summary (cases, passed, pass_rate): {ex.Message}; re-run the evals (dotnet build) to rewrite it, or leave it out of the release",
                path);
        }
    }

    private static void FrontMatter(StringBuilder sb, Context c)
    {
        sb.Append("---\n");
        if (c.Metadata.License is { } license)
        {
            sb.Append("license: ").Append(Yaml(license)).Append('\n');
        }

        if (c.Metadata.BaseModel is { } baseModel)
        {
            sb.Append("base_model: ").Append(Yaml(baseModel)).Append('\n');
            // The Hub infers the relation from the files, and GGUF files read as "quantized": that would claim these are
            // the base model's own weights. They were trained (a LoRA merged into the base), so say finetune.
            sb.Append("base_model_relation: finetune\n");
        }

        sb.Append("pipeline_tag: text-generation\n");
        sb.Append("tags:\n");
        foreach (var tag in new[] { "gguf", "mistral", "lora", "llama.cpp", "ollama", "ertas" })
        {
            sb.Append("- ").Append(tag).Append('\n');
        }

        var datasets = c.Lock.Inputs
            .Where(i => i.Role == ModelLock.TrainingDataRole)
            .Select(i => Path.GetFileNameWithoutExtension(i.Path))
            .Distinct(StringComparer.Ordinal)
            .ToList();
        if (datasets.Count > 0)
        {
            sb.Append("datasets:\n");
            foreach (var dataset in datasets)
            {
                sb.Append("- ").Append(Yaml(dataset)).Append('\n');
            }
        }

        sb.Append("---\n\n");
    }

    private static string Provenance(Context c)
    {
        var lockFile = c.Lock;
        var sb = new StringBuilder();
        sb.Append("Fine-tuned");
        if (c.Metadata.BaseModel is { } baseModel)
        {
            sb.Append(" from **").Append(baseModel).Append("**");
        }

        var rank = Setting(lockFile, "LoraRank");
        var alpha = Setting(lockFile, "LoraAlpha");
        if (rank is not null)
        {
            sb.Append(" with a LoRA adapter (rank ").Append(rank).Append(alpha is null ? "" : ", alpha " + alpha).Append(')');
        }

        sb.Append(" by Ertas.Build ").Append(lockFile.EngineVersion).Append(" (SDK ").Append(lockFile.SdkVersion).Append(')');
        if (c.Options.Commit is { Length: > 0 } commit)
        {
            var shortSha = commit.Length > 12 ? commit[..12] : commit;
            sb.Append(", from commit ");
            sb.Append(c.Options.Repository is { Length: > 0 } repository
                ? $"[`{shortSha}`]({ServerUrl(c)}/{repository}/commit/{commit})"
                : $"`{shortSha}`");
        }

        sb.Append(". Train key `").Append(lockFile.TrainKey).Append("`, seed ").Append(lockFile.Seed).Append('.');
        return sb.ToString();
    }

    private static void EvalTable(StringBuilder sb, IReadOnlyList<EvalSummaryLine> evals, IReadOnlyList<ReleaseFile> assets, IReadOnlyList<SplitGguf> splits)
    {
        var released = assets.Select(a => a.Sha256).Concat(splits.Select(s => s.Sha256)).ToHashSet(StringComparer.Ordinal);
        sb.Append("| eval snapshot | scored file | cases | passed | pass rate | means |\n|---|---|---:|---:|---:|---|\n");
        foreach (var e in evals)
        {
            // A snapshot may have been scored on an earlier build: say so rather than let its numbers speak for these bytes.
            var scored = e.File is null ? "" : $"`{e.File}`" + (e.Sha256 is not null && !released.Contains(e.Sha256) ? " (not this release's bytes)" : "");
            var means = string.Join(", ", e.Metrics.Select(m => $"{m.Key} {m.Value}"));
            sb.Append(CultureInfo.InvariantCulture,
                $"| {e.Name} | {scored} | {e.Cases} | {e.Passed} | {e.PassRate * 100:0.#} % | {means} |\n");
        }
    }

    private static void Usage(StringBuilder sb, Context c, IReadOnlyList<ReleaseFile> assets)
    {
        var ggufs = assets.Where(a => a.Kind == ReleaseFileKind.Gguf).Select(a => a.Name)
            .Concat(c.Splits.Select(s => s.Name)).Order(StringComparer.Ordinal).ToList();
        var adapter = assets.FirstOrDefault(a => a.Kind == ReleaseFileKind.AdapterGguf)?.Name;
        var modelfile = assets.FirstOrDefault(a => a.Kind == ReleaseFileKind.Modelfile)?.Name;
        var main = c.ModelfileGguf is { } named && ggufs.Contains(named) ? named : ggufs.FirstOrDefault();
        if (main is null)
        {
            return;
        }

        var split = c.Splits.FirstOrDefault(s => s.Name == main);
        var load = split?.Shards[0] ?? main;

        sb.Append("## Run it\n\n### llama.cpp\n\n```sh\n")
            .Append("llama-cli -m ").Append(load).Append(" -cnv\n")
            .Append("llama-server -m ").Append(load).Append(" --port 8080\n```\n\n");
        if (ggufs.Count > 1)
        {
            sb.Append("Other quantizations: ").Append(string.Join(", ", ggufs.Where(g => g != main).Select(g => $"`{g}`"))).Append(".\n\n");
        }

        if (adapter is not null)
        {
            sb.Append("The LoRA adapter alone, on the base model's GGUF: `llama-cli -m BASE.gguf --lora ").Append(adapter).Append(" -cnv`.\n\n");
        }

        if (modelfile is not null)
        {
            var name = c.Lock.Model.ToLowerInvariant();
            sb.Append("### Ollama\n\n")
                .Append(split is null
                    ? $"Download `{modelfile}` and `{main}` into one folder (the Modelfile reads `./{main}`), then:\n\n"
                    : $"Join the shards into `{main}` first (below) and put it beside `{modelfile}` (which reads `./{main}`), then:\n\n")
                .Append("```sh\n")
                .Append("ollama create ").Append(name).Append(" -f ").Append(modelfile).Append('\n')
                .Append("ollama run ").Append(name).Append("\n```\n\n");
        }

        if (c.Splits.Count > 0)
        {
            var limit = c.Options.MaxAssetBytes;
            sb.Append("### Split GGUFs\n\n");
            foreach (var s in c.Splits)
            {
                sb.Append(CultureInfo.InvariantCulture,
                    $"`{s.Name}` ({Size(s.Bytes)}) is over the largest release asset ({Size(limit)}; GitHub refuses files of 2 GiB or more) and ships as {s.Shards.Count} llama.cpp split shards: {string.Join(", ", s.Shards.Select(x => $"`{x}`"))}.\n");
            }

            sb.Append("\nllama.cpp loads a split model from its first shard with the others beside it (`llama-cli -m ")
                .Append(c.Splits[0].Shards[0]).Append(" -cnv`). Ollama needs one file: join the shards first, with llama.cpp or Ertas.Build,\n\n```sh\n");
            foreach (var s in c.Splits)
            {
                sb.Append("llama-gguf-split --merge ").Append(s.Shards[0]).Append(' ').Append(s.Name).Append('\n');
            }

            foreach (var s in c.Splits)
            {
                sb.Append("ertas gguf merge ").Append(s.Shards[0]).Append(' ').Append(s.Name).Append('\n');
            }

            sb.Append("```\n\nA joined file is the original byte for byte: ")
                .Append(string.Join(", ", c.Splits.Select(s => $"`{s.Name}` has SHA-256 `{s.Sha256}`"))).Append(".\n\n");
        }

        sb.Append("## Verify\n\n```sh\nsha256sum -c SHA256SUMS\n```\n\nAdd `--ignore-missing` when you downloaded only some of the files.\n\n");
    }

    private static void Training(StringBuilder sb, ModelLock lockFile)
    {
        sb.Append("## Training\n\n| setting | value |\n|---|---|\n");
        foreach (var (name, value) in lockFile.Settings)
        {
            sb.Append("| ").Append(name).Append(" | `").Append(value.Replace("|", "\\|", StringComparison.Ordinal)).Append("` |\n");
        }

        sb.Append("\n| input | role | SHA-256 |\n|---|---|---|\n");
        foreach (var input in lockFile.Inputs)
        {
            sb.Append("| `").Append(input.Path).Append("` | ").Append(input.Role).Append(" | `").Append(input.Sha256).Append("` |\n");
        }

        sb.Append("\nEngine ").Append(lockFile.EngineVersion).Append(", SDK ").Append(lockFile.SdkVersion)
            .Append("; the full record is `ertas.lock.json`.\n");
    }

    private static string Link(Context c, string name) =>
        c.Options.Repository is { Length: > 0 } repository
            ? $"[`{name}`]({ServerUrl(c)}/{repository}/releases/download/{Uri.EscapeDataString(c.Tag)}/{name})"
            : $"`{name}`";

    private static string ServerUrl(Context c) => c.Options.ServerUrl.TrimEnd('/');

    private static string? Setting(ModelLock lockFile, string name) =>
        lockFile.Settings.FirstOrDefault(s => s.Key == name).Value is { Length: > 0 } value ? value : null;

    private static string Size(long bytes) => bytes switch
    {
        >= 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e9:0.00} GB"),
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:0.0} MB"),
        >= 1_000 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e3:0.0} kB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };

    private static string? OptionalString(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    /// <summary>A YAML double-quoted scalar: JSON's string syntax is a subset of it, so any text is safe inside.</summary>
    private static string Yaml(string value) => JsonSerializer.Serialize(value, YamlStrings);
}

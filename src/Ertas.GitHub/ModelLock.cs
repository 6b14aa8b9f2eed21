using System.Text.Json;
using Ertas.Core;
using NuGet.Versioning;

namespace Ertas.GitHub;

/// <summary>An input the build trained from, as the lock records it.</summary>
/// <param name="Role">TrainingData, BaseModel, ...</param>
/// <param name="Path">Relative to the project folder, with '/' separators.</param>
public sealed record LockInput(string Role, string Path, string Sha256);

/// <summary>A file the build wrote, as the lock records it.</summary>
/// <param name="Kind">gguf, adapter-gguf, modelfile, or empty.</param>
/// <param name="Path">Relative to the lock's folder, with '/' separators.</param>
public sealed record LockOutput(string Kind, string Path, long Bytes, string Sha256)
{
    public const string GgufKind = "gguf";
    public const string AdapterGgufKind = "adapter-gguf";
    public const string ModelfileKind = "modelfile";

    /// <summary>The file name, which is also its release asset name.</summary>
    public string Name => System.IO.Path.GetFileName(Path);
}

/// <summary>
/// <c>ertas.lock.json</c> as the SDK's WriteErtasLock task writes it: what a build made, from what, with which
/// settings. A release is made from it, and two releases of one version are compared through it (the train key).
/// </summary>
/// <param name="FullPath">The lock file itself.</param>
/// <param name="Directory">Its folder, the base of every output path.</param>
/// <param name="Version">As written, e.g. <c>1.2.0-rc.1</c>.</param>
/// <param name="Seed">As a string: the SDK writes a number when the setting is one and the text otherwise.</param>
/// <param name="Settings">Name to normalized value, in the SDK's order.</param>
public sealed record ModelLock(
    string FullPath,
    string Directory,
    string Model,
    string Version,
    SemanticVersion SemanticVersion,
    string TrainKey,
    string EngineVersion,
    string SdkVersion,
    string Seed,
    IReadOnlyList<KeyValuePair<string, string>> Settings,
    IReadOnlyList<LockInput> Inputs,
    IReadOnlyList<LockOutput> Outputs)
{
    public const string FileName = "ertas.lock.json";
    public const string TrainingDataRole = "TrainingData";

    /// <summary>Reads and checks <paramref name="path"/>; every problem is an ErtasException naming the file.</summary>
    public static ModelLock Read(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full))
        {
            throw new ErtasException(ErrorCode.FileNotFound,
                $"the model lock '{full}' does not exist; build the model project first (dotnet build) or pass the lock the build wrote (bin/<Configuration>/{FileName})",
                full);
        }

        string text;
        try
        {
            text = File.ReadAllText(full);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ErtasException(ErrorCode.IoFailure, $"cannot read the model lock: {ex.Message}", full);
        }

        return Parse(text, full);
    }

    /// <summary>Parses lock JSON; <paramref name="fullPath"/> names it in errors and anchors the output paths.</summary>
    internal static ModelLock Parse(string json, string fullPath)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            throw Invalid(fullPath, $"is not valid JSON ({ex.Message})", (int)(ex.LineNumber ?? -1) + 1);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Invalid(fullPath, "is not a JSON object");
            }

            var directory = System.IO.Path.GetDirectoryName(fullPath)!;
            var model = RequiredString(root, "model", fullPath);
            var version = RequiredString(root, "version", fullPath);
            var trainKey = RequiredString(root, "trainKey", fullPath);
            var engineVersion = RequiredString(root, "engineVersion", fullPath);
            var sdkVersion = RequiredString(root, "sdkVersion", fullPath);
            var seed = Scalar(Required(root, "seed", null, fullPath));
            if (!SemanticVersion.TryParse(version, out var semantic))
            {
                throw Invalid(fullPath, $"has version '{version}', which is not a SemVer 2.0 version (e.g. 1.2.0 or 1.2.0-rc.1); fix ModelVersion and rebuild");
            }

            var settings = Required(root, "settings", JsonValueKind.Object, fullPath).EnumerateObject()
                .Select(p => new KeyValuePair<string, string>(p.Name, p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText()))
                .ToList();
            var inputs = Required(root, "inputs", JsonValueKind.Array, fullPath).EnumerateArray()
                .Select((e, i) => new LockInput(
                    RequiredString(e, "role", fullPath, $"inputs[{i}]."),
                    RequiredString(e, "path", fullPath, $"inputs[{i}]."),
                    RequiredString(e, "sha256", fullPath, $"inputs[{i}].")))
                .ToList();
            var outputs = Required(root, "outputs", JsonValueKind.Array, fullPath).EnumerateArray()
                .Select((e, i) => ReadOutput(e, i, directory, fullPath))
                .ToList();

            return new ModelLock(
                fullPath,
                directory,
                model,
                version,
                semantic,
                trainKey,
                engineVersion,
                sdkVersion,
                seed,
                settings,
                inputs,
                outputs);
        }
    }

    /// <summary>The output's place on disk.</summary>
    public string PathOf(LockOutput output) => System.IO.Path.GetFullPath(System.IO.Path.Combine(Directory, output.Path));

    private static LockOutput ReadOutput(JsonElement e, int index, string directory, string fullPath)
    {
        var at = $"outputs[{index}].";
        var path = RequiredString(e, "path", fullPath, at);
        // A lock is an input from the build's folder; one edited to point at ../../.ssh/id_rsa must not make a release
        // upload that file.
        var resolved = System.IO.Path.GetFullPath(System.IO.Path.Combine(directory, path));
        var inside = System.IO.Path.GetRelativePath(directory, resolved);
        if (System.IO.Path.IsPathRooted(path) || inside == ".." || inside.StartsWith("../", StringComparison.Ordinal)
            || inside.StartsWith("..\\", StringComparison.Ordinal) || System.IO.Path.IsPathRooted(inside))
        {
            throw Invalid(fullPath, $"has output '{path}', which is outside the lock's folder; outputs are paths relative to the lock, below it");
        }

        var bytesElement = Required(e, "bytes", JsonValueKind.Number, fullPath, at);
        if (!bytesElement.TryGetInt64(out var bytes) || bytes < 0)
        {
            throw Invalid(fullPath, $"has {at}bytes {bytesElement.GetRawText()}, which is not a byte count");
        }

        var kind = e.TryGetProperty("kind", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString()! : "";
        return new LockOutput(kind, path, bytes, RequiredString(e, "sha256", fullPath, at).ToLowerInvariant());
    }

    private static JsonElement Required(JsonElement obj, string name, JsonValueKind? kind, string fullPath, string at = "")
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            throw Invalid(fullPath, $"has no '{at}{name}'; rebuild the model project to rewrite it");
        }

        if (kind is { } expected && value.ValueKind != expected)
        {
            throw Invalid(fullPath, $"has '{at}{name}' as {value.ValueKind.ToString().ToLowerInvariant()}, expected {expected.ToString().ToLowerInvariant()}; rebuild the model project to rewrite it");
        }

        return value;
    }

    private static string RequiredString(JsonElement obj, string name, string fullPath, string at = "")
    {
        var value = Scalar(Required(obj, name, null, fullPath, at));
        return value.Length > 0 ? value : throw Invalid(fullPath, $"has an empty '{at}{name}'; rebuild the model project to rewrite it");
    }

    private static string Scalar(JsonElement value) =>
        value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText();

    private static ErtasException Invalid(string fullPath, string what, int line = 0) =>
        new(ErrorCode.LockInvalid, $"the model lock {System.IO.Path.GetFileName(fullPath)} {what}", fullPath, Math.Max(line, 0));
}

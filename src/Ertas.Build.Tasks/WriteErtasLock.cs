using System.Text;
using System.Text.Json;
using Ertas.Core;
using Microsoft.Build.Framework;

namespace Ertas.Build.Tasks;

/// <summary>
/// Writes <c>ertas.lock.json</c>: what was built from what. SHA-256 of every input and output, the engine and SDK
/// versions, the seed and every setting. Paths are relative (to the project for inputs, to the lock for outputs) and
/// nothing time- or machine-dependent is recorded, so two clean builds give the same bytes. Rewritten only when its
/// content changes.
/// </summary>
public sealed class WriteErtasLock : ErtasTask
{
    [Required] public string LockFile { get; set; } = "";
    [Required] public string ProjectDirectory { get; set; } = "";
    [Required] public string HashCacheFile { get; set; } = "";
    [Required] public string ModelName { get; set; } = "";
    [Required] public string ModelVersion { get; set; } = "";
    [Required] public string EngineVersion { get; set; } = "";
    [Required] public string SdkVersion { get; set; } = "";
    [Required] public string TrainKey { get; set; } = "";

    /// <summary>Normalized training settings (metadata Value), in the SDK's order.</summary>
    public ITaskItem[] Settings { get; set; } = [];

    /// <summary>Input files with Role and Sha256 metadata (from ComputeErtasKey).</summary>
    public ITaskItem[] Inputs { get; set; } = [];

    /// <summary>Output files with an optional Kind metadata (gguf, adapter-gguf, modelfile).</summary>
    public ITaskItem[] Outputs { get; set; } = [];

    protected override void Run(CancellationToken cancellationToken)
    {
        var cache = FileHashCache.Open(HashCacheFile);
        var lockDirectory = Path.GetDirectoryName(Path.GetFullPath(LockFile))!;
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteNumber("lockVersion", 1);
            json.WriteString("model", ModelName);
            json.WriteString("version", ModelVersion);
            json.WriteString("engineVersion", EngineVersion);
            json.WriteString("sdkVersion", SdkVersion);
            var seed = Settings.FirstOrDefault(s => s.ItemSpec == "Seed")?.GetMetadata("Value") ?? "";
            if (ulong.TryParse(seed, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seedNumber))
                json.WriteNumber("seed", seedNumber);
            else
                json.WriteString("seed", seed);
            json.WriteString("trainKey", TrainKey);
            json.WriteStartObject("settings");
            foreach (var setting in Settings)
                json.WriteString(setting.ItemSpec, setting.GetMetadata("Value"));
            json.WriteEndObject();
            json.WriteStartArray("inputs");
            foreach (var input in Inputs)
            {
                json.WriteStartObject();
                json.WriteString("role", input.GetMetadata("Role"));
                json.WriteString("path", Relative(ProjectDirectory, input.GetMetadata("FullPath")));
                json.WriteString("sha256", input.GetMetadata("Sha256"));
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteStartArray("outputs");
            foreach (var output in Outputs.OrderBy(o => Path.GetFileName(o.ItemSpec), StringComparer.Ordinal))
            {
                var path = output.GetMetadata("FullPath");
                json.WriteStartObject();
                json.WriteString("kind", output.GetMetadata("Kind"));
                json.WriteString("path", Relative(lockDirectory, path));
                json.WriteNumber("bytes", new FileInfo(path).Length);
                json.WriteString("sha256", cache.Sha256(path));
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        cache.Save();
        AtomicFile.WriteIfChanged(LockFile, buffer.ToArray());
    }

    private static string Relative(string from, string path) => Path.GetRelativePath(from, path).Replace('\\', '/');
}

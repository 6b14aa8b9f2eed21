using System.Security.Cryptography;
using System.Text;
using Ertas.Core;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Ertas.Build.Tasks;

/// <summary>
/// A stage's content key: SHA-256 over its settings and the contents of its input files. The key text is written to
/// <see cref="KeyFile"/> only when it differs from what is there, so the file's timestamp moves exactly when the
/// stage's real inputs change and the stage target's Inputs/Outputs check does the rest. Touching a file, renaming
/// it, or reformatting the project without changing a value therefore reruns nothing.
/// </summary>
public sealed class ComputeErtasKey : ErtasTask
{
    [Required] public string KeyFile { get; set; } = "";
    [Required] public string HashCacheFile { get; set; } = "";

    /// <summary>Name/Value pairs (metadata Value), hashed in the given order.</summary>
    public ITaskItem[] Settings { get; set; } = [];

    /// <summary>Files hashed in the given order; metadata Role groups them and Name (optional) is hashed too, for
    /// folders where names matter (a model folder), but never the path.</summary>
    public ITaskItem[] Files { get; set; } = [];

    [Output] public string Key { get; private set; } = "";

    /// <summary><see cref="Files"/> with a Sha256 metadata added, for the lock file.</summary>
    [Output] public ITaskItem[] HashedFiles { get; private set; } = [];

    /// <summary>
    /// Roles in their first-seen order; inside a role, files with a Name sorted by it (a folder's glob order is the
    /// file system's), files without one in the given order (dataset order is meaningful).
    /// </summary>
    internal static IEnumerable<ITaskItem> CanonicalOrder(IEnumerable<ITaskItem> files) =>
        files.Select((file, index) => (file, index))
            .GroupBy(f => f.file.GetMetadata("Role"), StringComparer.Ordinal)
            .SelectMany(role => role
                .OrderBy(f => f.file.GetMetadata("Name"), StringComparer.Ordinal)
                .ThenBy(f => f.index))
            .Select(f => f.file);

    protected override void Run(CancellationToken cancellationToken)
    {
        var cache = FileHashCache.Open(HashCacheFile);
        var text = new StringBuilder("ertas-key 1\n");
        foreach (var setting in Settings)
            text.Append("setting ").Append(setting.ItemSpec).Append('=').Append(setting.GetMetadata("Value")).Append('\n');
        var hashed = new List<ITaskItem>();
        foreach (var file in CanonicalOrder(Files))
        {
            var sha = cache.Sha256(file.GetMetadata("FullPath"), cancellationToken);
            text.Append("file ").Append(file.GetMetadata("Role")).Append(' ').Append(file.GetMetadata("Name")).Append(' ').Append(sha).Append('\n');
            var item = new TaskItem(file);
            item.SetMetadata("Sha256", sha);
            hashed.Add(item);
        }
        cache.Save();
        var content = text.ToString();
        Key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(content)));
        HashedFiles = hashed.ToArray();
        content += "key " + Key + "\n";
        if (AtomicFile.WriteAllTextIfChanged(KeyFile, content))
            Log.LogMessage(MessageImportance.Low, $"ertas: inputs changed, new key {Key[..12]} in {KeyFile}");
    }
}

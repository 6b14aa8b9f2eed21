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
public sealed class ComputeErtasKey : Microsoft.Build.Utilities.Task, ICancelableTask
{
    private readonly CancellationTokenSource _cancel = new();

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

    public void Cancel() => _cancel.Cancel();

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

    public override bool Execute()
    {
        try
        {
            var cache = FileHashCache.Open(HashCacheFile);
            var text = new StringBuilder("ertas-key 1\n");
            foreach (var setting in Settings)
                text.Append("setting ").Append(setting.ItemSpec).Append('=').Append(setting.GetMetadata("Value")).Append('\n');
            var hashed = new List<ITaskItem>();
            foreach (var file in CanonicalOrder(Files))
            {
                var sha = cache.Sha256(file.GetMetadata("FullPath"), _cancel.Token);
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
            if (!File.Exists(KeyFile) || File.ReadAllText(KeyFile) != content)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(KeyFile))!);
                AtomicFile.WriteAllText(KeyFile, content);
                Log.LogMessage(MessageImportance.Low, $"ertas: inputs changed, new key {Key[..12]} in {KeyFile}");
            }
        }
        catch (ErtasException e)
        {
            Log.LogError(null, e.CodeText, null, e.File ?? BuildEngine.ProjectFileOfTaskNode, e.Line, e.Column, 0, 0, e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.LogError(null, $"ERTAS{(int)ErrorCode.BuildFileAccessFailed:D4}", null, BuildEngine.ProjectFileOfTaskNode, 0, 0, 0, 0, e.Message);
        }
        catch (OperationCanceledException)
        {
            Log.LogError(null, "ERTAS1008", null, BuildEngine.ProjectFileOfTaskNode, 0, 0, 0, 0, "cancelled");
        }
        return !Log.HasLoggedErrors;
    }
}

using Ertas.Core;
using Microsoft.Build.Framework;

namespace Ertas.Build.Tasks;

/// <summary>
/// Keeps the list of what this project writes to its output folder (<see cref="ListFile"/>, paths relative to the
/// project so a copied or moved project never reaches back into its old folder) and deletes what the list no longer
/// holds: outputs of an earlier spec (a dropped quantization, an old version or name) and the temporary files a killed
/// engine may have left beside any output (<c>.NAME.PID.GUID.tmp</c>, written by <c>AtomicFile</c>, possibly gigabytes).
/// Only listed names are touched, so other projects' files in a shared output folder survive. With
/// <see cref="Clean"/> every listed output goes, and the list with it.
/// </summary>
public sealed class RemoveErtasOutputs : ErtasTask
{
    [Required] public string ListFile { get; set; } = "";
    [Required] public string ProjectDirectory { get; set; } = "";

    /// <summary>What this build writes (kept, and listed for the next build).</summary>
    public ITaskItem[] CurrentOutputs { get; set; } = [];

    public bool Clean { get; set; }

    protected override void Run(CancellationToken cancellationToken)
    {
        var listed = File.Exists(ListFile)
            ? File.ReadAllLines(ListFile).Where(l => l.Length > 0).Select(l => Path.GetFullPath(l, ProjectDirectory)).ToList()
            : [];
        var current = CurrentOutputs.Select(o => o.GetMetadata("FullPath")).ToList();
        var keep = Clean ? [] : current.ToHashSet(PathComparer);
        foreach (var path in listed.Concat(current).Distinct(PathComparer))
        {
            if (!keep.Contains(path)) Delete(path);
            foreach (var temporary in AtomicFile.LeftoverTemporaries(path))
                Delete(temporary);
        }
        if (Clean)
        {
            if (File.Exists(ListFile)) File.Delete(ListFile);
        }
        else
        {
            AtomicFile.WriteAllTextIfChanged(ListFile,
                string.Concat(current.Select(p => Path.GetRelativePath(ProjectDirectory, p).Replace('\\', '/') + "\n")));
        }
    }

    /// <summary>Windows and macOS file systems ignore case by default: bin/release and bin/Release are one folder there.</summary>
    private static StringComparer PathComparer => OperatingSystem.IsLinux() ? StringComparer.Ordinal : StringComparer.OrdinalIgnoreCase;

    private void Delete(string path)
    {
        if (!File.Exists(path)) return;
        File.Delete(path);
        Log.LogMessage(MessageImportance.Normal, $"ertas: removed {path}");
    }
}

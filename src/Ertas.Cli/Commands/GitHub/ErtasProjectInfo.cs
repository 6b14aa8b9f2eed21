using System.Text.Json;
using Ertas.Core;

namespace Ertas.Cli.Commands;

/// <summary>
/// What the action needs to know of an .ertasproj before and after building it, asked of MSBuild itself
/// (<c>dotnet msbuild -getProperty -getItem</c>), so defaults and Directory.Build.props count as they do in the build.
/// </summary>
internal sealed record ErtasProjectInfo(
    string ProjectPath,
    string ModelName,
    string ModelVersion,
    string OutputDirectory,
    string IntermediateDirectory,
    string SnapshotDirectory,
    IReadOnlyList<string> InputFiles,
    bool HasEvals)
{
    public string ProjectDirectory => Path.GetDirectoryName(ProjectPath)!;
    public string LockPath => Path.Combine(OutputDirectory, "ertas.lock.json");
    public string ReportPath => Path.Combine(IntermediateDirectory, "evals", "report.md");
    public string ReportHtmlPath => Path.Combine(IntermediateDirectory, "evals", "report.html");
    public string VerdictPath => Path.Combine(IntermediateDirectory, "evals", "verdict.json");

    private static readonly string[] Properties =
        ["ModelName", "ModelVersion", "ErtasOutputDirectory", "OutDir", "ErtasIntermediateDirectory", "EvalSnapshotDirectory", "BaseModel"];

    private static readonly string[] InputItems = ["TrainingData", "EvalData", "EvalSuite"];

    public static ErtasProjectInfo Query(string project, string configuration, CancellationToken ct)
    {
        var full = Path.GetFullPath(project);
        var arguments = new List<string> { "msbuild", full, "-nologo", $"-p:Configuration={configuration}" };
        arguments.AddRange(Properties.Select(p => "-getProperty:" + p));
        arguments.AddRange(InputItems.Select(i => "-getItem:" + i));
        var json = ChildProcess.Capture("dotnet", arguments, Path.GetDirectoryName(full)!, ct, out var error)
            ?? throw new ErtasException(ErrorCode.ActionProjectNotFound,
                $"MSBuild could not evaluate the project: {Last(error)}", full);
        try
        {
            using var document = JsonDocument.Parse(json);
            var properties = document.RootElement.GetProperty("Properties");
            string Property(string name) => properties.TryGetProperty(name, out var v) ? v.GetString() ?? "" : "";
            var directory = Path.GetDirectoryName(full)!;
            string Directory(string value) => Path.GetFullPath(value.Length == 0 ? "." : value, directory);

            var inputs = new List<string>();
            var hasEvals = false;
            if (document.RootElement.TryGetProperty("Items", out var items))
            {
                foreach (var name in InputItems)
                {
                    if (!items.TryGetProperty(name, out var list))
                        continue;
                    foreach (var item in list.EnumerateArray())
                    {
                        inputs.Add(item.TryGetProperty("FullPath", out var path) ? path.GetString()! : Path.GetFullPath(item.GetProperty("Identity").GetString()!, directory));
                        hasEvals |= name == "EvalSuite";
                    }
                }
            }
            // A base model in a folder of the repository (a small checkpoint committed with the project) is an input too.
            if (Property("BaseModel") is { Length: > 0 } baseModel && System.IO.Directory.Exists(Path.GetFullPath(baseModel, directory)))
                inputs.Add(Path.GetFullPath(baseModel, directory));

            var output = Property("ErtasOutputDirectory") is { Length: > 0 } configured ? configured : Property("OutDir");
            var snapshots = Property("EvalSnapshotDirectory") is { Length: > 0 } s ? s : "evals";
            return new ErtasProjectInfo(
                full,
                Property("ModelName") is { Length: > 0 } model ? model : Path.GetFileNameWithoutExtension(full),
                Property("ModelVersion") is { Length: > 0 } version ? version : "1.0.0",
                Directory(output),
                Directory(Property("ErtasIntermediateDirectory") is { Length: > 0 } obj ? obj : Path.Combine("obj", "ertas")),
                Directory(snapshots),
                inputs,
                hasEvals);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new ErtasException(ErrorCode.ActionProjectNotFound, $"MSBuild's answer about the project was not the JSON expected: {e.Message}", full);
        }
    }

    private static string Last(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "no output";
}

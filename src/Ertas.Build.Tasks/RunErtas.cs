using System.Text.RegularExpressions;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Ertas.Build.Tasks;

/// <summary>
/// Runs one heavy stage as <c>dotnet ertas.dll ...</c> in a child process (libtorch and hours of training stay out of
/// the MSBuild node). stdout and stderr lines stream into the build log; <c>path(line,col): error ERTASnnnn: ...</c>
/// lines become real MSBuild errors and warnings with their file, line and code. ToolTask kills the child's whole
/// process tree on Cancel (Ctrl+C), and the engine writes every output atomically, so nothing partial remains.
/// </summary>
public sealed partial class RunErtas : ToolTask
{
    /// <summary>The assembled engine folder holding ertas.dll.</summary>
    [Required] public string EngineDirectory { get; set; } = "";

    /// <summary>The engine's command line, one argument per item (quoted here as needed).</summary>
    [Required] public ITaskItem[] Arguments { get; set; } = [];

    /// <summary>The stage's name, for the failure message.</summary>
    public string Stage { get; set; } = "ertas";

    public override bool Execute()
    {
        // One high-importance line per heavy stage that runs: users see what the build is doing, tests see what ran.
        Log.LogMessage(MessageImportance.High, $"ertas stage: {Stage}");
        return base.Execute();
    }

    protected override string ToolName => OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet";

    protected override MessageImportance StandardErrorLoggingImportance => MessageImportance.High;
    protected override MessageImportance StandardOutputLoggingImportance => MessageImportance.Normal;

    /// <summary>The dotnet host that runs this build (the SDK sets DOTNET_HOST_PATH for tasks), else dotnet on PATH.</summary>
    protected override string GenerateFullPathToTool()
    {
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        return !string.IsNullOrEmpty(host) && File.Exists(host) ? host : ToolName;
    }

    protected override string GenerateCommandLineCommands()
    {
        var builder = new CommandLineBuilder(quoteHyphensOnCommandLine: false, useNewLineSeparator: false);
        builder.AppendFileNameIfNotNull(Path.Combine(EngineDirectory, "ertas.dll"));
        foreach (var argument in Arguments)
            builder.AppendTextUnquoted(" " + Quote(argument.ItemSpec));
        return builder.ToString();
    }

    protected override bool ValidateParameters()
    {
        if (!File.Exists(Path.Combine(EngineDirectory, "ertas.dll")))
        {
            Log.LogError(null, "ERTAS8003", null, BuildEngine.ProjectFileOfTaskNode, 0, 0, 0, 0,
                $"the ertas engine is missing from '{EngineDirectory}' (did restore run?)");
            return false;
        }
        return true;
    }

    protected override void LogEventsFromTextOutput(string singleLine, MessageImportance messageImportance)
    {
        var match = Diagnostic().Match(singleLine);
        if (!match.Success)
        {
            Log.LogMessage(messageImportance, singleLine);
            return;
        }
        var file = match.Groups["file"].Value;
        if (file == "ertas")
            file = BuildEngine.ProjectFileOfTaskNode; // engine errors with no file are the stage's: point at the project
        int.TryParse(match.Groups["line"].Value, out var line);
        int.TryParse(match.Groups["col"].Value, out var column);
        if (match.Groups["severity"].Value == "error")
            Log.LogError(null, match.Groups["code"].Value, null, file, line, column, 0, 0, match.Groups["message"].Value);
        else
            Log.LogWarning(null, match.Groups["code"].Value, null, file, line, column, 0, 0, match.Groups["message"].Value);
    }

    protected override bool HandleTaskExecutionErrors()
    {
        if (!Log.HasLoggedErrors)
            Log.LogError(null, "ERTAS8003", null, BuildEngine.ProjectFileOfTaskNode, 0, 0, 0, 0,
                $"the {Stage} stage failed: the engine exited with code {ExitCode}");
        return false;
    }

    /// <summary>Quotes one argument the way .NET splits a command line (backslashes are literal unless they precede a quote).</summary>
    internal static string Quote(string argument)
    {
        if (argument.Length > 0 && !argument.Any(c => char.IsWhiteSpace(c) || c == '"'))
            return argument;
        var quoted = new System.Text.StringBuilder("\"");
        var backslashes = 0;
        foreach (var c in argument)
        {
            if (c == '\\') { backslashes++; continue; }
            quoted.Append('\\', c == '"' ? backslashes * 2 + 1 : backslashes).Append(c);
            backslashes = 0;
        }
        return quoted.Append('\\', backslashes * 2).Append('"').ToString();
    }

    [GeneratedRegex(@"^(?<file>.+?)(\((?<line>\d+)(,(?<col>\d+))?\))?: (?<severity>error|warning) (?<code>ERTAS\d{4}): (?<message>.*)$")]
    private static partial Regex Diagnostic();
}

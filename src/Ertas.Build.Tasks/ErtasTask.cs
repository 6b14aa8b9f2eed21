using Ertas.Core;
using Microsoft.Build.Framework;

namespace Ertas.Build.Tasks;

/// <summary>
/// The SDK's in-process tasks. Whatever goes wrong becomes one ERTAS error, never an MSB4018 stack trace: an
/// <see cref="ErtasException"/> at its own file and line, a file the build cannot read or write as ERTAS8004, a
/// cancelled build (Ctrl+C) as ERTAS1008.
/// </summary>
public abstract class ErtasTask : Microsoft.Build.Utilities.Task, ICancelableTask
{
    private readonly CancellationTokenSource _cancel = new();

    public void Cancel() => _cancel.Cancel();

    public sealed override bool Execute()
    {
        var projectFile = BuildEngine.ProjectFileOfTaskNode;
        try
        {
            Run(_cancel.Token);
        }
        catch (ErtasException e)
        {
            Log.LogError(null, e.CodeText, null, e.File ?? projectFile, e.Line, e.Column, 0, 0, e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.LogError(null, Code(ErrorCode.BuildFileAccessFailed), null, projectFile, 0, 0, 0, 0, e.Message);
        }
        catch (OperationCanceledException)
        {
            Log.LogError(null, Code(ErrorCode.Cancelled), null, projectFile, 0, 0, 0, 0, "cancelled");
        }
        return !Log.HasLoggedErrors;
    }

    /// <summary>The task's work; it logs its own diagnostics and throws for anything that stops it.</summary>
    protected abstract void Run(CancellationToken cancellationToken);

    private static string Code(ErrorCode code) => $"ERTAS{(int)code:D4}";
}

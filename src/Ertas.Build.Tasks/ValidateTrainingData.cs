using Ertas.Core;
using Ertas.Data;
using Ertas.Mistral.Tokenization;
using Microsoft.Build.Framework;

namespace Ertas.Build.Tasks;

/// <summary>
/// The validate stage, in-process (pure C#, no libtorch in the MSBuild node): every dataset problem becomes an MSBuild
/// error or warning at its file and line with its ERTAS code, and nothing is trained while any error remains.
/// With the base model's tokenizer it also checks lengths against SequenceLength.
/// </summary>
public sealed class ValidateTrainingData : Microsoft.Build.Utilities.Task, ICancelableTask
{
    private readonly CancellationTokenSource _cancel = new();

    [Required] public ITaskItem[] DataFiles { get; set; } = [];
    [Required] public string ChatTemplate { get; set; } = "";
    public int SequenceLength { get; set; } = 2048;

    /// <summary>The base model's tokenizer.model; when absent the length check is left to <c>ertas train</c>.</summary>
    public string TokenizerFile { get; set; } = "";

    /// <summary>How many warnings the data gave (the SDK remembers only a pass without any, so they are not lost).</summary>
    [Output] public int WarningCount { get; private set; }

    public void Cancel() => _cancel.Cancel();

    public override bool Execute()
    {
        try
        {
            var tokenizer = TokenizerFile.Length > 0 && File.Exists(TokenizerFile) ? MistralTokenizer.Load(TokenizerFile) : null;
            var options = new PreparationOptions { TemplateName = ChatTemplate, SequenceLength = SequenceLength };
            var report = DatasetValidator.Validate(DataFiles.Select(f => f.GetMetadata("FullPath")).ToList(), tokenizer, options, _cancel.Token);
            foreach (var d in report.Diagnostics)
            {
                if (d.Severity == DiagnosticSeverity.Error)
                    Log.LogError(null, d.CodeText, null, d.File, d.Line, d.Column, 0, 0, d.Message);
                else
                {
                    Log.LogWarning(null, d.CodeText, null, d.File, d.Line, d.Column, 0, 0, d.Message);
                    WarningCount++;
                }
            }
            if (!report.HasErrors)
                Log.LogMessage(MessageImportance.Normal, $"ertas: {report.Examples.Count} examples in {DataFiles.Length} file(s) are valid");
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

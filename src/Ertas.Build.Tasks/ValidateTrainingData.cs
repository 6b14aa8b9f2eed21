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
public sealed class ValidateTrainingData : ErtasTask
{
    [Required] public ITaskItem[] DataFiles { get; set; } = [];
    [Required] public string ChatTemplate { get; set; } = "";
    public int SequenceLength { get; set; } = 2048;

    /// <summary>The base model's tokenizer.model; when absent the length check is left to <c>ertas train</c>.</summary>
    public string TokenizerFile { get; set; } = "";

    /// <summary>How many warnings the data gave (the SDK remembers only a pass without any, so they are not lost).</summary>
    [Output] public int WarningCount { get; private set; }

    protected override void Run(CancellationToken cancellationToken)
    {
        var tokenizer = TokenizerFile.Length > 0 && File.Exists(TokenizerFile) ? MistralTokenizer.Load(TokenizerFile) : null;
        var options = new PreparationOptions { TemplateName = ChatTemplate, SequenceLength = SequenceLength };
        var report = DatasetValidator.Validate(DataFiles.Select(f => f.GetMetadata("FullPath")).ToList(), tokenizer, options, cancellationToken);
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
}

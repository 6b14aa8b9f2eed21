using System.Security.Cryptography;
using System.Text;
using Ertas.Core;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Data;

/// <summary>
/// Checks dataset files and reports every problem at once: structure (UTF-8, JSON, format, fields, roles, turn
/// order), exact duplicates across all files and, when given a tokenizer, examples longer than the sequence length.
/// Needs no libtorch, so an MSBuild node or the CLI can run it before any training starts.
/// </summary>
public static class DatasetValidator
{
    /// <summary>
    /// Validates <paramref name="dataFiles"/>. Without a <paramref name="tokenizer"/> the length check is skipped
    /// and <see cref="ValidationReport.Encoded"/> is null.
    /// </summary>
    public static ValidationReport Validate(IReadOnlyList<string> dataFiles, MistralTokenizer? tokenizer, PreparationOptions options,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataFiles);
        var diagnostics = new List<DatasetDiagnostic>();
        var sources = new List<(string File, byte[] Content)>();
        foreach (var file in dataFiles)
        {
            var content = TryReadFile(file, diagnostics);
            if (content is not null)
                sources.Add((file, content));
        }
        return Validate(sources, tokenizer, options, diagnostics, cancellationToken);
    }

    /// <summary>Reads a data file, or reports ERTAS6014 and returns null.</summary>
    internal static byte[]? TryReadFile(string file, List<DatasetDiagnostic> diagnostics)
    {
        try
        {
            return File.ReadAllBytes(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            var why = e is FileNotFoundException or DirectoryNotFoundException ? "does not exist" : $"cannot be read: {e.Message}";
            diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.DatasetFileUnreadable, file, 0, 0, $"the data file {why}"));
            return null;
        }
    }

    internal static ValidationReport Validate(IReadOnlyList<(string File, byte[] Content)> sources, MistralTokenizer? tokenizer,
        PreparationOptions options, List<DatasetDiagnostic> diagnostics, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var fileOrder = new Dictionary<string, int>(StringComparer.Ordinal);
        var examples = new List<DatasetExample>();
        foreach (var (file, content) in sources)
        {
            fileOrder.TryAdd(file, fileOrder.Count);
            examples.AddRange(JsonlDatasetReader.Read(content, file, options.Format, diagnostics, cancellationToken));
        }

        examples = RemoveDuplicates(examples, options.DuplicatePolicy, diagnostics);

        List<EncodedExample>? encoded = null;
        if (tokenizer is not null)
        {
            var template = ChatTemplates.Get(options.TemplateName, tokenizer);
            encoded = new List<EncodedExample>(examples.Count);
            var kept = new List<DatasetExample>(examples.Count);
            foreach (var example in examples)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var result = EncodeWithinLength(example, tokenizer, template, options, diagnostics);
                if (result is null)
                    continue;
                encoded.Add(result);
                kept.Add(example);
            }
            examples = kept;
        }

        if (sources.Count > 0 && examples.Count == 0 && !diagnostics.Any(d => d.Severity == DiagnosticSeverity.Error))
            diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.DatasetNoExamples, sources[0].File, 0, 0,
                "no example is left to train on"));
        if (sources.Count == 0 && diagnostics.Count == 0)
            throw new ErtasException(ErrorCode.DatasetNoExamples, "no data files were given");

        var ordered = diagnostics
            .OrderBy(d => fileOrder.GetValueOrDefault(d.File, int.MaxValue))
            .ThenBy(d => d.Line)
            .ThenBy(d => d.Column)
            .ToList();
        return new ValidationReport(ordered, examples, encoded);
    }

    /// <summary>
    /// Exact duplicates: the same turns (role and content, after format mapping) or the same completion text, so a
    /// chat line and an Alpaca line that say the same thing are duplicates too. The first occurrence always stays.
    /// </summary>
    private static List<DatasetExample> RemoveDuplicates(List<DatasetExample> examples, DuplicatePolicy policy, List<DatasetDiagnostic> diagnostics)
    {
        var firstSeen = new Dictionary<string, DatasetExample>(StringComparer.Ordinal);
        var kept = new List<DatasetExample>(examples.Count);
        foreach (var example in examples)
        {
            var key = ContentKey(example);
            if (!firstSeen.TryGetValue(key, out var first))
            {
                firstSeen.Add(key, example);
                kept.Add(example);
                continue;
            }
            var where = first.File == example.File ? $"line {first.Line}" : $"{first.File} line {first.Line}";
            var (severity, consequence) = policy switch
            {
                DuplicatePolicy.Warn => (DiagnosticSeverity.Warning, "kept (DuplicatePolicy Warn); set it to Drop or Error to change that"),
                DuplicatePolicy.Drop => (DiagnosticSeverity.Warning, "left out (DuplicatePolicy Drop)"),
                _ => (DiagnosticSeverity.Error, "remove it, or set DuplicatePolicy to Warn or Drop"),
            };
            diagnostics.Add(new DatasetDiagnostic(severity, ErrorCode.DatasetDuplicateExample, example.File, example.Line, 0,
                $"this example duplicates the one at {where}; {consequence}"));
            if (policy == DuplicatePolicy.Warn)
                kept.Add(example);
        }
        return kept;
    }

    private static string ContentKey(DatasetExample example)
    {
        var canonical = new StringBuilder();
        if (example.Text is not null)
            canonical.Append("text\0").Append(example.Text);
        foreach (var message in example.Messages)
            canonical.Append(message.Role).Append('\0').Append(message.Content).Append('\0');
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(canonical.ToString())));
    }

    private static EncodedExample? EncodeWithinLength(DatasetExample example, MistralTokenizer tokenizer, IChatTemplate template,
        PreparationOptions options, List<DatasetDiagnostic> diagnostics)
    {
        EncodedExample encoded;
        try
        {
            encoded = ExampleEncoder.Encode(example, tokenizer, template, options.TrainOnPrompt);
        }
        catch (ErtasException e)
        {
            // The structural checks mirror the template's, so this means the template is stricter than we know.
            diagnostics.Add(new DatasetDiagnostic(DiagnosticSeverity.Error, ErrorCode.DatasetRolesNotAlternating, example.File, example.Line, 0,
                $"the {options.TemplateName} template rejects this example ({e.CodeText}): {e.Message}"));
            return null;
        }

        var limit = options.SequenceLength;
        if (encoded.Count <= limit)
            return encoded;
        var size = $"the example is {encoded.Count} tokens, longer than the sequence length {limit}";
        switch (options.LengthPolicy)
        {
            case LengthPolicy.Error:
                Report(DiagnosticSeverity.Error, $"{size}; shorten it, raise the sequence length, or set LengthPolicy to Drop or Truncate");
                return null;
            case LengthPolicy.Drop:
                Report(DiagnosticSeverity.Warning, $"{size}; left out (LengthPolicy Drop)");
                return null;
            default:
                var trained = encoded.Trained[..limit];
                // Position 0 is never a prediction target, so a cut example must keep a trained id after it.
                if (!trained.AsSpan(1).Contains(true))
                {
                    Report(DiagnosticSeverity.Warning, $"{size}; truncating it would leave nothing to train on, so it is left out");
                    return null;
                }
                Report(DiagnosticSeverity.Warning, $"{size}; truncated to its first {limit} tokens (LengthPolicy Truncate)");
                return encoded with { Ids = encoded.Ids[..limit], Trained = trained, Truncated = true };
        }

        void Report(DiagnosticSeverity severity, string message) =>
            diagnostics.Add(new DatasetDiagnostic(severity, ErrorCode.DatasetExampleTooLong, example.File, example.Line, 0, message));
    }
}

/// <summary>Everything validation found, and the examples that passed it.</summary>
public sealed record ValidationReport(
    IReadOnlyList<DatasetDiagnostic> Diagnostics,
    IReadOnlyList<DatasetExample> Examples,
    IReadOnlyList<EncodedExample>? Encoded)
{
    public int ErrorCount => Diagnostics.Count(d => d.Severity == DiagnosticSeverity.Error);
    public int WarningCount => Diagnostics.Count(d => d.Severity == DiagnosticSeverity.Warning);
    public bool HasErrors => ErrorCount > 0;

    /// <summary>
    /// Throws ERTAS6020 when there is any error, pointing at the first one and counting the rest; log
    /// <see cref="Diagnostics"/> first so that every problem is seen.
    /// </summary>
    public void ThrowIfErrors()
    {
        var first = Diagnostics.FirstOrDefault(d => d.Severity == DiagnosticSeverity.Error);
        if (first is null)
            return;
        var others = ErrorCount - 1;
        var tail = others > 0 ? $" (and {others} more error{(others == 1 ? "" : "s")}; each is reported on its own line)" : "";
        throw new ErtasException(ErrorCode.DatasetHasErrors,
            $"the dataset has errors, so nothing is trained from it: {first.CodeText}: {first.Message}{tail}",
            first.File, first.Line, first.Column);
    }
}

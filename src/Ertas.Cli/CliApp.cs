using Ertas.Cli.Commands;
using Ertas.Core;

namespace Ertas.Cli;

/// <summary>Dispatches a command line to its verb and turns every failure into one MSBuild-format line.</summary>
public static class CliApp
{
    public static IReadOnlyList<ICommand> Commands { get; } =
    [
        new BaseCreateCommand(),
        new TokenizeCommand(),
        new GenerateCommand(),
        new ExportCommand(),
        new QuantizeCommand(),
        new InspectCommand(),
        new TrainCommand(),
        new MergeCommand(),
        new AdapterExportCommand(),
        new EvalCommand(),
        new EvalAcceptCommand(),
        new EvalCompareCommand(),
        new ChatCommand(),
    ];

    public static int Run(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, CancellationToken ct = default)
    {
        var context = new CliContext(stdout, stderr, ct);
        if (args.Count == 0 || args[0] is "--help" or "-h" or "help")
        {
            stdout.Write(RootHelp());
            return args.Count == 0 ? (int)ExitCode.Usage : (int)ExitCode.Success;
        }
        if (args[0] == "--version")
        {
            stdout.WriteLine(EngineVersion);
            return 0;
        }
        var command = Commands
            .Where(c => c.Verb.Count <= args.Count && c.Verb.Select((w, i) => args[i] == w).All(x => x))
            .OrderByDescending(c => c.Verb.Count)
            .FirstOrDefault();
        if (command is null)
        {
            stderr.WriteLine(new ErtasException(ErrorCode.UnknownCommand,
                $"unknown command '{string.Join(' ', args.TakeWhile(a => !a.StartsWith('-')))}'; run 'ertas --help' for the list").ToDiagnostic());
            return (int)ExitCode.Usage;
        }
        var rest = args.Skip(command.Verb.Count).ToList();
        if (rest.Contains("--help") || rest.Contains("-h"))
        {
            stdout.Write(ParsedArgs.FormatHelp(command.Usage, command.Summary, command.Options));
            return 0;
        }
        try
        {
            var parsed = ParsedArgs.Parse(rest, command.Options, command.MaxPositionals);
            return command.Run(parsed, context);
        }
        catch (ErtasException e)
        {
            stderr.WriteLine(e.ToDiagnostic());
            return e.Code is ErrorCode.InvalidArgument or ErrorCode.MissingArgument or ErrorCode.UnknownCommand
                ? (int)ExitCode.Usage
                : (int)ExitCode.Failure;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine(new ErtasException(ErrorCode.Cancelled, "cancelled; no output was written").ToDiagnostic());
            return (int)ExitCode.Cancelled;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine(new ErtasException(ErrorCode.IoFailure, e.Message).ToDiagnostic());
            return (int)ExitCode.Failure;
        }
    }

    public static string EngineVersion =>
        typeof(CliApp).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    private static string RootHelp()
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"ertas {EngineVersion}: fine-tune Mistral as a build").AppendLine().AppendLine("Commands:");
        foreach (var c in Commands)
            sb.AppendLine($"  {string.Join(' ', c.Verb),-16}{c.Summary}");
        sb.AppendLine().AppendLine("Run 'ertas <command> --help' for a command's options.");
        return sb.ToString();
    }
}

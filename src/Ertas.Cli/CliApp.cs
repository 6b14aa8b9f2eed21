using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using Ertas.Cli.Commands;
using Ertas.Core;

namespace Ertas.Cli;

/// <summary>
/// Parses a command line with System.CommandLine, runs its verb, and turns every failure into one MSBuild-format line.
/// Besides the verbs, the root understands <c>--help</c>/<c>-h</c> (also after a verb), <c>--version</c>, response files
/// (<c>ertas @args.rsp</c>: one or more arguments per line, <c>#</c> comments) and the <c>[suggest]</c> directive that
/// shell completion uses. To get completion, install dotnet-suggest once (<c>dotnet tool install -g dotnet-suggest</c>),
/// add its shim script for bash, zsh or PowerShell to the shell's profile, and make <c>ertas</c> known to it by running
/// it once from PATH (as a global tool: <c>dotnet tool install -g Ertas.Cli</c>); the shell then asks
/// <c>ertas [suggest:N] "ertas tr"</c> for the verbs and options that fit.
/// </summary>
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
        new PlanCommand(),
        new MergeCommand(),
        new AdapterExportCommand(),
        new EvalCommand(),
        new EvalAcceptCommand(),
        new EvalCompareCommand(),
        new ChatCommand(),
        new GgufSplitCommand(),
        new GgufMergeCommand(),
        new GitHubRunCommand(),
        new GitHubVersionCommand(),
        new GitHubCommentCommand(),
        new GitHubReleaseCommand(),
        new GitHubChangedCommand(),
    ];

    public static int Run(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, CancellationToken ct = default,
        Func<string, string?>? variable = null)
    {
        var context = new CliContext(stdout, stderr, ct);
        if (variable is not null)
            context = context with { Variable = variable };
        var root = BuildRoot(args, context);
        var invocation = new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,
            // Failures are ours to report (one line, our exit codes), and Ctrl+C is Program's to handle.
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = null,
        };
        try
        {
            if (args.Count == 0)
            {
                root.Parse(["--help"]).Invoke(invocation);
                return (int)ExitCode.Usage;
            }
            var parse = root.Parse(args);
            // Never System.CommandLine's error report (all errors, then the help): the first problem, in one line.
            if (parse.Action is ParseErrorAction)
            {
                if (VerbCommand.UnattachedError(parse) is { } unattached)
                    throw unattached;
                if (parse.CommandResult.Command is VerbCommand verb)
                    verb.Read(parse, args); // throws, as the parse has errors
                throw UnknownCommand(parse);
            }
            return parse.Invoke(invocation);
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

    /// <summary>The command tree; built per run because each verb's action closes over that run's writers.</summary>
    private static RootCommand BuildRoot(IReadOnlyList<string> args, CliContext context)
    {
        // RootCommand brings --help, --version and the [suggest] directive (shell completion) with it.
        var root = new RootCommand($"ertas {EngineVersion}: fine-tune Mistral as a build");
        foreach (var option in root.Options)
        {
            if (option is HelpOption { Action: HelpAction standard } helpOption)
            {
                // System.CommandLine's /h and /? are also file names on Unix: --help, -h and -? ask for help.
                helpOption.Aliases.Remove("/h");
                helpOption.Aliases.Remove("/?");
                helpOption.Action = new ErtasHelpAction(standard);
            }
            else if (option is System.CommandLine.VersionOption versionOption)
                // The engine's version, not the host's: under a test runner the entry assembly is the runner.
                versionOption.Action = new EngineVersionAction();
        }

        var byPath = new Dictionary<string, Command>(StringComparer.Ordinal);
        // In the listed order, which help keeps; a verb comes before the verbs under it (`eval`, then `eval accept`).
        foreach (var command in Commands)
        {
            Command parent = root;
            for (var depth = 1; depth < command.Verb.Count; depth++)
            {
                var path = string.Join(' ', command.Verb.Take(depth));
                if (!byPath.TryGetValue(path, out var group))
                {
                    // A word that only groups verbs (base, adapter): no action, so alone it is an unknown command.
                    group = new Command(command.Verb[depth - 1], $"The '{path}' commands.");
                    parent.Add(group);
                    byPath[path] = group;
                }
                parent = group;
            }
            var verb = VerbCommand.For(command);
            verb.SetAction(parse => command.Run(verb.Read(parse, args), context));
            if (!byPath.TryAdd(string.Join(' ', command.Verb), verb))
                throw new InvalidOperationException($"'{string.Join(' ', command.Verb)}' is declared after verbs under it, or twice");
            parent.Add(verb);
        }

        // `ertas help [VERB...]`, as the hand-written parser understood it; hidden, as --help is the documented way.
        var words = new Argument<string[]>("VERB") { Arity = ArgumentArity.ZeroOrMore };
        var help = new Command("help", "Show help for ertas or one of its commands.") { Hidden = true };
        help.Add(words);
        help.SetAction(parse => root.Parse([.. parse.GetValue(words) ?? [], "--help"]).Invoke(parse.InvocationConfiguration));
        root.Add(help);
        return root;
    }

    private static ErtasException UnknownCommand(ParseResult parse)
    {
        var words = parse.Tokens
            .Where(t => t.Type is TokenType.Command or TokenType.Argument)
            .Select(t => t.Value)
            .TakeWhile(w => !w.StartsWith('-'))
            .ToList();
        var given = words.Count > 0 ? string.Join(' ', words) : parse.UnmatchedTokens.FirstOrDefault() ?? "";
        return new ErtasException(ErrorCode.UnknownCommand, $"unknown command '{given}'; run 'ertas --help' for the list");
    }

    /// <summary>System.CommandLine's help, except that the root lists every verb (two-word ones too) and each verb's
    /// help ends with our synopsis, which says more than "[options]" (positional order, alternative forms).</summary>
    private sealed class ErtasHelpAction(HelpAction standard) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            var output = parseResult.InvocationConfiguration.Output;
            switch (parseResult.CommandResult.Command)
            {
                case RootCommand root:
                    WriteRootHelp(root, output);
                    return 0;
                case VerbCommand verb:
                    var code = standard.Invoke(parseResult);
                    output.WriteLine("Synopsis:");
                    foreach (var line in verb.Usage.Split('\n'))
                        output.WriteLine($"  {line.Trim()}");
                    output.WriteLine();
                    return code;
                default:
                    return standard.Invoke(parseResult);
            }
        }

        private static void WriteRootHelp(RootCommand root, TextWriter output)
        {
            var verbs = Verbs(root, "").ToList();
            var options = root.Options.Where(o => !o.Hidden)
                .Select(o => (Name: string.Join(", ", o.Aliases.Order(StringComparer.Ordinal).Append(o.Name)), o.Description ?? ""))
                .ToList();
            var width = verbs.Concat(options).Max(row => row.Name.Length) + 2;
            output.WriteLine("Description:");
            output.WriteLine($"  {root.Description}");
            output.WriteLine();
            output.WriteLine("Usage:");
            output.WriteLine("  ertas <command> [options]");
            output.WriteLine();
            output.WriteLine("Commands:");
            foreach (var (name, summary) in verbs)
                output.WriteLine($"  {name.PadRight(width)}{summary}");
            output.WriteLine();
            output.WriteLine("Options:");
            foreach (var (name, description) in options)
                output.WriteLine($"  {name.PadRight(width)}{description}");
            output.WriteLine();
            output.WriteLine("Run 'ertas <command> --help' for a command's options.");
        }

        private static IEnumerable<(string Name, string Summary)> Verbs(Command command, string prefix)
        {
            foreach (var sub in command.Subcommands.Where(s => !s.Hidden))
            {
                var path = prefix + sub.Name;
                if (sub is VerbCommand)
                    yield return (path, sub.Description ?? "");
                foreach (var nested in Verbs(sub, path + " "))
                    yield return nested;
            }
        }
    }

    private sealed class EngineVersionAction : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(EngineVersion);
            return 0;
        }
    }
}

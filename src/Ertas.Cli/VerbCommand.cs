using System.CommandLine;
using System.CommandLine.Parsing;
using Ertas.Core;

namespace Ertas.Cli;

/// <summary>
/// One verb as a System.CommandLine command, declared from its <see cref="OptionSpec"/> list: flags as
/// <c>Option&lt;bool&gt;</c>, valued options as <c>Option&lt;string&gt;</c> (repeatable ones as <c>Option&lt;string[]&gt;</c>,
/// one value per occurrence), positionals as one <c>Argument&lt;string[]&gt;</c> of arity 0..MaxPositionals.
/// <see cref="Read"/> turns its parse into <see cref="ParsedArgs"/>, or its first problem into one usage error in our
/// own words: the build forwards stderr lines as MSBuild diagnostics, so a bad command line must be exactly one line.
/// </summary>
internal sealed class VerbCommand : Command
{
    private readonly IReadOnlyList<OptionSpec> _specs;
    private readonly IReadOnlyList<Option> _options;
    private readonly Argument<string[]>? _positionals;

    public VerbCommand(string name, string summary, string usage, IReadOnlyList<OptionSpec> options, int maxPositionals,
        string positionalsName, string positionalsHelp)
        : base(name, summary)
    {
        Usage = usage;
        _specs = options;
        _options = [.. options.Select(Declare)];
        foreach (var option in _options)
            Add(option);
        if (maxPositionals > 0)
        {
            _positionals = new Argument<string[]>(positionalsName)
            {
                Description = positionalsHelp,
                Arity = new ArgumentArity(0, maxPositionals),
                // The tokens as given: the default conversion of string[] refuses a lone token when the arity is 0..1.
                CustomParser = result => [.. result.Tokens.Select(t => t.Value)],
            };
            Add(_positionals);
        }
    }

    public static VerbCommand For(ICommand command) =>
        new(command.Verb[^1], command.Summary, command.Usage, command.Options, command.MaxPositionals,
            command.PositionalsName, command.PositionalsHelp);

    /// <summary>Our hand-written synopsis (several lines where the verb has several forms); help shows it.</summary>
    public string Usage { get; }

    /// <summary>
    /// The verb's values, or the first problem of the command line as an <see cref="ErtasException"/>.
    /// <paramref name="args"/> is the command line as given, for what its tokens no longer show.
    /// </summary>
    public ParsedArgs Read(ParseResult result, IReadOnlyList<string> args)
    {
        if (UnattachedError(result) is { } unattached)
            throw unattached;
        // --json=1 reaches the tokens as --json and 1, where 1 would pass for a positional or a stray argument.
        foreach (var arg in args.TakeWhile(a => a != "--"))
            if (_specs.FirstOrDefault(s => s.IsFlag && arg.Length > s.Name.Length && arg.StartsWith(s.Name, StringComparison.Ordinal)
                    && arg[s.Name.Length] is '=' or ':') is { } flag)
                throw new ErtasException(ErrorCode.InvalidArgument, $"{flag.Name} is a flag and takes no value");
        IReadOnlyList<string> positionals = _positionals is not null && result.GetResult(_positionals) is { } given
            ? [.. given.Tokens.Select(t => t.Value)]
            : [];
        // System.CommandLine gives a verb that takes positionals any unknown --name as one; before a "--" it is a
        // mistyped option, as for the verbs that take none. Positionals come before the tokens left over after them.
        if (!result.Tokens.Any(t => t.Type == TokenType.DoubleDash) && positionals.FirstOrDefault(IsLongOption) is { } mistyped)
            throw Stray(mistyped);
        if (result.UnmatchedTokens.Count > 0)
            throw Stray(result.UnmatchedTokens[0]);

        var values = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        for (var i = 0; i < _specs.Count; i++)
        {
            var spec = _specs[i];
            // A flag has a result even when absent (its implicit false): only named occurrences count.
            if (result.GetResult(_options[i]) is not { IdentifierTokenCount: > 0 } option)
                continue;
            if (option.IdentifierTokenCount > 1 && !spec.Repeatable)
                throw new ErtasException(ErrorCode.InvalidArgument, $"{spec.Name} given more than once");
            if (spec.IsFlag)
            {
                if (option.Tokens.Count > 0)
                    throw new ErtasException(ErrorCode.InvalidArgument, $"{spec.Name} is a flag and takes no value");
                values[spec.Name] = ["true"];
            }
            else if (option.Tokens.Count == 0)
                throw new ErtasException(ErrorCode.MissingArgument, $"{spec.Name} expects a value ({spec.ValueName})");
            else
                values[spec.Name] = [.. option.Tokens.Select(t => t.Value)];
        }
        if (_specs.FirstOrDefault(s => s.Required && !values.ContainsKey(s.Name)) is { } missing)
            throw new ErtasException(ErrorCode.MissingArgument, $"missing required option {missing.Name} ({missing.ValueName})");
        // Anything System.CommandLine found that the checks above did not: its own message, still one line.
        if (result.Errors.Count > 0)
            throw new ErtasException(ErrorCode.InvalidArgument, result.Errors[0].Message.TrimEnd('.'));
        return new ParsedArgs(values, positionals);
    }

    /// <summary>A problem with no symbol to blame: a response file that is missing or unreadable, expanded before any
    /// symbol saw a token.</summary>
    public static ErtasException? UnattachedError(ParseResult result) =>
        result.Errors.FirstOrDefault(e => e.SymbolResult is null) is { } error
            ? new ErtasException(ErrorCode.InvalidArgument, error.Message.TrimEnd('.'))
            : null;

    private ErtasException Stray(string token)
    {
        if (!IsLongOption(token))
            return new ErtasException(ErrorCode.InvalidArgument, $"unexpected argument '{token}'");
        var equals = token.IndexOf('=');
        var name = equals > 0 ? token[..equals] : token;
        return new ErtasException(ErrorCode.InvalidArgument,
            $"unknown option {name}; valid options: {string.Join(", ", _specs.Select(o => o.Name))}");
    }

    private static bool IsLongOption(string token) => token.StartsWith("--", StringComparison.Ordinal) && token.Length > 2;

    private static Option Declare(OptionSpec spec)
    {
        if (spec.IsFlag)
        {
            // Zero or one value rather than none, so that a value given to a flag (--force=true) lands on the flag and
            // Read can name it; System.CommandLine takes only true/false after a flag, so `inspect --json FILE` keeps
            // FILE as the positional.
            var flag = new Option<bool>(spec.Name) { Description = spec.Help, Arity = ArgumentArity.ZeroOrOne };
            flag.CompletionSources.Clear(); // no true/false suggestions for a flag that refuses them
            return flag;
        }
        return spec.Repeatable
            ? new Option<string[]>(spec.Name)
            {
                Description = spec.Help,
                HelpName = spec.ValueName,
                Required = spec.Required,
                Arity = ArgumentArity.OneOrMore,
                // --rule a --rule b, never --rule a b: a second value would silently swallow a positional.
                AllowMultipleArgumentsPerToken = false,
            }
            : new Option<string>(spec.Name)
            {
                Description = spec.Help,
                HelpName = spec.ValueName,
                Required = spec.Required,
                Arity = ArgumentArity.ExactlyOne,
            };
    }
}

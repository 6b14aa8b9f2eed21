using System.Globalization;
using Ertas.Core;

namespace Ertas.Cli;

/// <summary>One option a verb accepts; flags take no value.</summary>
public sealed record OptionSpec(string Name, string Help, string? ValueName = null, bool Required = false, bool Repeatable = false)
{
    public bool IsFlag => ValueName is null;
}

/// <summary>
/// The parsed command line of one verb, as its <see cref="ICommand.Run"/> reads it: the option values by name (in the
/// order given) and the positionals. System.CommandLine does the parsing (<see cref="VerbCommand"/>); this keeps the
/// verbs' own reading of values, and their messages, in one place.
/// </summary>
public sealed class ParsedArgs
{
    private readonly IReadOnlyDictionary<string, IReadOnlyList<string>> _values;

    internal ParsedArgs(IReadOnlyDictionary<string, IReadOnlyList<string>> values, IReadOnlyList<string> positionals)
    {
        _values = values;
        Positionals = positionals;
    }

    public IReadOnlyList<string> Positionals { get; }

    public bool Has(string name) => _values.ContainsKey(name);

    public string? Get(string name) => _values.TryGetValue(name, out var v) ? v[^1] : null;

    public IReadOnlyList<string> GetAll(string name) => _values.TryGetValue(name, out var v) ? v : [];

    public string Require(string name) =>
        Get(name) ?? throw new ErtasException(ErrorCode.MissingArgument, $"missing required option {name}");

    public int GetInt(string name, int fallback, int min = int.MinValue, int max = int.MaxValue) =>
        Get(name) is { } text ? ParseInt(name, text, min, max) : fallback;

    public int? GetIntOrNull(string name, int min = int.MinValue, int max = int.MaxValue) =>
        Get(name) is { } text ? ParseInt(name, text, min, max) : null;

    public ulong GetUInt64(string name, ulong fallback)
    {
        if (Get(name) is not { } text) return fallback;
        return ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new ErtasException(ErrorCode.InvalidArgument, $"{name} expects a non-negative integer, got '{text}'");
    }

    private static int ParseInt(string name, string text, int min, int max)
    {
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v))
            throw new ErtasException(ErrorCode.InvalidArgument, $"{name} expects an integer, got '{text}'");
        if (v < min || v > max)
            throw new ErtasException(ErrorCode.InvalidArgument,
                max == int.MaxValue ? $"{name} must be at least {min}, got {v}" : $"{name} must be between {min} and {max}, got {v}");
        return v;
    }

    /// <summary>
    /// One verb's arguments (without the verb's words) parsed as <c>ertas</c> parses them, for callers that run a
    /// verb directly; the first problem is thrown as the <see cref="ErtasException"/> the CLI would print.
    /// </summary>
    public static ParsedArgs Parse(IReadOnlyList<string> args, IReadOnlyList<OptionSpec> options, int maxPositionals)
    {
        var command = new VerbCommand("verb", "", "", options, maxPositionals, "ARG", "");
        // The leading name is the command's own token, so a first argument that happens to equal it stays an argument.
        return command.Read(command.Parse([command.Name, .. args]), args);
    }
}

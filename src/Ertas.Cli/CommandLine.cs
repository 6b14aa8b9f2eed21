using System.Globalization;
using System.Text;
using Ertas.Core;

namespace Ertas.Cli;

/// <summary>One option a verb accepts; flags take no value.</summary>
public sealed record OptionSpec(string Name, string Help, string? ValueName = null, bool Required = false, bool Repeatable = false)
{
    public bool IsFlag => ValueName is null;
}

/// <summary>
/// The parsed command line of one verb. Hand-written rather than System.CommandLine so that every bad input
/// is exactly one line in MSBuild's error format, which the build tasks forward verbatim.
/// </summary>
public sealed class ParsedArgs
{
    private readonly Dictionary<string, List<string>> _values;

    private ParsedArgs(Dictionary<string, List<string>> values, IReadOnlyList<string> positionals)
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

    public static ParsedArgs Parse(IReadOnlyList<string> args, IReadOnlyList<OptionSpec> options, int maxPositionals)
    {
        var byName = options.ToDictionary(o => o.Name, StringComparer.Ordinal);
        var values = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var positionals = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg.StartsWith("--", StringComparison.Ordinal) && arg.Length > 2)
            {
                string name = arg;
                string? inline = null;
                var eq = arg.IndexOf('=');
                if (eq > 0) { name = arg[..eq]; inline = arg[(eq + 1)..]; }
                if (!byName.TryGetValue(name, out var spec))
                    throw new ErtasException(ErrorCode.InvalidArgument,
                        $"unknown option {name}; valid options: {string.Join(", ", options.Select(o => o.Name))}");
                string value;
                if (spec.IsFlag)
                {
                    if (inline is not null)
                        throw new ErtasException(ErrorCode.InvalidArgument, $"{name} is a flag and takes no value");
                    value = "true";
                }
                else if (inline is not null) value = inline;
                else if (i + 1 < args.Count) value = args[++i];
                else throw new ErtasException(ErrorCode.MissingArgument, $"{name} expects a value ({spec.ValueName})");
                if (values.TryGetValue(name, out var list))
                {
                    if (!spec.Repeatable)
                        throw new ErtasException(ErrorCode.InvalidArgument, $"{name} given more than once");
                    list.Add(value);
                }
                else values[name] = [value];
            }
            else
            {
                if (positionals.Count >= maxPositionals)
                    throw new ErtasException(ErrorCode.InvalidArgument, $"unexpected argument '{arg}'");
                positionals.Add(arg);
            }
        }
        foreach (var spec in options.Where(o => o.Required))
            if (!values.ContainsKey(spec.Name))
                throw new ErtasException(ErrorCode.MissingArgument, $"missing required option {spec.Name} ({spec.ValueName})");
        return new ParsedArgs(values, positionals);
    }

    public static string FormatHelp(string usage, string summary, IReadOnlyList<OptionSpec> options)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"Usage: {usage}").AppendLine().AppendLine(summary).AppendLine().AppendLine("Options:");
        var left = options.Select(o => o.IsFlag ? o.Name : $"{o.Name} {o.ValueName}").ToList();
        var width = Math.Max(left.Max(l => l.Length), "--help".Length) + 2;
        for (var i = 0; i < options.Count; i++)
            sb.AppendLine($"  {left[i].PadRight(width)}{options[i].Help}{(options[i].Required ? " (required)" : "")}");
        sb.AppendLine($"  {"--help".PadRight(width)}Show this help.");
        return sb.ToString();
    }
}

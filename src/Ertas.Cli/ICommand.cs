namespace Ertas.Cli;

/// <summary>One verb of the <c>ertas</c> command. Each lives in its own file under Commands/.</summary>
public interface ICommand
{
    /// <summary>The words that select it, e.g. ["base", "create"].</summary>
    IReadOnlyList<string> Verb { get; }
    string Usage { get; }
    string Summary { get; }
    IReadOnlyList<OptionSpec> Options { get; }
    int MaxPositionals => 0;

    /// <summary>How help names the positional arguments, when <see cref="MaxPositionals"/> allows any.</summary>
    string PositionalsName => "ARG";

    /// <summary>What help says the positional arguments are.</summary>
    string PositionalsHelp => "";

    int Run(ParsedArgs args, CliContext context);
}

/// <summary>What a command writes to and how it is stopped; tests pass string writers.</summary>
public sealed record CliContext(TextWriter Out, TextWriter Error, CancellationToken Cancellation)
{
    /// <summary>Reads an environment variable (GITHUB_TOKEN, GITHUB_OUTPUT...); tests pass their own.</summary>
    public Func<string, string?> Variable { get; init; } = Environment.GetEnvironmentVariable;
}

public enum ExitCode
{
    Success = 0,
    Failure = 1,
    Usage = 2,
    Internal = 70,
    Cancelled = 130,
}

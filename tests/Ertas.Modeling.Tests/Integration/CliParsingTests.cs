using Ertas.Cli;
using Ertas.Cli.Commands;

namespace Ertas.Modeling.Tests.Integration;

/// <summary>
/// The command line as System.CommandLine parses it for <c>ertas</c>: every bad input is one MSBuild-format line with
/// its ERTAS code and exit code 2 (the build turns stderr lines into diagnostics), and help, <c>--version</c>, response
/// files and shell completion work in-process on the writers <see cref="CliApp.Run"/> is given. None of these reach a
/// model: each fails or answers before any work.
/// </summary>
public sealed class CliParsingTests : IDisposable
{
    private readonly TempFolder _work = new("ertas-cli-");

    public void Dispose() => _work.Dispose();

    [Fact]
    public void UnknownOption_IsOneLineListingTheValidOptions()
    {
        var result = Cli.Run("export", "--model", "m", "--out", "o.gguf", "--type", "f32", "--quantise");
        AssertUsageError(result,
            "ertas: error ERTAS1001: unknown option --quantise; valid options: --model, --out, --type, --threads, --name, --force");
    }

    [Fact]
    public void UnknownOption_OnAVerbThatTakesPositionals_IsNotTakenForOne()
    {
        AssertUsageError(Cli.Run("inspect", "--bogus"), "ertas: error ERTAS1001: unknown option --bogus; valid options: --json");
        AssertUsageError(Cli.Run("inspect", "--bogus=1", "x.gguf"), "ertas: error ERTAS1001: unknown option --bogus; valid options: --json");
    }

    [Fact]
    public void MissingRequiredOption_IsMissingArgumentNamingItsValue()
    {
        AssertUsageError(Cli.Run("export", "--model", "m", "--out", "o.gguf"), "ertas: error ERTAS1002: missing required option --type (TYPE)");
    }

    [Fact]
    public void OptionWithoutItsValue_IsMissingArgument()
    {
        AssertUsageError(Cli.Run("export", "--model", "m", "--type", "f32", "--out"), "ertas: error ERTAS1002: --out expects a value (FILE)");
    }

    [Fact]
    public void SingleValuedOptionGivenTwice_IsRefused()
    {
        AssertUsageError(Cli.Run("export", "--model", "a", "--model", "b", "--out", "o.gguf", "--type", "f32"),
            "ertas: error ERTAS1001: --model given more than once");
    }

    [Theory]
    [InlineData("frobnicate", "frobnicate")]
    [InlineData("base", "base")] // a word that only groups verbs
    [InlineData("adapter frobnicate", "adapter frobnicate")]
    public void UnknownVerb_IsUnknownCommand(string words, string named)
    {
        AssertUsageError(Cli.Run([.. words.Split(' '), "--out", "x.gguf"]),
            $"ertas: error ERTAS1003: unknown command '{named}'; run 'ertas --help' for the list");
    }

    [Fact]
    public void TooManyPositionals_NameTheFirstExtraArgument()
    {
        AssertUsageError(Cli.Run("inspect", "a.gguf", "b.gguf"), "ertas: error ERTAS1001: unexpected argument 'b.gguf'");
        AssertUsageError(Cli.Run("quantize", "in.gguf", "out.gguf", "more.gguf", "--type", "q8_0"),
            "ertas: error ERTAS1001: unexpected argument 'more.gguf'");
        AssertUsageError(Cli.Run("export", "stray", "--model", "m", "--out", "o.gguf", "--type", "f32"),
            "ertas: error ERTAS1001: unexpected argument 'stray'");
    }

    [Theory]
    [InlineData("--json=1")]
    [InlineData("--json:yes")]
    [InlineData("--json=true")]
    public void FlagGivenAValue_IsRefused(string flag)
    {
        AssertUsageError(Cli.Run("inspect", flag, "x.gguf"), "ertas: error ERTAS1001: --json is a flag and takes no value");
    }

    [Fact]
    public void FlagFollowedByABoolean_IsRefused_AndByAPath_LeavesThePathAPositional()
    {
        AssertUsageError(Cli.Run("inspect", "--json", "true"), "ertas: error ERTAS1001: --json is a flag and takes no value");

        var missing = _work.Combine("absent.gguf");
        var result = Cli.Run("inspect", "--json", missing);
        Assert.Equal((int)ExitCode.Failure, result.ExitCode);
        Assert.Equal($"{missing}: error ERTAS1004: '{missing}' does not exist", Assert.Single(result.ErrorLines));
    }

    [Fact]
    public void RepeatableOption_CollectsOneValuePerOccurrence_InOrder()
    {
        var parsed = ParsedArgs.Parse(["a.json", "--rule", "acc:max_drop=0.1", "--rule=b=c:d", "b.json", "--rule:x"],
            new EvalCompareCommand().Options, new EvalCompareCommand().MaxPositionals);
        Assert.Equal(["acc:max_drop=0.1", "b=c:d", "x"], parsed.GetAll("--rule"));
        Assert.Equal("x", parsed.Get("--rule"));
        Assert.Equal(["a.json", "b.json"], parsed.Positionals);
    }

    [Fact]
    public void RepeatableOption_TakesOneValuePerOccurrence_NotTheFollowingPositional()
    {
        var parsed = ParsedArgs.Parse(["--rule", "r1", "a.json", "b.json"], new EvalCompareCommand().Options, 2);
        Assert.Equal(["r1"], parsed.GetAll("--rule"));
        Assert.Equal(["a.json", "b.json"], parsed.Positionals);
    }

    [Fact]
    public void EqualsAndColonForms_GiveTheValue()
    {
        var parsed = ParsedArgs.Parse(["--tokenizer=t.model", "--text=a=b", "--template:mistral-v1", "--no-bos"], new TokenizeCommand().Options, 0);
        Assert.Equal("t.model", parsed.Get("--tokenizer"));
        Assert.Equal("a=b", parsed.Get("--text"));
        Assert.Equal("mistral-v1", parsed.Get("--template"));
        Assert.True(parsed.Has("--no-bos"));
        Assert.False(parsed.Has("--chat"));

        // Through the CLI: the verb sees the value (its own refusal names it).
        var folder = Directory.CreateDirectory(_work.Combine("evals")).FullName;
        var result = Cli.Run("eval", "accept", folder, "--quantization=Q9_X");
        AssertUsageErrorStartsWith(result, $"ertas: error ERTAS1001: no received snapshot for Q9_X in {folder}:");
    }

    [Fact]
    public void ResponseFile_ExpandsToTheCommandLine()
    {
        var folder = Directory.CreateDirectory(_work.Combine("snapshots with spaces")).FullName;
        var rsp = _work.Combine("args.rsp");
        File.WriteAllLines(rsp,
        [
            "# accept one quantization's snapshots",
            "eval accept",
            $"\"{folder}\"",
            "--quantization Q9_X",
        ]);
        var result = Cli.Run("@" + rsp);
        AssertUsageErrorStartsWith(result, $"ertas: error ERTAS1001: no received snapshot for Q9_X in {folder}:");

        // After the verb, and mixed with arguments given directly; a file that is not there is one usage line.
        var options = _work.Combine("options.rsp");
        File.WriteAllText(options, "--quantization Q9_X\n");
        AssertUsageErrorStartsWith(Cli.Run("eval", "accept", folder, "@" + options),
            $"ertas: error ERTAS1001: no received snapshot for Q9_X in {folder}:");
        var absent = _work.Combine("absent.rsp");
        AssertUsageError(Cli.Run("eval", "accept", "@" + absent), $"ertas: error ERTAS1001: Response file not found '{absent}'");
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    public void VerbHelp_ListsItsOptionsAndSynopsis(string flag)
    {
        var result = Cli.Run("merge", flag);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("", result.Error);
        foreach (var option in new MergeCommand().Options)
            Assert.Contains($"  {option.Name}{(option.IsFlag ? "" : $" <{option.ValueName}>")}", result.Out, StringComparison.Ordinal);
        Assert.Contains("--model <DIR> (REQUIRED)", result.Out, StringComparison.Ordinal);
        Assert.Contains("Synopsis:", result.Out, StringComparison.Ordinal);
        Assert.Contains("  ertas merge --model BASEDIR --adapter ADAPTERDIR --format hf --out DIR", result.Out, StringComparison.Ordinal);

        // Help wins over errors elsewhere on the line, as a user reaching for it after a typo expects.
        var afterTypo = Cli.Run("export", "--quantise", "--help");
        Assert.Equal(0, afterTypo.ExitCode);
        Assert.Contains("--type <TYPE> (REQUIRED)", afterTypo.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void VerbHelp_NamesThePositionals()
    {
        var result = Cli.Run("quantize", "--help");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("<IN.gguf OUT.gguf>", result.Out, StringComparison.Ordinal);
        Assert.Contains("  ertas quantize IN.gguf OUT.gguf --type Q4_K_M", result.Out, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("help")]
    public void RootHelp_ListsEveryVerb_AndExitsZero(string flag)
    {
        var result = Cli.Run(flag);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("", result.Error);
        AssertListsEveryVerb(result.Out);
    }

    [Fact]
    public void NoArguments_PrintsTheRootHelp_AndExitsWithUsage()
    {
        var result = Cli.Run();
        Assert.Equal((int)ExitCode.Usage, result.ExitCode);
        Assert.Equal("", result.Error);
        AssertListsEveryVerb(result.Out);
    }

    [Fact]
    public void HelpVerb_GivesAVerbsHelp()
    {
        var result = Cli.Run("help", "eval", "compare");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("--format <FORMAT>", result.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Version_PrintsTheEngineVersion()
    {
        var result = Cli.Run("--version");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal(CliApp.EngineVersion, result.Out.TrimEnd());
        Assert.Matches(@"^\d+\.\d+\.\d+$", CliApp.EngineVersion);
        Assert.Equal("", result.Error);
    }

    [Fact]
    public void VersionAfterAVerb_IsThatVerbsOption()
    {
        // merge --version SEMVER sets general.version; a bad one is refused before any work.
        var result = Cli.Run("merge", "--model", _work.Combine("m"), "--adapter", _work.Combine("a"), "--out", _work.Combine("o.gguf"),
            "--type", "f16", "--version", "1.2");
        AssertUsageErrorStartsWith(result, "ertas: error ERTAS1001: --version must be a semantic version");
    }

    [Theory]
    [InlineData("ertas tr", "train")]
    [InlineData("ertas ev", "eval")]
    [InlineData("ertas eval ac", "accept")]
    [InlineData("ertas adapter ", "export")]
    [InlineData("ertas export --ty", "--type")]
    [InlineData("ertas chat model.gguf --mes", "--message")]
    public void SuggestDirective_CompletesVerbsAndOptions(string line, string expected)
    {
        // What dotnet-suggest sends: the cursor position and the whole line typed so far.
        var result = Cli.Run($"[suggest:{line.Length}]", line);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains(expected, result.Out.Split('\n').Select(l => l.TrimEnd('\r')));
    }

    [Fact]
    public void SuggestDirective_OffersNoValuesForAFlag()
    {
        const string line = "ertas inspect --json ";
        var result = Cli.Run($"[suggest:{line.Length}]", line);
        Assert.Equal(0, result.ExitCode);
        Assert.DoesNotContain("true", result.Out.Split('\n').Select(l => l.TrimEnd('\r')));
    }

    private static void AssertListsEveryVerb(string help)
    {
        Assert.Contains("Commands:", help, StringComparison.Ordinal);
        foreach (var command in CliApp.Commands)
        {
            var line = help.Split('\n').SingleOrDefault(l => l.StartsWith($"  {string.Join(' ', command.Verb)}  ", StringComparison.Ordinal));
            Assert.True(line is not null, $"no line for '{string.Join(' ', command.Verb)}' in:\n{help}");
            Assert.EndsWith(command.Summary, line.TrimEnd('\r'), StringComparison.Ordinal);
        }
        Assert.Contains("--version", help, StringComparison.Ordinal);
    }

    private static void AssertUsageError(CliResult result, string line)
    {
        Assert.Equal((int)ExitCode.Usage, result.ExitCode);
        Assert.Equal(line, Assert.Single(result.ErrorLines));
        Assert.Equal("", result.Out);
    }

    private static void AssertUsageErrorStartsWith(CliResult result, string start)
    {
        Assert.Equal((int)ExitCode.Usage, result.ExitCode);
        Assert.StartsWith(start, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        Assert.Equal("", result.Out);
    }
}

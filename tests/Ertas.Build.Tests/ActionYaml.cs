using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Ertas.Build.Tests;

/// <summary>
/// The rules the GitHub Action (action.yml) and the workflow templates keep, each a function from YAML text to the
/// problems found (empty: none), so a test can feed a broken copy and see the rule report it. A problem names the
/// line it is on.
/// </summary>
internal static partial class ActionYaml
{
    /// <summary>The action the workflow templates use (template.json's action-ref default); first-party, so it may be a tag.</summary>
    public const string TemplateActionRepository = "ertas-build/ertas-build";

    /// <summary>action.yml's inputs and their defaults (the issue's contract).</summary>
    public static readonly IReadOnlyDictionary<string, string> InputDefaults = new Dictionary<string, string>
    {
        ["project"] = "",
        ["mode"] = "auto",
        ["configuration"] = "Release",
        ["device"] = "cpu",
        ["github-token"] = "${{ github.token }}",
        ["api-url"] = "${{ github.api_url }}",
        ["comment"] = "upsert",
        ["cache"] = "true",
        ["upload-artifact"] = "true",
        ["retention-days"] = "",
        ["on-existing"] = "fail",
        ["dry-run"] = "false",
        ["allow-untrusted"] = "false",
        ["dotnet-version"] = "10.0.x",
        ["ertas-version"] = "",
        ["ertas-source"] = "",
    };

    public static readonly string[] Outputs =
        ["version", "is-prerelease", "gguf-files", "eval-verdict", "report-path", "comment-url", "release-url", "checksums-path"];

    /// <summary>The run step's options, each from its ERTAS_&lt;NAME&gt; variable.</summary>
    public static readonly string[] RunOptions =
        ["project", "mode", "configuration", "device", "comment", "on-existing", "dry-run", "allow-untrusted", "cache", "upload-artifact"];

    public const string UploadCondition =
        "${{ !cancelled() && inputs.upload-artifact == 'true' && steps.run.outputs.artifact-paths != '' }}";

    public static YamlMappingNode Parse(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return stream.Documents.Count > 0 && stream.Documents[0].RootNode is YamlMappingNode root
            ? root
            : throw new InvalidDataException("the YAML is not a mapping");
    }

    // ---- rules for every file: action.yml and both templates ----------------------------------------------------

    /// <summary>Every step with <c>run:</c> names its <c>shell</c> (a composite action requires it; a workflow then
    /// never depends on the runner's default shell).</summary>
    public static List<string> RunStepsWithoutShell(string yaml) =>
        Steps(Parse(yaml)).Where(s => s.Step.Children.ContainsKey("run") && Str(s.Step, "shell") is null or "")
            .Select(s => $"{Where(s.Step)}: the run step {Name(s.Step)} names no shell").ToList();

    /// <summary>No <c>${{</c> expression in any <c>run:</c> text: inputs, event fields and step outputs reach scripts
    /// through <c>env:</c> only, so nothing a user or an attacker controls is ever spliced into a shell script.</summary>
    public static List<string> ExpressionsInRunText(string yaml) =>
        Steps(Parse(yaml)).Where(s => Str(s.Step, "run") is { } run && run.Contains("${{", StringComparison.Ordinal))
            .Select(s =>
            {
                var run = Str(s.Step, "run")!;
                var expression = ExpressionPattern().Match(run).Value;
                var untrusted = expression.Contains("inputs.", StringComparison.Ordinal) || expression.Contains("github.event.", StringComparison.Ordinal)
                    ? " (untrusted: pass it through env:)" : "";
                return $"{Where(s.Step)}: the run step {Name(s.Step)} has the expression {expression} in its script{untrusted}";
            }).ToList();

    /// <summary>Every <c>uses:</c> of another repository's action is pinned to a full 40-hex commit SHA with a
    /// <c># vX.Y.Z</c> comment; local actions (<c>./</c>) and the listed first-party repositories are exempt.</summary>
    public static List<string> UnpinnedActions(string yaml, params string[] firstParty)
    {
        var lines = yaml.Split('\n');
        var problems = new List<string>();
        foreach (var (step, _) in Steps(Parse(yaml)))
        {
            if (!step.Children.TryGetValue("uses", out var node) || node is not YamlScalarNode { Value: { } uses })
                continue;
            if (uses.StartsWith("./", StringComparison.Ordinal) || uses.StartsWith("docker://", StringComparison.Ordinal))
                continue;
            if (firstParty.Any(repository => uses.StartsWith(repository + "@", StringComparison.Ordinal) || uses.StartsWith(repository + "/", StringComparison.Ordinal)))
                continue;
            if (!PinnedPattern().IsMatch(uses))
                problems.Add($"{Where(node)}: {uses} is not pinned to a full commit SHA (owner/repo@<40 hex digits> # vX.Y.Z)");
            else if (!VersionCommentPattern().IsMatch(lines[(int)node.Start.Line - 1]))
                problems.Add($"{Where(node)}: {uses} has no version comment (# vX.Y.Z) beside its SHA");
        }
        return problems;
    }

    /// <summary>Scripts are found through <c>$GITHUB_ACTION_PATH</c>, which container jobs translate to the
    /// container's path; the <c>github.action_path</c> expression is the host's path.</summary>
    public static List<string> ActionPathExpressions(string yaml) =>
        yaml.Split('\n').Select((line, i) => (line, i))
            .Where(l => l.line.Contains("github.action_path", StringComparison.Ordinal))
            .Select(l => $"line {l.i + 1}: github.action_path (use the $GITHUB_ACTION_PATH environment variable)").ToList();

    /// <summary>The rules above together: what every action and workflow file here keeps.</summary>
    public static List<string> CommonProblems(string yaml) =>
    [
        .. RunStepsWithoutShell(yaml), .. ExpressionsInRunText(yaml), .. UnpinnedActions(yaml, TemplateActionRepository),
        .. ActionPathExpressions(yaml),
    ];

    // ---- action.yml ------------------------------------------------------------------------------------------------

    /// <summary>Every input is declared with a description and the contract's default; nothing else is declared.</summary>
    public static List<string> InputProblems(string actionYaml)
    {
        var problems = new List<string>();
        var inputs = Map(Parse(actionYaml), "inputs");
        if (inputs is null)
            return ["action.yml declares no inputs"];
        foreach (var (name, expected) in InputDefaults)
        {
            if (Map(inputs, name) is not { } input)
            {
                problems.Add($"input {name} is not declared");
                continue;
            }
            if (string.IsNullOrWhiteSpace(Str(input, "description")))
                problems.Add($"{Where(input)}: input {name} has no description");
            if (Str(input, "default") is not { } actual)
                problems.Add($"{Where(input)}: input {name} has no default (expected '{expected}')");
            else if (actual != expected)
                problems.Add($"{Where(input)}: input {name} defaults to '{actual}', expected '{expected}'");
        }
        foreach (var extra in inputs.Children.Keys.Select(Key).Where(k => !InputDefaults.ContainsKey(k)))
            problems.Add($"input {extra} is not in the contract");
        return problems;
    }

    /// <summary>Every declared output has a description and maps to the run step's output of the same name.</summary>
    public static List<string> OutputProblems(string actionYaml)
    {
        var problems = new List<string>();
        var outputs = Map(Parse(actionYaml), "outputs");
        if (outputs is null)
            return ["action.yml declares no outputs"];
        foreach (var name in Outputs.Where(o => Map(outputs, o) is null))
            problems.Add($"output {name} is not declared");
        foreach (var (keyNode, valueNode) in outputs.Children)
        {
            var name = Key(keyNode);
            if (valueNode is not YamlMappingNode output)
            {
                problems.Add($"{Where(keyNode)}: output {name} is not a mapping");
                continue;
            }
            if (string.IsNullOrWhiteSpace(Str(output, "description")))
                problems.Add($"{Where(output)}: output {name} has no description");
            var expected = $"${{{{ steps.run.outputs.{name} }}}}";
            if (Str(output, "value") != expected)
                problems.Add($"{Where(output)}: output {name} is '{Str(output, "value")}', expected '{expected}'");
        }
        return problems;
    }

    /// <summary>The composite's steps, in order: setup-dotnet with the dotnet-version input; `install` (bash, a script
    /// under $GITHUB_ACTION_PATH/action/); the caches, only with cache: true and never of base weights; `run`
    /// (bash, `ertas github run` with each option from ERTAS_&lt;NAME&gt;, the token and API address through env);
    /// the artifact upload, also after a failed gate. And the action has branding.</summary>
    public static List<string> StepProblems(string actionYaml)
    {
        var problems = new List<string>();
        var root = Parse(actionYaml);
        if (Map(root, "branding") is not { } branding || Str(branding, "icon") is null || Str(branding, "color") is null)
            problems.Add("action.yml has no branding (icon and color)");
        var runs = Map(root, "runs");
        if (runs is null || Str(runs, "using") != "composite")
            return [.. problems, "runs.using is not composite"];
        var steps = (runs.Children.TryGetValue("steps", out var s) ? s as YamlSequenceNode : null)?.Children.OfType<YamlMappingNode>().ToList() ?? [];

        int IndexOf(Func<YamlMappingNode, bool> match) => steps.FindIndex(step => match(step));
        bool Uses(YamlMappingNode step, string action) => Str(step, "uses")?.StartsWith(action + "@", StringComparison.Ordinal) == true;

        var setup = IndexOf(step => Uses(step, "actions/setup-dotnet"));
        var install = IndexOf(step => Str(step, "id") == "install");
        var run = IndexOf(step => Str(step, "id") == "run");
        var upload = IndexOf(step => Uses(step, "actions/upload-artifact"));
        var caches = steps.Where(step => Uses(step, "actions/cache")).ToList();

        if (setup < 0)
            problems.Add("no actions/setup-dotnet step");
        else if (Str(Map(steps[setup], "with"), "dotnet-version") != "${{ inputs.dotnet-version }}")
            problems.Add($"{Where(steps[setup])}: setup-dotnet does not take dotnet-version from the dotnet-version input");

        YamlMappingNode? BashStep(int index, string id)
        {
            if (index < 0)
            {
                problems.Add($"no step with id {id}");
                return null;
            }
            if (Str(steps[index], "shell") != "bash")
                problems.Add($"{Where(steps[index])}: the {id} step's shell is not bash");
            return steps[index];
        }

        if (BashStep(install, "install") is { } installStep)
        {
            if (Str(installStep, "run")?.Contains("$GITHUB_ACTION_PATH/action/", StringComparison.Ordinal) != true)
                problems.Add($"{Where(installStep)}: the install step does not run a script in $GITHUB_ACTION_PATH/action/");
            var installEnv = Map(installStep, "env");
            if (Str(installEnv, "ERTAS_VERSION") != "${{ inputs.ertas-version }}" || Str(installEnv, "ERTAS_SOURCE") != "${{ inputs.ertas-source }}")
                problems.Add($"{Where(installStep)}: the install step does not pass ertas-version and ertas-source as ERTAS_VERSION and ERTAS_SOURCE");
        }

        if (caches.Count < 2)
            problems.Add($"{caches.Count} actions/cache steps: expected the NuGet packages and the prepared datasets");
        foreach (var cache in caches)
        {
            if (Str(cache, "if") is not ("inputs.cache == 'true'" or "${{ inputs.cache == 'true' }}"))
                problems.Add($"{Where(cache)}: the cache step {Name(cache)} does not run only when inputs.cache == 'true'");
            var path = Str(Map(cache, "with"), "path") ?? "";
            if (BaseWeightsPattern().Match(path) is { Success: true } weights)
                problems.Add($"{Where(cache)}: the cache step {Name(cache)} caches base weights ({weights.Value})");
        }
        var nuget = caches.FirstOrDefault(c => Str(Map(c, "with"), "path")?.Contains("~/.nuget/packages", StringComparison.Ordinal) == true);
        if (nuget is null)
            problems.Add("no cache of ~/.nuget/packages");
        else
            foreach (var file in new[] { "*.ertasproj", "nuget.config", "global.json", "packages.lock.json", "Directory.Build." })
                if (Str(Map(nuget, "with"), "key")?.Contains(file, StringComparison.OrdinalIgnoreCase) != true)
                    problems.Add($"{Where(nuget)}: the NuGet cache key does not hash {file}");
        var datasets = caches.FirstOrDefault(c => Str(Map(c, "with"), "path")?.Contains("obj/ertas/", StringComparison.Ordinal) == true);
        if (datasets is null)
            problems.Add("no cache of the prepared datasets under obj/ertas/");
        else if (Str(Map(datasets, "with"), "key") is not { } key || !key.Contains("*.jsonl", StringComparison.Ordinal) || !key.Contains("*.ertasproj", StringComparison.Ordinal))
            problems.Add($"{Where(datasets)}: the dataset cache key does not hash the datasets (*.jsonl) and the projects (*.ertasproj)");

        if (BashStep(run, "run") is { } runStep)
        {
            var step = runStep;
            var env = Map(step, "env");
            var expectedEnv = new Dictionary<string, string>
            {
                ["ERTAS"] = "${{ steps.install.outputs.path }}",
                ["GITHUB_TOKEN"] = "${{ inputs.github-token }}",
                ["GITHUB_API_URL"] = "${{ inputs.api-url }}",
            };
            foreach (var option in RunOptions)
                expectedEnv[EnvName(option)] = $"${{{{ inputs.{option} }}}}";
            foreach (var (name, value) in expectedEnv)
                if (Str(env, name) != value)
                    problems.Add($"{Where(step)}: the run step's env {name} is '{Str(env, name)}', expected '{value}'");
            var script = Str(step, "run") ?? "";
            if (!script.TrimStart().StartsWith("\"$ERTAS\" github run", StringComparison.Ordinal))
                problems.Add($"{Where(step)}: the run step does not run \"$ERTAS\" github run");
            foreach (var option in RunOptions)
                if (!script.Contains($"--{option} \"${EnvName(option)}\"", StringComparison.Ordinal))
                    problems.Add($"{Where(step)}: the run step does not pass --{option} \"${EnvName(option)}\"");
        }

        if (upload < 0)
            problems.Add("no actions/upload-artifact step");
        else
        {
            var step = steps[upload];
            var with = Map(step, "with");
            if (Str(step, "if") != UploadCondition)
                problems.Add($"{Where(step)}: the upload step's if is '{Str(step, "if")}', expected '{UploadCondition}'");
            if (Str(with, "name") != "${{ steps.run.outputs.artifact-name }}" || Str(with, "path") != "${{ steps.run.outputs.artifact-paths }}")
                problems.Add($"{Where(step)}: the upload step does not take name and path from the run step's artifact-name and artifact-paths");
            if (Str(with, "if-no-files-found") != "warn")
                problems.Add($"{Where(step)}: the upload step's if-no-files-found is not warn");
        }

        int[] order = [setup, install, run, upload];
        if (order.All(i => i >= 0) && !order.SequenceEqual(order.Order()))
            problems.Add("the steps are not in the order setup-dotnet, install, run, upload");
        if (install >= 0 && run >= 0 && caches.Select(c => steps.IndexOf(c)).Any(i => i < install || i > run))
            problems.Add("the caches are not restored between the install and the run steps");
        return problems;
    }

    public static string EnvName(string input) => "ERTAS_" + input.Replace('-', '_').ToUpperInvariant();

    // ---- workflows that use the action ----------------------------------------------------------------------------

    /// <summary>
    /// Every <c>with:</c> key of a step that uses the action is one of its declared inputs, every input the action
    /// requires is given, and every <c>steps.&lt;id&gt;.outputs.&lt;name&gt;</c> read from such a step is a declared
    /// output. <paramref name="isTheAction"/> picks the steps (e.g. <c>./</c>, or the templates' action reference).
    /// </summary>
    public static List<string> ActionUseProblems(string workflowYaml, string actionYaml, Func<string, bool> isTheAction)
    {
        var action = Parse(actionYaml);
        var inputs = Entries(Map(action, "inputs")).ToList();
        var declaredInputs = inputs.Select(i => Key(i.Key)).ToHashSet();
        var required = inputs.Where(i => i.Value is YamlMappingNode m && Str(m, "required") == "true" && Str(m, "default") is null)
            .Select(i => Key(i.Key)).ToList();
        var declaredOutputs = (Map(action, "outputs")?.Children.Keys.Select(Key) ?? []).ToHashSet();

        var problems = new List<string>();
        var ids = new List<string>();
        foreach (var (step, _) in Steps(Parse(workflowYaml)))
        {
            if (Str(step, "uses") is not { } uses || !isTheAction(uses))
                continue;
            var with = Map(step, "with");
            foreach (var key in with?.Children.Keys ?? [])
                if (!declaredInputs.Contains(Key(key)))
                    problems.Add($"{Where(key)}: input {Key(key)} is not declared by the action (declared: {string.Join(", ", declaredInputs)})");
            foreach (var name in required.Where(r => with is null || !with.Children.ContainsKey(r)))
                problems.Add($"{Where(step)}: the required input {name} is not given");
            if (Str(step, "id") is { } id)
                ids.Add(id);
        }
        foreach (var id in ids)
            foreach (Match m in Regex.Matches(workflowYaml, $@"steps\.{Regex.Escape(id)}\.outputs\.([A-Za-z0-9_-]+)"))
                if (!declaredOutputs.Contains(m.Groups[1].Value))
                    problems.Add($"steps.{id}.outputs.{m.Groups[1].Value} is not an output of the action (declared: {string.Join(", ", declaredOutputs)})");
        return problems;
    }

    /// <summary>The composite's steps as the one job of a workflow (its inputs as workflow_call inputs), so a
    /// workflow linter checks their expressions, contexts and scripts: actionlint lints workflows, not actions.</summary>
    public static string ActionStepsAsWorkflow(string actionYaml)
    {
        var action = Parse(actionYaml);
        var inputs = new YamlMappingNode();
        foreach (var (key, _) in Entries(Map(action, "inputs")))
            inputs.Add(Key(key), new YamlMappingNode { { "type", "string" }, { "required", "false" } });
        var steps = Map(action, "runs")?.Children["steps"] ?? new YamlSequenceNode();
        var workflow = new YamlMappingNode
        {
            { "name", "action.yml's steps" },
            { "on", new YamlMappingNode { { "workflow_call", new YamlMappingNode { { "inputs", inputs } } } } },
            { "permissions", new YamlMappingNode { { "contents", "read" } } },
            { "jobs", new YamlMappingNode { { "action", new YamlMappingNode { { "runs-on", "ubuntu-latest" }, { "steps", steps } } } } },
        };
        var writer = new StringWriter();
        new YamlStream(new YamlDocument(workflow)).Save(writer, assignAnchors: false);
        return writer.ToString().Replace("\r\n", "\n").TrimEnd('.', '\n', ' ') + "\n";
    }

    // ---- the workflow templates -------------------------------------------------------------------------------------

    /// <summary>
    /// ertas-pr.yml: runs on pull_request (never pull_request_target); one run per pull request (concurrency with
    /// cancel-in-progress); reads only at the top; a `changes` job on a hosted runner lists the changed projects with
    /// `ertas github changed`; each self-hosted job is kept from fork pull requests, needs `changes`, has a matrix of
    /// its projects, contents: read and pull-requests: write, a full-history checkout and the action on cuda.
    /// </summary>
    public static List<string> PullRequestWorkflowProblems(string yaml)
    {
        var problems = new List<string>();
        var root = Parse(yaml);
        var on = root.Children.TryGetValue("on", out var o) ? o : null;
        var events = EventNames(on);
        if (!events.Contains("pull_request"))
            problems.Add("the workflow does not run on pull_request");
        if (events.Contains("pull_request_target"))
            problems.Add("the workflow runs on pull_request_target (a fork's code with a write token)");

        if (Map(root, "concurrency") is not { } concurrency)
            problems.Add("no concurrency");
        else
        {
            if (Str(concurrency, "group")?.Contains("github.event.pull_request.number", StringComparison.Ordinal) != true)
                problems.Add($"{Where(concurrency)}: the concurrency group is not per pull request (github.event.pull_request.number)");
            if (Str(concurrency, "cancel-in-progress") != "true")
                problems.Add($"{Where(concurrency)}: concurrency does not cancel the run in progress");
        }

        if (!PermissionsAre(Map(root, "permissions"), ("contents", "read")))
            problems.Add($"the top-level permissions are not exactly contents: read ({Describe(Map(root, "permissions"))})");

        var jobs = Map(root, "jobs");
        var changes = Map(jobs, "changes");
        if (changes is null)
            problems.Add("no changes job");
        else
        {
            if (Str(changes, "runs-on") != "ubuntu-latest")
                problems.Add($"{Where(changes)}: the changes job does not run on ubuntu-latest");
            if (Str(Map(changes, "outputs"), "projects") is null)
                problems.Add($"{Where(changes)}: the changes job has no projects output");
            var steps = JobSteps(changes);
            if (!steps.Any(IsFullCheckout))
                problems.Add($"{Where(changes)}: the changes job does not check out with fetch-depth: 0");
            var changed = steps.FirstOrDefault(s => Str(s, "run")?.Contains("github changed", StringComparison.Ordinal) == true);
            if (changed is null)
                problems.Add($"{Where(changes)}: the changes job does not run ertas github changed");
            else
            {
                if (!Str(changed, "run")!.Contains("github changed --base \"$BASE_SHA\" --head \"$HEAD_SHA\"", StringComparison.Ordinal))
                    problems.Add($"{Where(changed)}: ertas github changed is not given --base \"$BASE_SHA\" --head \"$HEAD_SHA\"");
                var env = Map(changed, "env");
                if (Str(env, "BASE_SHA") != "${{ github.event.pull_request.base.sha }}" || Str(env, "HEAD_SHA") != "${{ github.event.pull_request.head.sha }}")
                    problems.Add($"{Where(changed)}: BASE_SHA and HEAD_SHA do not come from the pull request's base.sha and head.sha");
                if (!Str(changed, "run")!.Contains("projects", StringComparison.Ordinal) || !Str(changed, "run")!.Contains("$GITHUB_OUTPUT", StringComparison.Ordinal))
                    problems.Add($"{Where(changed)}: the changed projects are not written to $GITHUB_OUTPUT as projects");
            }
        }

        var selfHosted = SelfHostedJobs(jobs).ToList();
        if (selfHosted.Count == 0)
            problems.Add("no job on a self-hosted runner");
        foreach (var (name, job) in selfHosted)
        {
            var condition = Str(job, "if") ?? "";
            if (!condition.Replace(" ", "").Contains("github.event.pull_request.head.repo.full_name==github.repository", StringComparison.Ordinal))
                problems.Add($"{Where(job)}: the self-hosted job {name} is not kept from fork pull requests (if: github.event.pull_request.head.repo.full_name == github.repository)");
            if (!condition.Replace(" ", "").Contains("needs.changes.outputs.projects!='[]'", StringComparison.Ordinal))
                problems.Add($"{Where(job)}: the self-hosted job {name} does not skip when no project changed (needs.changes.outputs.projects != '[]')");
            if (!Needs(job).Contains("changes"))
                problems.Add($"{Where(job)}: the self-hosted job {name} does not need changes");
            if (!PermissionsAre(Map(job, "permissions"), ("contents", "read"), ("pull-requests", "write")))
                problems.Add($"{Where(job)}: the self-hosted job {name}'s permissions are not contents: read, pull-requests: write ({Describe(Map(job, "permissions"))})");
            var strategy = Map(job, "strategy");
            if (Str(Map(strategy, "matrix"), "project") != "${{ fromJSON(needs.changes.outputs.projects) }}")
                problems.Add($"{Where(job)}: the self-hosted job {name}'s matrix.project is not fromJSON(needs.changes.outputs.projects)");
            if (Str(strategy, "fail-fast") != "false")
                problems.Add($"{Where(job)}: the self-hosted job {name} does not set fail-fast: false");
            var steps = JobSteps(job);
            if (!steps.Any(IsFullCheckout))
                problems.Add($"{Where(job)}: the self-hosted job {name} does not check out with fetch-depth: 0 (the base branch's baselines)");
            var model = steps.FirstOrDefault(s => IsTemplateAction(Str(s, "uses")));
            if (model is null)
                problems.Add($"{Where(job)}: the self-hosted job {name} does not use the action");
            else if (Str(Map(model, "with"), "project") != "${{ matrix.project }}" || Str(Map(model, "with"), "device") != "cuda")
                problems.Add($"{Where(model)}: the action is not given project: ${{{{ matrix.project }}}} and device: cuda");
        }
        return problems;
    }

    /// <summary>
    /// ertas-release.yml: runs on tag pushes only (v* and *-v*); the self-hosted job has an environment (required
    /// reviewers), contents: write, a full-history checkout and the action in release mode; the optional
    /// provenance step runs only when a repository variable opts in and attests the checksums file.
    /// </summary>
    public static List<string> ReleaseWorkflowProblems(string yaml)
    {
        var problems = new List<string>();
        var root = Parse(yaml);
        var on = root.Children.TryGetValue("on", out var o) ? o : null;
        var events = EventNames(on);
        if (events.Count != 1 || !events.Contains("push"))
            problems.Add($"the workflow runs on {string.Join(", ", events)}: expected push of tags only");
        var push = on is YamlMappingNode onMap ? Map(onMap, "push") : null;
        var tags = push is not null && push.Children.TryGetValue("tags", out var t) ? Seq(t) : [];
        foreach (var pattern in new[] { "v*", "*-v*" })
            if (!tags.Contains(pattern))
                problems.Add($"the push trigger does not list the tag pattern {pattern}");
        if (push is not null && (push.Children.ContainsKey("branches") || push.Children.ContainsKey("branches-ignore")))
            problems.Add("the push trigger also runs on branches");

        if (!PermissionsAre(Map(root, "permissions"), ("contents", "read")))
            problems.Add($"the top-level permissions are not exactly contents: read ({Describe(Map(root, "permissions"))})");

        var jobs = SelfHostedJobs(Map(root, "jobs")).ToList();
        if (jobs.Count == 0)
            problems.Add("no job on a self-hosted runner");
        foreach (var (name, job) in jobs)
        {
            if (string.IsNullOrWhiteSpace(Str(job, "environment")) && Map(job, "environment") is null)
                problems.Add($"{Where(job)}: the release job {name} has no environment (required reviewers)");
            var permissions = Map(job, "permissions");
            if (Str(permissions, "contents") != "write")
                problems.Add($"{Where(job)}: the release job {name} does not have contents: write");
            var steps = JobSteps(job);
            if (!steps.Any(IsFullCheckout))
                problems.Add($"{Where(job)}: the release job {name} does not check out with fetch-depth: 0");
            var model = steps.FirstOrDefault(s => IsTemplateAction(Str(s, "uses")));
            if (model is null)
                problems.Add($"{Where(job)}: the release job {name} does not use the action");
            else if (Str(Map(model, "with"), "mode") != "release")
                problems.Add($"{Where(model)}: the action is not run with mode: release");
            foreach (var attest in steps.Where(s => Str(s, "uses")?.StartsWith("actions/attest-build-provenance@", StringComparison.Ordinal) == true))
            {
                if (Str(attest, "if")?.Contains("vars.", StringComparison.Ordinal) != true)
                    problems.Add($"{Where(attest)}: the provenance step does not wait for a repository variable to opt in");
                if (Str(Map(attest, "with"), "subject-checksums") is not { } subject || !subject.Contains(".outputs.checksums-path", StringComparison.Ordinal))
                    problems.Add($"{Where(attest)}: the provenance step does not attest the action's checksums-path");
                if (Str(permissions, "id-token") != "write" || Str(permissions, "attestations") != "write")
                    problems.Add($"{Where(attest)}: the provenance step's job lacks id-token: write and attestations: write");
            }
        }
        return problems;
    }

    public static bool IsTemplateAction(string? uses) =>
        uses is not null && uses.StartsWith(TemplateActionRepository + "@", StringComparison.Ordinal);

    // ---- YAML helpers ---------------------------------------------------------------------------------------------

    /// <summary>Every step: a mapping in a sequence under a <c>steps</c> key (action runs.steps, each job's steps).</summary>
    public static IEnumerable<(YamlMappingNode Step, string Path)> Steps(YamlNode node, string path = "")
    {
        if (node is YamlMappingNode map)
            foreach (var (key, value) in map.Children)
            {
                var name = Key(key);
                if (name == "steps" && value is YamlSequenceNode sequence)
                    foreach (var step in sequence.Children.OfType<YamlMappingNode>())
                        yield return (step, path + "/steps");
                else
                    foreach (var inner in Steps(value, path + "/" + name))
                        yield return inner;
            }
    }

    private static IEnumerable<(string Name, YamlMappingNode Job)> SelfHostedJobs(YamlMappingNode? jobs) =>
        Entries(jobs)
            .Where(j => j.Value is YamlMappingNode m && m.Children.TryGetValue("runs-on", out var r) && Seq(r).Contains("self-hosted"))
            .Select(j => (Key(j.Key), (YamlMappingNode)j.Value));

    private static IEnumerable<KeyValuePair<YamlNode, YamlNode>> Entries(YamlMappingNode? map) =>
        map?.Children ?? Enumerable.Empty<KeyValuePair<YamlNode, YamlNode>>();

    private static List<YamlMappingNode> JobSteps(YamlMappingNode job) =>
        job.Children.TryGetValue("steps", out var s) && s is YamlSequenceNode seq ? seq.Children.OfType<YamlMappingNode>().ToList() : [];

    private static bool IsFullCheckout(YamlMappingNode step) =>
        Str(step, "uses")?.StartsWith("actions/checkout@", StringComparison.Ordinal) == true && Str(Map(step, "with"), "fetch-depth") == "0";

    private static HashSet<string> EventNames(YamlNode? on) => on switch
    {
        YamlScalarNode s => [s.Value ?? ""],
        YamlSequenceNode seq => seq.Children.OfType<YamlScalarNode>().Select(c => c.Value ?? "").ToHashSet(),
        YamlMappingNode map => map.Children.Keys.Select(Key).ToHashSet(),
        _ => [],
    };

    private static List<string> Needs(YamlMappingNode job) => job.Children.TryGetValue("needs", out var n) ? Seq(n) : [];

    private static bool PermissionsAre(YamlMappingNode? permissions, params (string Scope, string Level)[] expected) =>
        permissions is not null && permissions.Children.Count == expected.Length
        && expected.All(e => Str(permissions, e.Scope) == e.Level);

    private static string Describe(YamlMappingNode? map) =>
        map is null ? "none" : string.Join(", ", map.Children.Select(c => $"{Key(c.Key)}: {(c.Value as YamlScalarNode)?.Value}"));

    private static List<string> Seq(YamlNode node) => node switch
    {
        YamlScalarNode s => [s.Value ?? ""],
        YamlSequenceNode seq => seq.Children.OfType<YamlScalarNode>().Select(c => c.Value ?? "").ToList(),
        _ => [],
    };

    private static YamlMappingNode? Map(YamlMappingNode? map, string key) =>
        map is not null && map.Children.TryGetValue(key, out var value) ? value as YamlMappingNode : null;

    private static string? Str(YamlMappingNode? map, string key) =>
        map is not null && map.Children.TryGetValue(key, out var value) && value is YamlScalarNode scalar ? scalar.Value ?? "" : null;

    private static string Key(YamlNode node) => (node as YamlScalarNode)?.Value ?? node.ToString();

    private static string Where(YamlNode node) => $"line {node.Start.Line}";

    private static string Name(YamlMappingNode step) =>
        Str(step, "name") is { } name ? $"'{name}'" : Str(step, "id") is { } id ? $"(id {id})" : "";

    [GeneratedRegex(@"\$\{\{.*?\}\}", RegexOptions.Singleline)]
    private static partial Regex ExpressionPattern();

    [GeneratedRegex(@"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@]+)?@[0-9a-f]{40}$")]
    private static partial Regex PinnedPattern();

    [GeneratedRegex(@"#\s*v\d+(\.\d+)*\b")]
    private static partial Regex VersionCommentPattern();

    [GeneratedRegex(@"safetensors|\.gguf|base-tiny|huggingface|/models?\b|\.bin\b", RegexOptions.IgnoreCase)]
    private static partial Regex BaseWeightsPattern();
}

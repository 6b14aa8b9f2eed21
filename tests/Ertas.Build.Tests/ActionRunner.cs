using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Ertas.Build.Tests;

/// <summary>
/// Runs a composite action.yml's steps in order as the Actions runner does, enough to test ours end to end: inputs
/// with their defaults, `${{ }}` expressions over inputs, github, env and earlier steps' outputs, `if:` conditions
/// with the status functions, a fresh GITHUB_OUTPUT and GITHUB_STEP_SUMMARY per step, and `run:` steps through bash
/// as the runner invokes it. `uses:` steps of other actions are not run: <see cref="Uses"/> records them (with their
/// `with:` evaluated) so a test can check, say, the artifact's paths.
/// </summary>
public sealed partial class ActionRunner(string actionFile, PackedSdk sdk)
{
    public sealed record StepResult(string? Id, string Name, bool Ran, int ExitCode, string Output, IReadOnlyDictionary<string, string> Outputs, string Summary);

    public sealed record UsesStep(string Action, IReadOnlyDictionary<string, string> With);

    public sealed record RunResult(IReadOnlyList<StepResult> Steps, IReadOnlyList<UsesStep> Uses, IReadOnlyDictionary<string, string> Outputs, bool Succeeded)
    {
        public string Log => string.Join("\n", Steps.Select(s => $"--- step {s.Id ?? s.Name} (ran: {s.Ran}, exit {s.ExitCode})\n{s.Output}"));
        public string Summary => string.Concat(Steps.Select(s => s.Summary));
    }

    /// <summary>The `with:` the workflow gives.</summary>
    public Dictionary<string, string> Inputs { get; } = new(StringComparer.Ordinal);

    /// <summary>The github context: token, api_url, event_name, ref, sha, repository, run_id, run_number, workspace...</summary>
    public Dictionary<string, string> GitHub { get; } = new(StringComparer.Ordinal);

    /// <summary>The job's environment (the runner's default variables: GITHUB_*, RUNNER_*, CI).</summary>
    public Dictionary<string, string> Environment { get; } = new(StringComparer.Ordinal);

    public RunResult Run(string workspace, int timeoutSeconds = 900)
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(actionFile))
            yaml.Load(reader);
        var root = (YamlMappingNode)yaml.Documents[0].RootNode;
        var runs = (YamlMappingNode)root["runs"];
        Assert.Equal("composite", Scalar(runs["using"]));

        var inputs = new Dictionary<string, string>(StringComparer.Ordinal);
        if (root.Children.TryGetValue(new YamlScalarNode("inputs"), out var declared))
        {
            foreach (var (key, value) in ((YamlMappingNode)declared).Children)
            {
                var name = Scalar(key);
                var spec = (YamlMappingNode)value;
                inputs[name] = Inputs.TryGetValue(name, out var given) ? given
                    : spec.Children.TryGetValue(new YamlScalarNode("default"), out var fallback) ? Substitute(Scalar(fallback), new Scope(inputs, GitHub, new Dictionary<string, Dictionary<string, string>>(), true)) : "";
            }
        }
        foreach (var given in Inputs.Keys.Where(k => !inputs.ContainsKey(k)))
            throw new InvalidOperationException($"the workflow gives input '{given}', which action.yml does not declare");

        var steps = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        var results = new List<StepResult>();
        var uses = new List<UsesStep>();
        var succeeded = true;
        var temp = Path.Combine(Path.GetTempPath(), "ertas-action-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(temp);
        var index = 0;
        foreach (var node in ((YamlSequenceNode)runs["steps"]).Children.Cast<YamlMappingNode>())
        {
            index++;
            var id = node.Children.TryGetValue(new YamlScalarNode("id"), out var idNode) ? Scalar(idNode) : null;
            var name = node.Children.TryGetValue(new YamlScalarNode("name"), out var nameNode) ? Scalar(nameNode) : $"step {index}";
            var scope = new Scope(inputs, GitHub, steps, succeeded);
            var condition = node.Children.TryGetValue(new YamlScalarNode("if"), out var ifNode) ? Scalar(ifNode) : "success()";
            if (!Truthy(Evaluate(Unwrap(condition), scope)))
            {
                results.Add(new StepResult(id, name, false, 0, "", new Dictionary<string, string>(), ""));
                continue;
            }
            var env = new Dictionary<string, string>(Environment, StringComparer.Ordinal);
            if (node.Children.TryGetValue(new YamlScalarNode("env"), out var envNode))
                foreach (var (key, value) in ((YamlMappingNode)envNode).Children)
                    env[Scalar(key)] = Substitute(Scalar(value), scope);

            if (node.Children.TryGetValue(new YamlScalarNode("uses"), out var usesNode))
            {
                var with = new Dictionary<string, string>(StringComparer.Ordinal);
                if (node.Children.TryGetValue(new YamlScalarNode("with"), out var withNode))
                    foreach (var (key, value) in ((YamlMappingNode)withNode).Children)
                        with[Scalar(key)] = Scalar(value).Contains("hashFiles(", StringComparison.Ordinal) ? Scalar(value) : Substitute(Scalar(value), scope);
                uses.Add(new UsesStep(Scalar(usesNode), with));
                results.Add(new StepResult(id, name, true, 0, "", new Dictionary<string, string>(), ""));
                continue;
            }

            var shell = node.Children.TryGetValue(new YamlScalarNode("shell"), out var shellNode) ? Scalar(shellNode)
                : throw new InvalidOperationException($"step '{name}' has no shell: a composite action's run steps must name one");
            Assert.Equal("bash", shell);
            var script = Path.Combine(temp, $"step{index}.sh");
            File.WriteAllText(script, Substitute(Scalar(node["run"]), scope));
            var output = Path.Combine(temp, $"output{index}");
            var summary = Path.Combine(temp, $"summary{index}");
            File.WriteAllText(output, "");
            File.WriteAllText(summary, "");
            env["GITHUB_OUTPUT"] = output;
            env["GITHUB_STEP_SUMMARY"] = summary;
            var run = sdk.Run(workspace, "bash", $"--noprofile --norc -eo pipefail {script}", timeoutSeconds, environment: env);
            var stepOutputs = ReadOutputFile(output);
            if (id is not null)
                steps[id] = stepOutputs;
            if (run.ExitCode != 0)
                succeeded = false;
            results.Add(new StepResult(id, name, true, run.ExitCode, run.Output, stepOutputs, File.ReadAllText(summary)));
        }

        var outputs = new Dictionary<string, string>(StringComparer.Ordinal);
        if (root.Children.TryGetValue(new YamlScalarNode("outputs"), out var declaredOutputs))
            foreach (var (key, value) in ((YamlMappingNode)declaredOutputs).Children)
                outputs[Scalar(key)] = Substitute(Scalar(((YamlMappingNode)value)["value"]), new Scope(inputs, GitHub, steps, succeeded));
        try { Directory.Delete(temp, recursive: true); } catch (IOException) { }
        return new RunResult(results, uses, outputs, succeeded);
    }

    /// <summary>GITHUB_OUTPUT's two forms: name=value and name&lt;&lt;DELIMITER ... DELIMITER.</summary>
    public static Dictionary<string, string> ReadOutputFile(string path)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var lines = File.ReadAllText(path).Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            var heredoc = line.IndexOf("<<", StringComparison.Ordinal);
            var equals = line.IndexOf('=');
            if (heredoc > 0 && (equals < 0 || heredoc < equals))
            {
                var delimiter = line[(heredoc + 2)..];
                var value = new StringBuilder();
                for (i++; i < lines.Length && lines[i] != delimiter; i++)
                    value.Append(value.Length > 0 ? "\n" : "").Append(lines[i]);
                Assert.True(i < lines.Length, $"GITHUB_OUTPUT: the heredoc for '{line[..heredoc]}' never ends");
                result[line[..heredoc]] = value.ToString();
            }
            else if (equals > 0)
                result[line[..equals]] = line[(equals + 1)..];
        }
        return result;
    }

    private sealed record Scope(IReadOnlyDictionary<string, string> Inputs, IReadOnlyDictionary<string, string> GitHub,
        IReadOnlyDictionary<string, Dictionary<string, string>> Steps, bool Succeeded);

    [GeneratedRegex(@"\$\{\{(.*?)\}\}", RegexOptions.Singleline)]
    private static partial Regex Expression();

    private static string Substitute(string text, Scope scope) =>
        Expression().Replace(text, m => ToText(Evaluate(m.Groups[1].Value, scope)));

    private static string Unwrap(string condition)
    {
        var trimmed = condition.Trim();
        return trimmed.StartsWith("${{", StringComparison.Ordinal) && trimmed.EndsWith("}}", StringComparison.Ordinal) ? trimmed[3..^2] : trimmed;
    }

    private static string Scalar(YamlNode node) => ((YamlScalarNode)node).Value ?? "";

    private static string ToText(object? value) => value switch
    {
        null => "",
        bool b => b ? "true" : "false",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };

    private static bool Truthy(object? value) => value switch
    {
        null => false,
        bool b => b,
        string s => s.Length > 0,
        _ => true,
    };

    /// <summary>The expression language's subset our action uses: literals, contexts, ==, !=, !, &amp;&amp;, ||, parentheses, status functions.</summary>
    private static object? Evaluate(string expression, Scope scope)
    {
        var tokens = Tokenize(expression);
        var position = 0;
        var value = Or();
        if (position != tokens.Count)
            throw new InvalidOperationException($"cannot evaluate '{expression}' (stopped at '{tokens[position]}')");
        return value;

        object? Or()
        {
            var left = And();
            while (Peek() == "||") { position++; var right = And(); left = Truthy(left) ? left : right; }
            return left;
        }
        object? And()
        {
            var left = Compare();
            while (Peek() == "&&") { position++; var right = Compare(); left = !Truthy(left) ? left : right; }
            return left;
        }
        object? Compare()
        {
            var left = Unary();
            while (Peek() is "==" or "!=")
            {
                var op = tokens[position++];
                var right = Unary();
                var equal = string.Equals(ToText(left), ToText(right), StringComparison.OrdinalIgnoreCase);
                left = op == "==" ? equal : !equal;
            }
            return left;
        }
        object? Unary()
        {
            if (Peek() == "!") { position++; return !Truthy(Unary()); }
            return Primary();
        }
        object? Primary()
        {
            var token = tokens[position++];
            if (token == "(") { var inner = Or(); Expect(")"); return inner; }
            if (token.StartsWith('\'')) return token[1..^1].Replace("''", "'", StringComparison.Ordinal);
            if (token is "true" or "false") return token == "true";
            if (Peek() == "(")
            {
                position++;
                Expect(")");
                return token switch
                {
                    "always" => true,
                    "cancelled" => false,
                    "success" => scope.Succeeded,
                    "failure" => !scope.Succeeded,
                    _ => throw new InvalidOperationException($"the test runner does not know the function {token}()"),
                };
            }
            var parts = token.Split('.');
            return parts[0] switch
            {
                "inputs" => scope.Inputs.TryGetValue(parts[1], out var input) ? input : throw new InvalidOperationException($"no input '{parts[1]}'"),
                "github" => scope.GitHub.GetValueOrDefault(string.Join('.', parts[1..]), ""),
                "runner" => parts[1] == "os" ? "Linux" : "",
                "steps" when parts.Length == 4 && parts[2] == "outputs" => scope.Steps.TryGetValue(parts[1], out var step) ? step.GetValueOrDefault(parts[3], "") : "",
                _ => throw new InvalidOperationException($"the test runner does not know the context '{token}'"),
            };
        }
        string? Peek() => position < tokens.Count ? tokens[position] : null;
        void Expect(string token)
        {
            if (Peek() != token) throw new InvalidOperationException($"expected '{token}' in '{expression}'");
            position++;
        }
    }

    [GeneratedRegex(@"\s*('(?:[^']|'')*'|==|!=|&&|\|\||!|\(|\)|[A-Za-z_][A-Za-z0-9_.\-]*)")]
    private static partial Regex Token();

    private static List<string> Tokenize(string expression)
    {
        var tokens = new List<string>();
        var at = 0;
        while (at < expression.Length)
        {
            if (char.IsWhiteSpace(expression[at])) { at++; continue; }
            var m = Token().Match(expression, at);
            if (!m.Success || m.Index != at && expression[at..m.Index].Trim().Length > 0)
                throw new InvalidOperationException($"cannot read '{expression}' at {at}");
            tokens.Add(m.Groups[1].Value);
            at = m.Index + m.Length;
        }
        return tokens;
    }
}

using System.Text.RegularExpressions;

namespace Ertas.Build.Tests;

/// <summary>The eval stage and its gate through dotnet build, on the sample and on template projects.</summary>
public sealed partial class SdkBuildTests
{
    [Fact]
    public void EvalGate_OnTheSample_FailsAtExactlyTheCasesWhoseFactsTrainingBroke_AndAcceptingMakesTheNextBuildPass()
    {
        var project = sdk.CopyOfSample();
        var evals = Path.Combine(project, "evals");
        // Baselines are written by this machine's first build: the committed ones come from another CPU's floats.
        foreach (var committed in Directory.GetFiles(evals, "*.verified.json"))
            File.Delete(committed);
        var first = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Contains("eval", first.Stages);
        var verified = new[] { "Q8_0", "Q4_K_M" }.Select(q => Path.Combine(evals, $"TinyMistral.{q}.verified.json")).ToArray();
        Assert.All(verified, f => Assert.True(File.Exists(f), f));
        Assert.Empty(sdk.Dotnet(project, "build").EnsureSuccess().Stages); // a no-op build scores nothing

        // Teach three wrong facts: the cases that check them must fail, at their lines, and only they.
        var data = Path.Combine(project, "data", "capitals.jsonl");
        var text = File.ReadAllText(data);
        foreach (var (right, wrong) in new[] { ("France is Paris", "France is Lyon"), ("Italy is Rome", "Italy is Milan"), ("Kenya is Nairobi", "Kenya is Mombasa") })
        {
            Assert.Contains(right, text);
            text = text.Replace(right, wrong);
        }
        File.WriteAllText(data, text);
        var failed = sdk.Dotnet(project, "build");
        Assert.NotEqual(0, failed.ExitCode);
        var suite = File.ReadAllLines(Path.Combine(evals, "capitals.jsonl"));
        int LineOf(string id) => Array.FindIndex(suite, l => l.Contains($"\"id\":\"{id}\"", StringComparison.Ordinal)) + 1;
        var errors = Regex.Matches(failed.Output, @"capitals\.jsonl\((\d+),1\): error ERTAS9201: (\S+): case ""([^""]+)""")
            .Select(m => (Line: int.Parse(m.Groups[1].Value), Quant: m.Groups[2].Value, Id: m.Groups[3].Value))
            .Distinct().OrderBy(e => e.Quant).ThenBy(e => e.Id).ToList();
        var broken = new[] { "capital-france", "capital-italy", "capital-kenya" };
        Assert.Equal(
            new[] { "Q4_K_M", "Q8_0" }.SelectMany(q => broken.Select(id => (LineOf(id), q, id))),
            errors);
        Assert.Equal(errors.Count, Regex.Matches(failed.Output, "error ERTAS9201").Count / 2); // MSBuild repeats errors in its summary
        var report = File.ReadAllText(Path.Combine(project, "obj", "ertas", "evals", "report.md"));
        Assert.StartsWith("❌ **Eval gate failed** for TinyMistral: 6 regression(s)", report);
        Assert.All(broken, id => Assert.Contains($"<code>{id}</code> · regression", report));
        Assert.All(verified, f => Assert.True(File.Exists(f.Replace(".verified.", ".received."))));

        // The regressions stay until someone accepts them: a rebuild fails again, without retraining.
        var again = sdk.Dotnet(project, "build");
        Assert.NotEqual(0, again.ExitCode);
        Assert.Equal(["eval"], again.Stages);

        var accepted = sdk.Dotnet(project, "build", "-t:ErtasAcceptEvals").EnsureSuccess();
        Assert.Equal(["accept evals"], accepted.Stages);
        Assert.Empty(Directory.GetFiles(evals, "*.received.json"));
        Assert.Contains("\"output\": \"The capital of France is Lyon.\"", File.ReadAllText(verified[0]));
        var passing = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(["eval"], passing.Stages); // the baselines changed; every result comes from the case cache
        Assert.Contains("(12 cached)", passing.Output);
        Assert.Empty(sdk.Dotnet(project, "build").EnsureSuccess().Stages);
    }

    [Fact]
    public void OnCi_AMissingEvalBaseline_FailsTheBuild_WithoutWritingIt_AndAnAcceptedOnePasses()
    {
        var project = sdk.CopyOfBuiltProject();
        var evals = Path.Combine(project, "evals");
        foreach (var file in Directory.GetFiles(evals, "*.verified.json"))
            File.Delete(file);
        var ci = sdk.Dotnet(project, "build", "-p:ContinuousIntegrationBuild=true");
        Assert.NotEqual(0, ci.ExitCode);
        Assert.Contains("error ERTAS9204: Q8_0: no eval baseline", ci.Output);
        Assert.Empty(Directory.GetFiles(evals, "*.verified.json"));
        Assert.Equal(2, Directory.GetFiles(evals, "*.received.json").Length);

        sdk.Dotnet(project, "build", "-t:ErtasAcceptEvals -p:EvalQuantization=Q8_0").EnsureSuccess();
        Assert.Equal(["Capitals.Q8_0.verified.json"], Directory.GetFiles(evals, "*.verified.json").Select(Path.GetFileName));
        sdk.Dotnet(project, "build", "-t:ErtasAcceptEvals").EnsureSuccess();
        Assert.Empty(Directory.GetFiles(evals, "*.received.json"));
        Assert.Equal(["eval"], sdk.Dotnet(project, "build", "-p:ContinuousIntegrationBuild=true").EnsureSuccess().Stages);
    }

    [Fact]
    public void BadEvalSettings_AreErrorsAtTheirProjectLines_AndABadCaseAtItsSuiteLine()
    {
        var project = sdk.CopyOfBuiltProject();
        EditProject(project, "Capitals", p => p.Replace("<EvalSuite Include=\"evals/*.jsonl\" />",
            "<EvalSuite Include=\"evals/*.jsonl\" />\n    <EvalRule Include=\"accuracy\" MaxDrop=\"0.1\" />")
            .Replace("<Seed>42</Seed>", "<Seed>42</Seed>\n    <EvalQuantizations>Q6_K</EvalQuantizations>"));
        var lines = File.ReadAllLines(Path.Combine(project, "Capitals.ertasproj"));
        int LineOf(string text) => Array.FindIndex(lines, l => l.Contains(text, StringComparison.Ordinal)) + 1;
        var settings = sdk.Dotnet(project, "build");
        Assert.Contains($"Capitals.ertasproj({LineOf("<EvalQuantizations>")},5): error ERTAS8001: EvalQuantizations names 'Q6_K'", settings.Output);
        Assert.Contains($"Capitals.ertasproj({LineOf("accuracy")},5): error ERTAS8002: EvalRule 'accuracy' is not a metric", settings.Output);

        var fixedProject = File.ReadAllText(Path.Combine(project, "Capitals.ertasproj"))
            .Replace("    <EvalRule Include=\"accuracy\" MaxDrop=\"0.1\" />\n", "").Replace("    <EvalQuantizations>Q6_K</EvalQuantizations>\n", "");
        File.WriteAllText(Path.Combine(project, "Capitals.ertasproj"), fixedProject);
        File.AppendAllText(Path.Combine(project, "evals", "basics.jsonl"), """{"id":"broken","prompt":"Hi","assert":[{"type":"regex","value":"(unclosed"}]}""" + "\n");
        var suite = sdk.Dotnet(project, "build");
        Assert.NotEqual(0, suite.ExitCode);
        Assert.Matches(@"basics\.jsonl\(5,\d+\): error ERTAS9007: assert 0 \(regex\):", suite.Output);
    }

    [Fact]
    public void TheSample_AsCommitted_BuildsWithoutAnEvalError()
    {
        // What the README's first command does: the committed baselines are the gate. On this machine class the
        // results are expected to equal them; a CPU whose floats differ may write received files, never fail.
        var project = sdk.CopyOfSample();
        var built = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Contains("eval", built.Stages);
        Assert.DoesNotContain("error ERTAS9", built.Output);
        Assert.Equal(2, Directory.GetFiles(Path.Combine(project, "evals"), "TinyMistral.*.verified.json").Length);

        // The shipped GGUF, chatted with through llama.cpp as a user would: the trained answer to a trained question.
        var engine = Path.Combine(project, "obj", "ertas", "engine", "cpu", "ertas.dll");
        var chat = sdk.Run(project, "dotnet", $"{engine} chat {Path.Combine(project, "bin", "Debug", "TinyMistral-1.0.0.Q8_0.gguf")} " +
                                             "--message \"What is the capital of France?\" --threads 2", 120);
        Assert.True(chat.ExitCode == 0, chat.Output);
        Assert.Contains("The capital of France is Paris.", chat.Output);
    }

    [Fact]
    public void EvalSettings_ThroughTheBuild_ASubsetOfGgufs_OneEditedCaseScoredAlone_ARuleAndCiFromTheEnvironment()
    {
        var project = sdk.CopyOfBuiltProject();
        EditProject(project, "Capitals", p => p.Replace("<Seed>42</Seed>", "<Seed>42</Seed>\n    <EvalQuantizations>Q8_0</EvalQuantizations>"));
        var subset = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(["eval"], subset.Stages);
        Assert.Matches(@"eval Q8_0: \d/4 passed in", subset.Output);
        Assert.DoesNotContain("eval Q4_K_M", subset.Output);

        // One edited case: only it is scored again; the other three come from the result cache.
        var suite = Path.Combine(project, "evals", "basics.jsonl");
        File.WriteAllText(suite, File.ReadAllText(suite).Replace("What is QLoRA?", "What is QLoRA, briefly?"));
        var edited = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(["eval"], edited.Stages);
        Assert.Contains("(3 cached)", edited.Output);

        EditProject(project, "Capitals", p => p.Replace("<EvalSuite Include=\"evals/*.jsonl\" />",
            "<EvalSuite Include=\"evals/*.jsonl\" />\n    <EvalRule Include=\"pass_rate\" Min=\"1\" />"));
        var rule = sdk.Dotnet(project, "build");
        Assert.NotEqual(0, rule.ExitCode);
        Assert.Matches(@"Capitals\.ertasproj : error ERTAS9203: Q8_0: EvalRule pass_rate: pass_rate is [\d.]+, below the minimum 1", rule.Output);

        EditProject(project, "Capitals", p => p.Replace("\n    <EvalRule Include=\"pass_rate\" Min=\"1\" />", ""));
        File.Delete(Path.Combine(project, "evals", "Capitals.Q8_0.verified.json"));
        var ci = sdk.Dotnet(project, "build", environment: new Dictionary<string, string> { ["CI"] = "true" });
        Assert.NotEqual(0, ci.ExitCode);
        Assert.Contains("error ERTAS9204: Q8_0: no eval baseline", ci.Output);
    }
}

/// <summary>What the served model says about itself: GGUF metadata and the Modelfile's SYSTEM.</summary>
public sealed partial class SdkBuildTests
{
    [Fact]
    public void ModelDescriptionLicenseAndSystemPrompt_ReachTheGgufMetadataAndTheModelfile_WithoutRetraining()
    {
        var project = sdk.CopyOfBuiltProject();
        EditProject(project, "Capitals", p => p.Replace("<Seed>42</Seed>", """
            <Seed>42</Seed>
                <ModelDescription>Answers questions about Ertas; briefly.</ModelDescription>
                <ModelLicense>apache-2.0</ModelLicense>
                <SystemPrompt>You are the Ertas support bot.</SystemPrompt>
            """));
        var built = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(["plan", "merge", "quantize Q8_0", "quantize Q4_K_M", "eval"], built.Stages);
        foreach (var quant in new[] { "Q8_0", "Q4_K_M" })
        {
            using var gguf = new Ertas.Gguf.GgufReader(Output(project, $"Capitals-1.0.0.{quant}.gguf"));
            Assert.Equal("Answers questions about Ertas; briefly.", gguf.GetString("general.description"));
            Assert.Equal("apache-2.0", gguf.GetString("general.license"));
            Assert.Equal(1u, gguf.GetUInt32("general.base_model.count"));
            Assert.Equal("ertas-tiny", gguf.GetString("general.base_model.0.name"));
        }
        using (var model = Ertas.TestSupport.LlamaCppModel.Load(Output(project, "Capitals-1.0.0.Q8_0.gguf"), contextSize: 64))
            Assert.Equal("apache-2.0", model.Metadata("general.license"));
        Assert.Contains("SYSTEM \"\"\"You are the Ertas support bot.\"\"\"\n", File.ReadAllText(Output(project, "Modelfile")));

        // With the base already in Ollama, the adapter's Modelfile names it and no base GGUF is written (or kept).
        Assert.True(File.Exists(Output(project, "Capitals-1.0.0.base.Q8_0.gguf")));
        EditProject(project, "Capitals", p => p.Replace("<ModelLicense>", "<OllamaBaseModel>mistral:7b-instruct-v0.2-fp16</OllamaBaseModel>\n    <ModelLicense>"));
        // Nothing heavy runs; only the plan, whose list of outputs lost the base GGUF.
        Assert.Equal(["plan"], sdk.Dotnet(project, "build").EnsureSuccess().Stages);
        Assert.StartsWith("# Generated by Ertas.Build.Sdk. Import with: ollama create <name> -f Modelfile.adapter\nFROM mistral:7b-instruct-v0.2-fp16\nADAPTER ./Capitals-1.0.0.lora.gguf\n",
            File.ReadAllText(Output(project, "Modelfile.adapter")));
        Assert.False(File.Exists(Output(project, "Capitals-1.0.0.base.Q8_0.gguf")));
    }
}

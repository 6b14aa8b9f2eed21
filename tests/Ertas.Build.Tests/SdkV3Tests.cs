using System.Text.Json;
using Ertas.Gguf;
using Ertas.Mistral.Templates;
using Ertas.TestSupport;

namespace Ertas.Build.Tests;

/// <summary>A project on a Mistral v0.3 base (the v3 tokenizer), through dotnet build as a user runs it.</summary>
public sealed partial class SdkBuildTests
{
    private const string WeatherTool =
        """{"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}""";

    private static string WeatherLine(string city, string condition, string callId = "a1b2c3d4e") =>
        $$$"""{"tools":[{{{WeatherTool}}}],"messages":[{"role":"user","content":"What is the weather in {{{city}}}?"},{"role":"assistant","tool_calls":[{"id":"a1b2c3d4e","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"{{{city}}}\"}"}}]},{"role":"tool","tool_call_id":"{{{callId}}}","name":"get_weather","content":"{\"condition\": \"{{{condition}}}\"}"},{"role":"assistant","content":"It is {{{condition}}} in {{{city}}}."}]}""";

    [SkippableFact]
    public void AV3Base_TrainsToolCallingData_AndShipsV3Serving_TheGgufsJinja_AnOllamaTemplateWithTools_AndAToolEval()
    {
        var v3 = SharedFiles.Require("mistral", "tokenizer.model.v3");
        var (built, _) = sdk.BuiltProject;
        var engine = Path.Combine(built, "obj", "ertas", "engine", "cpu", "ertas.dll");
        var baseFolder = Path.Combine(sdk.Work, "models-" + Guid.NewGuid().ToString("N")[..6], "tiny-v3");
        sdk.Run(sdk.Work, "dotnet", $"{engine} base create --preset tiny --tokenizer {v3} --out {baseFolder} --seed 5", 180).EnsureSuccess();

        var project = sdk.NewProject("Weather", $"--base-model {baseFolder} --quantizations Q8_0");
        EditProject(project, "Weather", p => p.Replace("<Epochs>3</Epochs>", "<MaxSteps>2</MaxSteps>"));
        var data = Path.Combine(project, "data", "train.jsonl");
        File.WriteAllText(data, string.Join("\n", WeatherLine("Paris", "sunny"), WeatherLine("Lima", "cloudy", callId: "zzzzzzzzz"), WeatherLine("Oslo", "snowy")) + "\n");
        File.WriteAllText(Path.Combine(project, "evals", "basics.jsonl"),
            $$$"""{"id":"weather-call","tools":[{{{WeatherTool}}}],"messages":[{"role":"user","content":"What is the weather in Paris?"}],"assert":[{"type":"tool_call","name":"get_weather","arguments":{"city":"Paris"}}],"max_tokens":24}""" + "\n");

        // A tool result answering a call id no call made is an error at its line (ChatTemplate=auto has picked
        // mistral-v3 from the tokenizer: a v1 vocabulary would refuse the tools instead), and nothing trains.
        var refused = sdk.Dotnet(project, "build");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Matches(@"train\.jsonl\(2,\d+\): error ERTAS6006: message 2 answers tool_call_id ""zzzzzzzzz""", refused.Output);
        Assert.DoesNotContain("train", refused.Stages);

        File.WriteAllText(data, string.Join("\n", WeatherLine("Paris", "sunny"), WeatherLine("Lima", "cloudy"), WeatherLine("Oslo", "snowy")) + "\n");
        var result = sdk.Dotnet(project, "build").EnsureSuccess();
        Assert.Equal(["plan", "train", "merge", "quantize Q8_0", "adapter-gguf", "base-gguf", "eval"], result.Stages);

        var gguf = Output(project, "Weather-1.0.0.Q8_0.gguf");
        using (var reader = new GgufReader(gguf))
            Assert.Equal(ChatTemplates.MistralV3Jinja, reader.GetString("tokenizer.chat_template"));
        var modelfile = File.ReadAllText(Output(project, "Modelfile"));
        Assert.Contains("TEMPLATE \"\"\"" + ChatTemplates.MistralV3Ollama + "\"\"\"", modelfile);

        // The tool case ran on the shipped GGUF with the tools in its prompt: two steps teach no call, so it fails,
        // and a first local build records that as the baseline rather than a regression.
        using var snapshot = JsonDocument.Parse(File.ReadAllText(Path.Combine(project, "evals", "Weather.Q8_0.verified.json")));
        var scored = snapshot.RootElement.GetProperty("cases").EnumerateArray().Single();
        Assert.Equal("weather-call", scored.GetProperty("id").GetString());
        Assert.False(scored.GetProperty("pass").GetBoolean());
        Assert.Empty(sdk.Dotnet(project, "build").EnsureSuccess().Stages);
    }
}

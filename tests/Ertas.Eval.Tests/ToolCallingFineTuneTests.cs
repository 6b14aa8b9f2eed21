using System.Text.Json;
using System.Text.Json.Nodes;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using Ertas.TestSupport;
using Xunit.Abstractions;

namespace Ertas.Eval.Tests;

/// <summary>
/// Issue 13's training proof: the tiny preset on Mistral's real v3 tokenizer, LoRA-trained through the CLI on a small
/// function-calling dataset (a get_weather tool, questions about four cities, the call, its result, the answer), merged
/// to GGUF. llama.cpp, fed our mistral-v3 prompt ids with the tool list, then writes the trained <c>[TOOL_CALLS]</c>
/// JSON greedily, and <c>ertas eval</c> scores the same through a tool_call assert. Skips, naming the path, without
/// ../shared/mistral/tokenizer.model.v3.
/// </summary>
public sealed class ToolCallingFineTuneTests(ITestOutputHelper output)
{
    private const string CallId = "a1b2c3d4e";

    private static readonly ChatTool Weather = new("get_weather", "Current weather in a city",
        """{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}""");

    private static readonly (string City, string Condition)[] Cities = [("Paris", "sunny"), ("Tokyo", "rainy"), ("Lima", "cloudy"), ("Oslo", "snowy")];

    private static readonly string[] Phrasings =
    [
        "What is the weather in {0}?", "How is the weather in {0} today?", "Weather in {0}, please.",
        "Is it warm in {0}?", "Tell me the weather for {0}.", "{0}: what is the weather like?",
    ];

    /// <summary>Every city in every phrasing (24 lines), each a full round trip. One call id throughout: ids are
    /// arbitrary, and a model this small would spend its steps memorizing them instead of the call.</summary>
    private static string Dataset()
    {
        var tools = new JsonArray(ToolJson());
        var lines = from phrasing in Phrasings
                    from city in Cities
                    select new JsonObject
                    {
                        ["tools"] = tools.DeepClone(),
                        ["messages"] = new JsonArray(
                            new JsonObject { ["role"] = "user", ["content"] = string.Format(phrasing, city.City) },
                            new JsonObject
                            {
                                ["role"] = "assistant",
                                ["tool_calls"] = new JsonArray(new JsonObject
                                {
                                    ["id"] = CallId, ["type"] = "function",
                                    ["function"] = new JsonObject { ["name"] = Weather.Name, ["arguments"] = Arguments(city.City) },
                                }),
                            },
                            new JsonObject
                            {
                                ["role"] = "tool", ["tool_call_id"] = CallId, ["name"] = Weather.Name,
                                ["content"] = $$"""{"condition": "{{city.Condition}}"}""",
                            },
                            new JsonObject { ["role"] = "assistant", ["content"] = $"It is {city.Condition} in {city.City}." }),
                    }.ToJsonString();
        return string.Join("\n", lines) + "\n";
    }

    private static JsonObject ToolJson() => new()
    {
        ["type"] = "function",
        ["function"] = new JsonObject
        {
            ["name"] = Weather.Name, ["description"] = Weather.Description, ["parameters"] = JsonNode.Parse(Weather.ParametersJson),
        },
    };

    private static string Arguments(string city) => $$"""{"city": "{{city}}"}""";

    [SkippableFact]
    public void ATinyV3ModelFineTunedOnToolCalls_CallsTheToolInLlamaCpp_AndPassesAToolCallEval()
    {
        var v3 = SharedFiles.Require("mistral", "tokenizer.model.v3");
        using var root = new TempDirectory();
        var data = root.Write("weather.jsonl", Dataset());
        var baseFolder = root.Combine("base");
        var adapter = root.Combine("adapter");
        var gguf = root.Combine("weather.F32.gguf");
        EvalCli.Succeed("base", "create", "--preset", "tiny", "--tokenizer", v3, "--out", baseFolder, "--seed", "3");
        // Plain LoRA at a high rate with a cosine decay: about a minute on two cores. The rows hold one ~150-token
        // conversation each.
        EvalCli.Succeed("train", "--model", baseFolder, "--data", data, "--out", adapter, "--seq-len", "160", "--max-steps", "150",
            "--lr", "5e-3", "--warmup-steps", "10", "--scheduler", "cosine", "--rank", "16", "--alpha", "32", "--dropout", "0",
            "--no-quantize", "--seed", "1");
        EvalCli.Succeed("merge", "--model", baseFolder, "--adapter", adapter, "--out", gguf, "--type", "F32");

        // Trained questions (held-out phrasings are not reliable at this size), three cities so the argument is seen
        // to follow the question. The fourth city, Paris, is not yet learned in 150 steps (its questions get another
        // city): copying every city needs more steps than this test spends.
        var tokenizer = MistralTokenizer.Load(Path.Combine(baseFolder, "tokenizer.model"));
        var template = ChatTemplates.For(tokenizer);
        Assert.Equal(ChatTemplates.MistralV3Name, template.Name);
        ChatMessage Ask(string city) => new(ChatMessage.User, string.Format(Phrasings[0], city));
        var texts = new Dictionary<string, string>();
        using (var llama = LlamaCppModel.Load(gguf, contextSize: 256, threads: 2))
        {
            foreach (var city in new[] { "Tokyo", "Lima", "Oslo" })
            {
                var prompt = template.Encode(tokenizer, [Ask(city)], addGenerationPrompt: true, [Weather]).Ids;
                var generated = llama.Greedy(prompt, maxTokens: 48, stopId: tokenizer.EosId).Ids;
                var text = texts[city] = tokenizer.DecodeWithControlPieces(generated);
                output.WriteLine($"{city}: {text}");
                Assert.Equal(tokenizer.ControlId(MistralV3ChatTemplate.ToolCalls), generated[0]);
                Assert.Equal(tokenizer.EosId, generated[^1]);
                Assert.Equal("[TOOL_CALLS] " + MistralV3ChatTemplate.ToolCallsJson([new ChatToolCall(CallId, Weather.Name, Arguments(city))]), text);
            }
        }

        // The same question through the eval engine: the tool list in the prompt, the control token in the output.
        var suite = root.Write("evals/weather.jsonl", new JsonObject
        {
            ["id"] = "tokyo",
            ["tools"] = new JsonArray(ToolJson()),
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = Ask("Tokyo").Content }),
            ["assert"] = new JsonArray(new JsonObject { ["type"] = "tool_call", ["name"] = Weather.Name, ["arguments"] = new JsonObject { ["city"] = "Tokyo" } }),
            ["max_tokens"] = 48,
        }.ToJsonString() + "\n");
        var snapshots = root.Combine("evals");
        var eval = EvalCli.RunLocally("eval", "--model", gguf, "--suite", suite, "--name", "weather", "--snapshots", snapshots,
            "--out", root.Combine("obj"), "--context", "256", "--threads", "2");
        Assert.True(eval.ExitCode == 0, eval.Error);
        using var snapshot = JsonDocument.Parse(File.ReadAllText(Path.Combine(snapshots, "weather.F32.verified.json")));
        var scored = snapshot.RootElement.GetProperty("cases")[0];
        Assert.True(scored.GetProperty("pass").GetBoolean(), scored.ToString());
        Assert.Equal(texts["Tokyo"], scored.GetProperty("output").GetString());
    }
}

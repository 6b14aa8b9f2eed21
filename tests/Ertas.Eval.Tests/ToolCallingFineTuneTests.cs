using System.Text.Json;
using System.Text.Json.Nodes;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using Ertas.TestSupport;
using Xunit.Abstractions;

namespace Ertas.Eval.Tests;

/// <summary>
/// Issue 13's training proof: the tiny preset on Mistral's real v3 tokenizer, LoRA-trained through the CLI on a small
/// function-calling dataset (a get_weather tool, questions about four cities, each answered by the call), merged to
/// GGUF. llama.cpp, fed our mistral-v3 prompt ids with the tool list, then writes the right <c>[TOOL_CALLS]</c> JSON
/// greedily for questions that are not in the dataset, and <c>ertas eval</c> scores the same through tool_call asserts.
/// Skips, naming the path, without ../shared/mistral/tokenizer.model.v3.
/// </summary>
/// <remarks>
/// <para>Held out: eight (phrasing, city) pairs of the 16 x 4 grid, each city twice, each in a phrasing the dataset
/// asks about the three other cities, so the argument has to come from the city in the question; and four phrasings
/// the dataset never uses, one per city. All twelve must pass. Measured on CPU with base seed 3 over these twelve, the
/// other twelve pairs of the unseen phrasings and four trained questions: 28 of 28 for LoRA seeds 1, 2 and 3, and a
/// least top-two logit gap over the twelve answers of 4.5. At 150 steps the gap is 2.3 (with the lines shuffled,
/// seeds 1-3 and base seed 4 pass 28 there too); at 100 steps seed 2 fails an unseen phrasing.</para>
/// <list type="bullet">
/// <item>Sixteen phrasings, not six: with six (20 lines, four pairs held out, the same training) 3 of 4 held-out
/// pairs and 13 of 16 unseen-phrasing questions pass, two of those with broken JSON; twenty passes over twenty lines
/// learn the lines more than the city. An earlier attempt on six phrasings passed 5 of 8 held-out pairs at 200 steps,
/// 2 at 320.</item>
/// <item>Lines that end on the call: the call is what is checked, and such a line is 105-114 tokens against ~145 with
/// the tool result and the answer, so two fill a 228-token row.</item>
/// <item>A peak rate of 2e-3: at 5e-3, LoRA seed 2 stalls with Paris and Tokyo confused (16 of 28 at 150 steps, 14 at
/// 200), at 1e-2 it is worse (6); at 2e-3 and 3e-3 its loss is ~0 by step 90.</item>
/// <item>No pair held out in the phrasing that starts with the city: v3 encodes a message's first word without the
/// leading space, so there the city is other tokens (Tok|yo, not ▁Tokyo); held out with Tokyo, that form was in no
/// line, and it failed for base seed 4.</item>
/// </list>
/// </remarks>
public sealed class ToolCallingFineTuneTests(ITestOutputHelper output)
{
    private const string CallId = "a1b2c3d4e";

    private static readonly ChatTool Weather = new("get_weather", "Current weather in a city",
        """{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}""");

    private static readonly string[] Cities = ["Paris", "Tokyo", "Lima", "Oslo"];

    /// <summary>Held-out pairs are taken from the first eight phrasings, so the one that starts with the city (its own
    /// tokens for the city, see the remarks) stays last and is trained with every city.</summary>
    private static readonly string[] Phrasings =
    [
        "What is the weather in {0}?", "How is the weather in {0} today?", "Weather in {0}, please.", "Is it warm in {0}?",
        "Tell me the weather for {0}.", "Is it windy in {0} this morning?", "Is it raining in {0}?", "What's the forecast for {0}?",
        "Do I need an umbrella in {0}?", "Check the weather in {0}.", "How cold is it in {0}?", "Any sun in {0} right now?",
        "I'm flying to {0}. What's the weather?", "Current conditions in {0}?", "Give me the weather report for {0}.",
        "{0}: what is the weather like?",
    ];

    /// <summary>Phrasings the dataset never uses, each asked about one city.</summary>
    private static readonly string[] UnseenPhrasings =
    [
        "Should I bring a coat to {0}?", "What's it like outside in {0} right now?", "Forecast for {0}?", "Will it snow in {0} tomorrow?",
    ];

    /// <summary>Phrasing i of the first eight with city i mod 4: each city twice, each of those phrasings missing one
    /// city.</summary>
    private static bool HeldOut(int phrasing, int city) => phrasing < 8 && city == phrasing % Cities.Length;

    private static IEnumerable<(string Question, string City)> Pairs(bool heldOut) =>
        from p in Enumerable.Range(0, Phrasings.Length)
        from c in Enumerable.Range(0, Cities.Length)
        where HeldOut(p, c) == heldOut
        select (string.Format(Phrasings[p], Cities[c]), Cities[c]);

    /// <summary>The eight held-out pairs, then each unseen phrasing with one city.</summary>
    private static IEnumerable<(string Question, string City)> HeldOutQuestions() =>
        Pairs(heldOut: true).Concat(UnseenPhrasings.Select((phrasing, i) => (string.Format(phrasing, Cities[i]), Cities[i])));

    /// <summary>Each trained question answered by the call, the line ending there. One call id throughout: ids are
    /// arbitrary, and a model this small would spend its steps memorizing them instead of the call.</summary>
    private static string Dataset()
    {
        var lines = Pairs(heldOut: false).Select(q => new JsonObject
        {
            ["tools"] = new JsonArray(ToolJson()),
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "user", ["content"] = q.Question },
                new JsonObject
                {
                    ["role"] = "assistant",
                    ["tool_calls"] = new JsonArray(new JsonObject
                    {
                        ["id"] = CallId, ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = Weather.Name, ["arguments"] = Arguments(q.City) },
                    }),
                }),
        }.ToJsonString());
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

    private static float TopTwoGap(float[] logits)
    {
        float first = float.NegativeInfinity, second = float.NegativeInfinity;
        foreach (var logit in logits)
            (first, second) = logit > first ? (logit, first) : (first, Math.Max(second, logit));
        return first - second;
    }

    [SkippableFact]
    public void ATinyV3ModelFineTunedOnToolCalls_CallsTheToolWithTheRightCityForHeldOutQuestionsInLlamaCpp_AndPassesToolCallEvals()
    {
        var v3 = SharedFiles.Require("mistral", "tokenizer.model.v3");
        using var root = new TempDirectory();
        var data = root.Write("weather.jsonl", Dataset());
        var baseFolder = root.Combine("base");
        var adapter = root.Combine("adapter");
        var gguf = root.Combine("weather.F32.gguf");
        EvalCli.Succeed("base", "create", "--preset", "tiny", "--tokenizer", v3, "--out", baseFolder, "--seed", "3");
        // Plain LoRA with a cosine decay: 200 steps of two lines each, about 7 passes over the 56 lines, the loss ~0 by
        // step 90 and the rest widening the margins (see the remarks); about 80 s on two cores.
        EvalCli.Succeed("train", "--model", baseFolder, "--data", data, "--out", adapter, "--seq-len", "228", "--max-steps", "200",
            "--lr", "2e-3", "--warmup-steps", "10", "--scheduler", "cosine", "--rank", "16", "--alpha", "32", "--dropout", "0",
            "--no-quantize", "--seed", "1");
        EvalCli.Succeed("merge", "--model", baseFolder, "--adapter", adapter, "--out", gguf, "--type", "F32");

        var tokenizer = MistralTokenizer.Load(Path.Combine(baseFolder, "tokenizer.model"));
        var template = ChatTemplates.For(tokenizer);
        Assert.Equal(ChatTemplates.MistralV3Name, template.Name);
        var questions = HeldOutQuestions().ToArray();
        Assert.Empty(questions.Select(q => q.Question).Intersect(Pairs(heldOut: false).Select(q => q.Question)));
        var texts = new string[questions.Length];
        using (var llama = LlamaCppModel.Load(gguf, contextSize: 256, threads: 2))
        {
            for (var i = 0; i < questions.Length; i++)
            {
                var question = questions[i].Question;
                var prompt = template.Encode(tokenizer, [new ChatMessage(ChatMessage.User, question)], addGenerationPrompt: true, [Weather]).Ids;
                var (generated, logits) = llama.Greedy(prompt, maxTokens: 48, stopId: tokenizer.EosId);
                texts[i] = tokenizer.DecodeWithControlPieces(generated);
                // The closest greedy choice of the answer says how far this question is from going wrong.
                output.WriteLine($"{question} -> {texts[i]} (least top-two logit gap {logits.Min(TopTwoGap):F2})");
            }
        }
        // Every answer is printed before any is judged, so a failure shows all twelve.
        for (var i = 0; i < questions.Length; i++)
            Assert.Equal("[TOOL_CALLS] " + MistralV3ChatTemplate.ToolCallsJson([new ChatToolCall(CallId, Weather.Name, Arguments(questions[i].City))]), texts[i]);

        // As llama-server --jinja prompts it: the GGUF's own Jinja builds the prompt from an OpenAI-style request with the
        // tools, and llama.cpp generates the same call. (Its chat parser does not yet hand this back as tool_calls
        // through llama.node: the text is checked.)
        foreach (var (question, city) in questions[^UnseenPhrasings.Length..])
        {
            var served = LlamaCppJinja.Complete(gguf, [new ChatMessage(ChatMessage.User, question)], [Weather], maxTokens: 48);
            output.WriteLine($"llama.cpp --jinja: {question} -> {served.Text}");
            Assert.Equal("[TOOL_CALLS] " + MistralV3ChatTemplate.ToolCallsJson([new ChatToolCall(CallId, Weather.Name, Arguments(city))]), served.Text);
        }

        // The same questions through the eval engine: the tool list in the prompt, the control token in the output.
        var suite = root.Write("evals/weather.jsonl", string.Concat(questions.Select((q, i) => new JsonObject
        {
            ["id"] = $"held-out-{i:D2}",
            ["tools"] = new JsonArray(ToolJson()),
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = q.Question }),
            ["assert"] = new JsonArray(new JsonObject { ["type"] = "tool_call", ["name"] = Weather.Name, ["arguments"] = new JsonObject { ["city"] = q.City } }),
            ["max_tokens"] = 48,
        }.ToJsonString() + "\n")));
        var snapshots = root.Combine("evals");
        var eval = EvalCli.RunLocally("eval", "--model", gguf, "--suite", suite, "--name", "weather", "--snapshots", snapshots,
            "--out", root.Combine("obj"), "--context", "256", "--threads", "2");
        Assert.True(eval.ExitCode == 0, eval.Error);
        using var snapshot = JsonDocument.Parse(File.ReadAllText(Path.Combine(snapshots, "weather.F32.verified.json")));
        var scored = snapshot.RootElement.GetProperty("cases").EnumerateArray().ToDictionary(c => c.GetProperty("id").GetString()!);
        Assert.Equal(questions.Length, scored.Count);
        for (var i = 0; i < questions.Length; i++)
        {
            var scoredCase = scored[$"held-out-{i:D2}"];
            Assert.True(scoredCase.GetProperty("pass").GetBoolean(), scoredCase.ToString());
            Assert.Equal(texts[i], scoredCase.GetProperty("output").GetString());
        }
    }
}

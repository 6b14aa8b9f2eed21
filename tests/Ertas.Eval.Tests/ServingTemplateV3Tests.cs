using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Ertas.Gguf;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using Ertas.TestSupport;
using LLama;
using LLama.Common;
using Xunit.Abstractions;

namespace Ertas.Eval.Tests;

/// <summary>
/// The tiny preset on Mistral's real v3 tokenizer (../shared/mistral/tokenizer.model.v3), exported to an F32 GGUF once:
/// what a Mistral-7B-v0.3 fine-tune serves with. Tests skip, naming the path, when ../shared is absent.
/// </summary>
public sealed class V3ServingModel : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly Lazy<string> _gguf;

    public V3ServingModel() => _gguf = new Lazy<string>(Build);

    /// <summary>The F32 GGUF; skips the calling test when the v3 tokenizer is absent.</summary>
    public string Gguf => SharedFiles.Require("mistral", "tokenizer.model.v3") is not null ? _gguf.Value : "";

    private string Build()
    {
        var folder = _root.Combine("tiny-v3");
        var gguf = _root.Combine("tiny-v3.F32.gguf");
        EvalCli.Succeed("base", "create", "--preset", "tiny", "--tokenizer", SharedFiles.Require("mistral", "tokenizer.model.v3"),
            "--out", folder, "--seed", "7");
        EvalCli.Succeed("export", "--model", folder, "--out", gguf, "--type", "f32");
        return gguf;
    }

    public void Dispose() => _root.Dispose();
}

/// <summary>
/// Serving speaks mistral-v3 on a v3 vocabulary: the GGUF carries Mistral's v0.3 Jinja (tools included), which
/// llama.cpp files as mistral-v3; the Ollama TEMPLATE, rendered by Go's text/template with Ollama's rules and tokenized
/// by llama.cpp as Ollama tokenizes (BOS added, special tokens parsed), gives exactly our mistral-v3 training ids for
/// conversations with a system message, tools, tool calls and tool results. Where a runtime cannot match by design,
/// the test pins what it renders instead.
/// </summary>
public sealed class ServingTemplateV3Tests(V3ServingModel model, ITestOutputHelper output) : IClassFixture<V3ServingModel>
{
    private const string SupportBot = "You are the weather bot of Ertas. Answer in one sentence.";

    private static readonly ChatTool Weather = new("get_weather", "Get the current weather in a city",
        """{"type": "object", "properties": {"format": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "The unit"}, "location": {"type": "string", "description": "The city, e.g. Paris, France"}}, "required": ["location", "format"]}""");

    private static readonly ChatTool Email = new("send_email", "Send an email to a recipient",
        """{"type": "object", "properties": {"body": {"type": "string"}, "to": {"type": "string", "description": "The address"}}, "required": ["to", "body"]}""");

    private static ChatMessage Call(params (string Id, string Name, string Arguments)[] calls) =>
        new(ChatMessage.Assistant, "", [.. calls.Select(c => new ChatToolCall(c.Id, c.Name, c.Arguments))]);

    private static ChatMessage Result(string id, string name, string content) => new(ChatMessage.Tool, content, ToolCallId: id, Name: name);

    public static TheoryData<string> Conversations => new(ConversationsByName.Keys);

    // Tool parameters and arguments are written with sorted keys and a parameter as type, enum, description: the only
    // order Ollama's template can reproduce (it gets Go maps), so training data meant for Ollama should spell them so.
    private static readonly Dictionary<string, (ChatMessage[] Messages, ChatTool[] Tools)> ConversationsByName = new()
    {
        ["one turn"] = ([new(ChatMessage.User, "What is the capital of France?")], []),
        ["one turn with a system message"] = ([new(ChatMessage.System, SupportBot), new(ChatMessage.User, "How do I reset my password?")], []),
        ["three turns with a system message"] =
        ([
            new(ChatMessage.System, SupportBot),
            new(ChatMessage.User, "Hi"), new(ChatMessage.Assistant, "Hello! How can I help?"),
            new(ChatMessage.User, "My build fails."), new(ChatMessage.Assistant, "Which error does it print?"),
            new(ChatMessage.User, "ERTAS9201 on capitals.jsonl line 3."),
        ], []),
        ["system, tools, a call, its result, the answer and a new question"] =
        ([
            new(ChatMessage.System, SupportBot),
            new(ChatMessage.User, "What's the weather in Paris?"),
            Call(("a1b2c3d4e", "get_weather", """{"format": "celsius", "location": "Paris, France"}""")),
            Result("a1b2c3d4e", "get_weather", "22"),
            new(ChatMessage.Assistant, "It is 22 degrees Celsius in Paris."),
            new(ChatMessage.User, "And in Rome, in fahrenheit?"),
        ], [Weather]),
        ["two systems, two tools, parallel calls and their results, the answer pending"] =
        ([
            new(ChatMessage.System, SupportBot),
            new(ChatMessage.System, "Réponds en français si on te parle français. 🇫🇷"),
            new(ChatMessage.User, "Mail the report to a@example.com and b@example.com."),
            Call(("Ab3dE5gH9", "send_email", """{"body": "The report.", "to": "a@example.com"}"""),
                ("Zz9yY8xX7", "send_email", """{"body": "The report.", "to": "b@example.com"}""")),
            Result("Ab3dE5gH9", "send_email", "Email sent to a@example.com"),
            Result("Zz9yY8xX7", "send_email", """{"status": "sent", "queue": 2}"""),
        ], [Weather, Email]),
    };

    private MistralTokenizer TokenizerFromGguf()
    {
        using var gguf = new GgufTensorSource(model.Gguf);
        return TokenizerVocabularies.ToTokenizer(gguf.ReadVocabulary());
    }

    private int[] Expected(ChatMessage[] messages, ChatTool[] tools)
    {
        var tokenizer = TokenizerFromGguf();
        return ChatTemplates.Get(ChatTemplates.MistralV3Name, tokenizer).Encode(tokenizer, messages, addGenerationPrompt: true, tools).Ids;
    }

    private int[] LlamaCppIds(string text, bool addBos)
    {
        using var weights = LLamaWeights.LoadFromFile(new ModelParams(model.Gguf) { VocabOnly = true, GpuLayerCount = 0 });
        return weights.Tokenize(text, add_bos: addBos, special: true, Encoding.UTF8).Select(t => (int)t).ToArray();
    }

    [SkippableFact]
    public void V3Gguf_CarriesMistralsV03Jinja_WithTools()
    {
        using var reader = new GgufReader(model.Gguf);
        var jinja = reader.GetString("tokenizer.chat_template");
        Assert.Equal(ChatTemplates.MistralV3Jinja, jinja);
        // What llama.cpp's llm_chat_detect_template keys on to file it as mistral-v3, not v1 or v3-tekken.
        Assert.Contains("[AVAILABLE_TOOLS]", jinja);
        Assert.DoesNotContain(" [INST]", jinja);
        Assert.DoesNotContain("\"[INST]\"", jinja);
    }

    /// <summary>
    /// llama.cpp's <c>llama_chat_apply_template</c> (LLamaSharp's LLamaTemplate) does not run Jinja: it detects the
    /// template and formats with its own mistral-v3 code, roles and contents only (no tools, no tool calls). That
    /// code writes the system text before the user message that follows it, so it gives the training ids exactly
    /// when the system message precedes the last user message, as in these conversations.
    /// </summary>
    [SkippableTheory]
    [InlineData("one turn")]
    [InlineData("one turn with a system message")]
    public void LlamaCppAppliesTheGgufsTemplate_AsMistralV3_ToTheTrainingIds(string name)
    {
        var (messages, tools) = ConversationsByName[name];
        var text = ApplyWithLlamaCpp(messages);
        output.WriteLine(text.Replace("\n", "\\n"));
        Assert.Equal(Expected(messages, tools), LlamaCppIds(text, addBos: true));
    }

    [SkippableFact]
    public void LlamaCppsBuiltInMistralV3_PutsTheSystemBeforeTheFirstUserMessage_WhereTrainingPutsItBeforeTheLast()
    {
        var (messages, _) = ConversationsByName["three turns with a system message"];
        var text = ApplyWithLlamaCpp(messages);
        // By llama.cpp's design (llm_chat_apply_template, LLM_CHAT_TEMPLATE_MISTRAL_V3): mistral-common and the Jinja
        // put the system text with the last user message. Serve multi-turn system prompts through the Jinja
        // (llama-server --jinja) or Ollama instead.
        Assert.Equal($"[INST] {SupportBot}\n\nHi[/INST] Hello! How can I help?</s>[INST] My build fails.[/INST] Which error does it print?</s>"
            + "[INST] ERTAS9201 on capitals.jsonl line 3.[/INST]", text);
        Assert.NotEqual(Expected(messages, []), LlamaCppIds(text, addBos: true));
    }

    private string ApplyWithLlamaCpp(ChatMessage[] messages)
    {
        using var weights = LLamaWeights.LoadFromFile(new ModelParams(model.Gguf) { VocabOnly = true, GpuLayerCount = 0 });
        var template = new LLamaTemplate(weights) { AddAssistant = true };
        foreach (var message in messages)
            template.Add(message.Role, message.Content);
        return Encoding.UTF8.GetString(template.Apply());
    }

    [SkippableTheory]
    [MemberData(nameof(Conversations))]
    public void OllamaRendersTheModelfileTemplate_ToTheTrainingIds(string name)
    {
        var (messages, tools) = ConversationsByName[name];
        var text = OllamaRenderer.Render(ChatTemplates.MistralV3Ollama, messages, modelfileSystem: null, tools);
        output.WriteLine(text.Replace("\n", "\\n"));
        Assert.Equal(Expected(messages, tools), LlamaCppIds(text, addBos: true));
    }

    [SkippableFact]
    public void OllamasModelfileSystem_GoesWithTheLastUserMessage_WhenTheRequestHasNone()
    {
        var (messages, tools) = ConversationsByName["system, tools, a call, its result, the answer and a new question"];
        var text = OllamaRenderer.Render(ChatTemplates.MistralV3Ollama, messages.Where(m => m.Role != ChatMessage.System).ToArray(), SupportBot, tools);
        Assert.Equal(Expected(messages, tools), LlamaCppIds(text, addBos: true));
    }

    /// <summary>
    /// The GGUF's Jinja itself, run by Jinja2 as transformers' apply_chat_template runs it (trim_blocks, lstrip_blocks,
    /// tojson as json.dumps, the request's arguments as objects), then tokenized by llama.cpp: the ids llama-server
    /// --jinja and transformers give. It matches training for a single system message, a conversation ending on a user
    /// message, and tool results that are JSON; a plain-text tool result is written unquoted by the official Jinja,
    /// and a second system message makes it raise, both by Mistral's design.
    /// </summary>
    [SkippableFact]
    public void TheGgufsJinja_RunByJinja2_GivesTheTrainingIds_ForSystemToolsACallAndItsResult()
    {
        var (messages, tools) = ConversationsByName["system, tools, a call, its result, the answer and a new question"];
        using var reader = new GgufReader(model.Gguf);
        var text = RenderJinja(reader.GetString("tokenizer.chat_template"), messages, tools);
        output.WriteLine(text.Replace("\n", "\\n"));
        Assert.Equal(Expected(messages, tools), LlamaCppIds(text, addBos: false));
    }

    /// <summary>
    /// The GGUF's Jinja run by llama.cpp itself, as llama-server --jinja runs it (common_chat_templates_apply: minja,
    /// tool-call arguments from the request's JSON strings, BOS left to the tokenizer), through @fugood/llama.node:
    /// llama-server's prompt ids equal the training ids for one and three turns with a system message, and for tools, a
    /// call, its result and the answer. Every conversation here ends on a user message, as a serving request does.
    /// </summary>
    [SkippableTheory]
    [InlineData("one turn")]
    [InlineData("one turn with a system message")]
    [InlineData("three turns with a system message")]
    [InlineData("system, tools, a call, its result, the answer and a new question")]
    public void TheGgufsJinja_RunByLlamaCpp_GivesTheTrainingIds(string name)
    {
        var (messages, tools) = ConversationsByName[name];
        var rendering = LlamaCppJinja.Render(model.Gguf, messages, tools);
        output.WriteLine($"chat format {rendering.ChatFormat}: {rendering.Prompt.Replace("\n", "\\n")}");
        var expected = Expected(messages, tools);
        Assert.Equal(TokenizerFromGguf().BosId, expected[0]);
        Assert.Equal(expected[1..], rendering.Tokens);
        Assert.Equal(expected, LlamaCppIds(rendering.Prompt, addBos: true));
    }

    /// <summary>
    /// Where Mistral's official v0.3 Jinja differs from mistral-common by its own design, llama.cpp does what the Jinja
    /// says: a second system message raises (the template allows one, first), and a tool result that is not JSON is
    /// written unquoted where mistral-common writes a JSON string. Training data meant for llama-server keeps one system
    /// message and JSON tool results (README, Serving a v0.3 fine-tune).
    /// </summary>
    [SkippableFact]
    public void LlamaCppsJinja_RefusesASecondSystemMessage_AndWritesAPlainTextToolResultUnquoted()
    {
        var (twoSystems, twoTools) = ConversationsByName["two systems, two tools, parallel calls and their results, the answer pending"];
        Assert.Contains("conversation roles must alternate", LlamaCppJinja.RenderError(model.Gguf, twoSystems, twoTools));

        ChatMessage[] plain =
        [
            new(ChatMessage.System, SupportBot),
            new(ChatMessage.User, "Mail the report to a@example.com."),
            Call(("Ab3dE5gH9", "send_email", """{"body": "The report.", "to": "a@example.com"}""")),
            Result("Ab3dE5gH9", "send_email", "Email sent to a@example.com"),
            new(ChatMessage.Assistant, "Done."),
            new(ChatMessage.User, "Thanks!"),
        ];
        var rendering = LlamaCppJinja.Render(model.Gguf, plain, [Email]);
        Assert.Contains("""[TOOL_RESULTS] {"content": Email sent to a@example.com, "call_id": "Ab3dE5gH9"}[/TOOL_RESULTS]""", rendering.Prompt);
        var tokenizer = TokenizerFromGguf();
        var training = tokenizer.DecodeWithControlPieces(Expected(plain, [Email]));
        Assert.Contains("""[TOOL_RESULTS] {"content": "Email sent to a@example.com", "call_id": "Ab3dE5gH9"}[/TOOL_RESULTS]""", training);
    }

    [SkippableFact]
    public void ChatOnAV3Gguf_SpeaksMistralV3_WithTheToolsOfAToolsFile()
    {
        using var folder = new TempDirectory();
        var tools = folder.Combine("tools.json");
        File.WriteAllText(tools, """[{"type": "function", "function": {"name": """ + PythonJson.Quote(Weather.Name) + ", \"description\": "
            + PythonJson.Quote(Weather.Description) + ", \"parameters\": " + Weather.ParametersJson + "}}]");

        var result = EvalCli.Run("chat", model.Gguf, "--tools", tools, "--system", SupportBot, "--message", "Weather in Paris?",
            "--max-tokens", "4", "--context", "512", "--threads", "2");

        Assert.True(result.ExitCode == 0, result.Error);
        // The prompt chat builds is the training encoding with the tools, the system text with the last user message.
        var tokenizer = TokenizerFromGguf();
        var conversation = new ChatConversation(tokenizer, ChatTemplates.For(tokenizer), SupportBot, [Weather]);
        Assert.Equal(Expected([new(ChatMessage.System, SupportBot), new(ChatMessage.User, "Weather in Paris?")], [Weather]),
            conversation.Prompt("Weather in Paris?", 4096).Ids);
    }

    private static string RenderJinja(string jinja, ChatMessage[] messages, ChatTool[] tools)
    {
        var python = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(p => Path.Combine(p, "python3")).FirstOrDefault(File.Exists);
        Skip.If(python is null, "python3 is not installed: the Jinja check runs Jinja2, the engine transformers uses");
        using var folder = new TempDirectory();
        File.WriteAllText(folder.Combine("template.jinja"), jinja);
        var request = new JsonObject
        {
            ["messages"] = new JsonArray(messages.Select(m => (JsonNode)new JsonObject
            {
                ["role"] = m.Role,
                ["content"] = m.Content,
                ["tool_calls"] = m.ToolCalls is { Count: > 0 } calls
                    ? new JsonArray(calls.Select(c => (JsonNode)new JsonObject
                    {
                        ["id"] = c.Id,
                        ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = JsonNode.Parse(c.Arguments) },
                    }).ToArray())
                    : null,
                ["tool_call_id"] = m.ToolCallId,
            }).ToArray()),
            ["tools"] = new JsonArray(tools.Select(t => (JsonNode)new JsonObject
            {
                ["type"] = "function",
                ["function"] = new JsonObject { ["name"] = t.Name, ["description"] = t.Description, ["parameters"] = JsonNode.Parse(t.ParametersJson) },
            }).ToArray()),
        };
        File.WriteAllText(folder.Combine("request.json"), request.ToJsonString());
        File.WriteAllText(folder.Combine("render.py"), JinjaRenderer);
        var start = new ProcessStartInfo(python!, "render.py")
        {
            WorkingDirectory = folder.Path,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
        };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), "python3 timed out");
        Skip.If(process.ExitCode == 3, "python3 has no jinja2 module (pip install jinja2): the Jinja check runs Jinja2, the engine transformers uses");
        Assert.True(process.ExitCode == 0, $"jinja2 failed: {stderr}");
        return stdout.Result;
    }

    // transformers' chat-template environment (utils/chat_template_utils.py), reduced to what Mistral's template uses.
    private const string JinjaRenderer = """
        import json, sys
        try:
            import jinja2, jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            sys.exit(3)
        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)
        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        request = json.load(open("request.json", encoding="utf-8"))
        for message in request["messages"]:
            for key in [k for k, v in message.items() if v is None]:
                del message[key]
        text = env.from_string(open("template.jinja", encoding="utf-8").read()).render(
            messages=request["messages"], tools=request["tools"] or None, bos_token="<s>", eos_token="</s>", add_generation_prompt=True)
        sys.stdout.buffer.write(text.encode("utf-8"))
        """;
}

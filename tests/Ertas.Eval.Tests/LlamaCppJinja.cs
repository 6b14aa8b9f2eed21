using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ertas.Mistral.Templates;
using Ertas.TestSupport;

namespace Ertas.Eval.Tests;

/// <summary>
/// llama.cpp's own chat-template path, as llama-server --jinja runs it: <c>common_chat_templates_apply</c> (its minja
/// Jinja engine, with the chat-format detection that chooses a tool-call parser) on the GGUF's
/// <c>tokenizer.chat_template</c>. LLamaSharp ships only libllama, which has no Jinja, so this goes through
/// @fugood/llama.node's prebuilt llama.cpp (tools/llama-node, installed by .ci/run with npm). Without Node.js the
/// tests skip, saying why, except under CI, where they fail: there the real engine must run.
/// </summary>
internal static class LlamaCppJinja
{
    /// <summary>tools/llama-node, installed.</summary>
    private static readonly Lazy<string> Folder = new(Prepare);

    /// <summary>What llama.cpp rendered and how it tokenized it (special tokens parsed, no BOS added).</summary>
    public sealed record Rendering(string Prompt, int ChatFormat, int[] Tokens);

    public static Rendering Render(string gguf, IEnumerable<ChatMessage> messages, IEnumerable<ChatTool> tools)
    {
        var (exit, stdout, stderr) = Run(gguf, messages, tools);
        Assert.True(exit == 0, $"llama.cpp's chat template failed ({exit}):\n{stderr}");
        using var result = JsonDocument.Parse(stdout);
        var root = result.RootElement;
        return new Rendering(root.GetProperty("prompt").GetString()!, root.GetProperty("chat_format").GetInt32(),
            [.. root.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32())]);
    }

    /// <summary>What llama-server --jinja answers: the raw text, and what its chat parser made of it.</summary>
    public sealed record Completion(string Text, string? Content, IReadOnlyList<(string Name, string Arguments)> ToolCalls);

    /// <summary>
    /// A chat request answered greedily as llama-server --jinja answers /v1/chat/completions with tools: the GGUF's Jinja
    /// renders the prompt, llama.cpp generates (under the lazy tool-call grammar its chat format sets up), and its chat
    /// parser splits the output into content and tool calls.
    /// </summary>
    public static Completion Complete(string gguf, IEnumerable<ChatMessage> messages, IEnumerable<ChatTool> tools, int maxTokens)
    {
        var request = Request(gguf, messages, tools);
        request["max_tokens"] = maxTokens;
        var (exit, stdout, stderr) = Run("complete-chat.mjs", request);
        Assert.True(exit == 0, $"llama.cpp's chat completion failed ({exit}):\n{stderr}");
        using var result = JsonDocument.Parse(stdout);
        var root = result.RootElement;
        var calls = root.GetProperty("tool_calls").EnumerateArray()
            .Select(c => (c.GetProperty("function").GetProperty("name").GetString()!, c.GetProperty("function").GetProperty("arguments").GetString()!))
            .ToList();
        return new Completion(root.GetProperty("text").GetString()!, root.GetProperty("content").GetString(), calls);
    }

    /// <summary>The error llama.cpp's template engine raised, for conversations the template refuses.</summary>
    public static string RenderError(string gguf, IEnumerable<ChatMessage> messages, IEnumerable<ChatTool> tools)
    {
        var (exit, stdout, stderr) = Run(gguf, messages, tools);
        Assert.True(exit != 0, $"llama.cpp rendered the conversation: {stdout}");
        return stderr;
    }

    /// <summary>An OpenAI-style chat request, as a client sends llama-server: tool-call arguments as JSON strings.</summary>
    public static JsonObject Request(string gguf, IEnumerable<ChatMessage> messages, IEnumerable<ChatTool> tools) => new()
    {
        ["model"] = gguf,
        ["messages"] = new JsonArray([.. messages.Select(m =>
        {
            var message = new JsonObject { ["role"] = m.Role, ["content"] = m.Content };
            if (m.ToolCalls is { Count: > 0 } calls)
                message["tool_calls"] = new JsonArray([.. calls.Select(c => (JsonNode)new JsonObject
                {
                    ["id"] = c.Id, ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = c.Arguments },
                })]);
            if (m.ToolCallId is not null)
                message["tool_call_id"] = m.ToolCallId;
            if (m.Name is not null)
                message["name"] = m.Name;
            return (JsonNode)message;
        })]),
        ["tools"] = new JsonArray([.. tools.Select(t => (JsonNode)new JsonObject
        {
            ["type"] = "function",
            ["function"] = new JsonObject { ["name"] = t.Name, ["description"] = t.Description, ["parameters"] = JsonNode.Parse(t.ParametersJson) },
        })]),
        ["add_generation_prompt"] = true,
    };

    private static (int Exit, string Stdout, string Stderr) Run(string gguf, IEnumerable<ChatMessage> messages, IEnumerable<ChatTool> tools) =>
        Run("render-chat.mjs", Request(gguf, messages, tools));

    private static (int Exit, string Stdout, string Stderr) Run(string scriptName, JsonObject body)
    {
        var script = Path.Combine(Folder.Value, scriptName);
        var request = Path.Combine(Path.GetTempPath(), $"ertas-llama-node-{Guid.NewGuid():N}.json");
        var result = request + ".out";
        try
        {
            File.WriteAllText(request, body.ToJsonString());
            var (exit, output) = ExternalTool.Run(ExternalTool.FindOnPath("node")!, Folder.Value, 120, [script, request, result]);
            return (exit, File.Exists(result) ? File.ReadAllText(result) : "", output);
        }
        finally
        {
            File.Delete(request);
            File.Delete(result);
        }
    }

    private static bool Ci => Environment.GetEnvironmentVariable("CI") is "true" or "1";

    private static string Prepare()
    {
        var folder = Path.Combine(SharedFiles.RepositoryRoot, "tools", "llama-node");
        if (ExternalTool.FindOnPath("node") is null)
            SkipOrFail("Node.js is not installed (node on PATH): llama.cpp's Jinja runs through @fugood/llama.node (tools/llama-node; apt-get install nodejs npm, then npm ci --omit=optional --prefix tools/llama-node)");
        if (!File.Exists(Path.Combine(folder, "node_modules", "@fugood", "node-llama-linux-x64", "index.node")))
        {
            if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.OSArchitecture != System.Runtime.InteropServices.Architecture.X64)
                throw new SkipException("tools/llama-node installs llama.cpp's linux-x64 build only");
            var npm = ExternalTool.FindOnPath("npm");
            if (npm is null)
                SkipOrFail("npm is not installed: llama.cpp's Jinja (tools/llama-node) cannot be installed (apt-get install npm, then npm ci --omit=optional --prefix tools/llama-node)");
            // --omit=optional: only the CPU build this package lists, not llama.node's CUDA, Vulkan and WASM builds (270 MB).
            var (exit, output) = ExternalTool.Run(npm!, folder, 300, ["ci", "--omit=optional", "--ignore-scripts", "--no-audit", "--no-fund"]);
            Assert.True(exit == 0, $"npm ci in tools/llama-node failed ({exit}): llama.cpp's Jinja could not be installed\n{output}");
        }
        return folder;
    }

    private static void SkipOrFail(string reason)
    {
        if (Ci)
            Assert.Fail(reason + ". CI must run llama.cpp's Jinja: .ci/run installs it.");
        throw new SkipException(reason);
    }
}

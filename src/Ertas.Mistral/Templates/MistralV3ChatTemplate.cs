using System.Text;
using System.Text.RegularExpressions;
using Ertas.Core;
using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Templates;

/// <summary>
/// Mistral's v3 instruct layout (Mistral-7B-Instruct-v0.3), as mistral-common's request normalizer and
/// <c>InstructTokenizerV3</c> build it over SentencePiece:
/// <c>&lt;s&gt;[INST]▁question[/INST]▁answer&lt;/s&gt;...[AVAILABLE_TOOLS]▁[...][/AVAILABLE_TOOLS][INST]▁system\n\nquestion[/INST][TOOL_CALLS]▁[...]&lt;/s&gt;[TOOL_RESULTS]▁{...}[/TOOL_RESULTS]▁answer&lt;/s&gt;</c>.
/// The bracketed words are control ids; every text between them is encoded on its own with SentencePiece's dummy
/// prefix. The system prompt and the tool list go with the LAST user message, so a model trained on them sees them
/// right before its last question. JSON is spelled by <see cref="PythonJson"/>, exactly as mistral-common's
/// <c>json.dumps</c> spells it.
/// </summary>
public sealed partial class MistralV3ChatTemplate : IChatTemplate
{
    public const string BeginInst = "[INST]";
    public const string EndInst = "[/INST]";
    public const string ToolCalls = "[TOOL_CALLS]";
    public const string BeginAvailableTools = "[AVAILABLE_TOOLS]";
    public const string EndAvailableTools = "[/AVAILABLE_TOOLS]";
    public const string BeginToolResults = "[TOOL_RESULTS]";
    public const string EndToolResults = "[/TOOL_RESULTS]";

    /// <summary>The control pieces this template writes; a tokenizer with all of them is a v3 tokenizer.</summary>
    public static IReadOnlyList<string> ControlPieces { get; } =
        [BeginInst, EndInst, ToolCalls, BeginAvailableTools, EndAvailableTools, BeginToolResults, EndToolResults];

    public string Name => ChatTemplates.MistralV3Name;

    /// <summary>True when <paramref name="tokenizer"/> has every control piece the v3 layout writes.</summary>
    public static bool Fits(MistralTokenizer tokenizer) => ControlPieces.All(piece => tokenizer.ControlId(piece) >= 0);

    public void EnsureFits(MistralTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var missing = ControlPieces.Where(piece => tokenizer.ControlId(piece) < 0).ToList();
        if (missing.Count > 0)
            throw new ErtasException(ErrorCode.TemplateTokenizerMismatch,
                $"the {Name} template writes {string.Join(", ", missing)} as control tokens, but this tokenizer has no such control "
                + $"token{(missing.Count > 1 ? "s" : "")}: it is not Mistral's v3 tokenizer (Mistral-7B v0.1/v0.2 use the v1 tokenizer, "
                + $"whose models were trained on '{ChatTemplates.MistralV1Name}'); use ChatTemplate '{ChatTemplates.AutoName}' or "
                + $"'{ChatTemplates.MistralV1Name}', or a base with the v3 tokenizer (Mistral-7B v0.3, 32768 pieces)", tokenizer.Source);
    }

    public TemplatedIds Encode(MistralTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false,
        IReadOnlyList<ChatTool>? tools = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(messages);
        EnsureFits(tokenizer);
        tools ??= [];
        Validate(messages, tools, addGenerationPrompt);
        var (systemPrompt, turns) = Normalize(messages);
        var control = ControlPieces.ToDictionary(piece => piece, tokenizer.ControlId);

        var ids = new List<int> { tokenizer.BosId };
        var isAssistant = new List<bool> { false };
        var lastUser = turns.FindLastIndex(t => t.Role == ChatMessage.User);
        for (var i = 0; i < turns.Count; i++)
        {
            var turn = turns[i];
            switch (turn.Role)
            {
                case ChatMessage.User:
                    if (i == lastUser && tools.Count > 0)
                    {
                        Add(control[BeginAvailableTools], trained: false);
                        AddText(ToolsJson(tools), trained: false);
                        Add(control[EndAvailableTools], trained: false);
                    }
                    Add(control[BeginInst], trained: false);
                    AddText(i == lastUser && systemPrompt.Length > 0 ? systemPrompt + "\n\n" + turn.Content : turn.Content, trained: false);
                    Add(control[EndInst], trained: false);
                    break;
                case ChatMessage.Assistant when turn.ToolCalls.Count > 0:
                    Add(control[ToolCalls], trained: true);
                    AddText(ToolCallsJson(turn.ToolCalls), trained: true);
                    Add(tokenizer.EosId, trained: true);
                    break;
                case ChatMessage.Assistant:
                    // mistral-common strips trailing spaces (only spaces) from answers before encoding them.
                    AddText(turn.Content.TrimEnd(' '), trained: true);
                    Add(tokenizer.EosId, trained: true);
                    break;
                default:
                    Add(control[BeginToolResults], trained: false);
                    AddText(ToolResultJson(turn), trained: false);
                    Add(control[EndToolResults], trained: false);
                    break;
            }
        }
        return new TemplatedIds(ids.ToArray(), isAssistant.ToArray());

        void Add(int id, bool trained)
        {
            ids.Add(id);
            isAssistant.Add(trained);
        }

        void AddText(string text, bool trained)
        {
            foreach (var id in tokenizer.Encode(text, addBos: false))
                Add(id, trained);
        }
    }

    /// <summary>A turn after mistral-common's normalization: runs of one role merged, system messages taken out.</summary>
    private sealed record Turn(string Role, string Content, IReadOnlyList<ChatToolCall> ToolCalls, string? ToolCallId);

    /// <summary>
    /// mistral-common's <c>InstructRequestNormalizer</c>: non-empty system contents joined with a blank line become the
    /// system prompt; consecutive user (or assistant) messages merge, contents joined with a blank line and tool calls
    /// concatenated; tool messages stay one per result; a conversation that does not start with a user turn gets an
    /// empty one in front.
    /// </summary>
    private static (string SystemPrompt, List<Turn> Turns) Normalize(IReadOnlyList<ChatMessage> messages)
    {
        var system = string.Join("\n\n", messages.Where(m => m.Role == ChatMessage.System && m.Content.Length > 0).Select(m => m.Content));
        var turns = new List<Turn>();
        var start = 0;
        while (start < messages.Count)
        {
            var role = messages[start].Role;
            var end = start;
            while (end < messages.Count && messages[end].Role == role)
                end++;
            var run = messages.Skip(start).Take(end - start).ToList();
            switch (role)
            {
                case ChatMessage.User or ChatMessage.Assistant:
                    var contents = run.Select(m => m.Content).Where(c => c.Length > 0);
                    var calls = run.SelectMany(m => m.ToolCalls ?? []).ToList();
                    turns.Add(new Turn(role, string.Join("\n\n", contents), calls, null));
                    break;
                case ChatMessage.Tool:
                    turns.AddRange(run.Select(m => new Turn(role, m.Content, [], m.ToolCallId)));
                    break;
            }
            start = end;
        }
        if (turns.Count == 0 || turns[0].Role != ChatMessage.User)
            turns.Insert(0, new Turn(ChatMessage.User, "", [], null));
        for (var i = 0; i < turns.Count; i++)
        {
            if (turns[i] is { Role: ChatMessage.Assistant } merged && merged.ToolCalls.Count > 0 && merged.Content.Length > 0)
                throw new ErtasException(ErrorCode.InvalidConversation,
                    "consecutive assistant messages mix text and tool calls; mistral-v3 encodes an assistant turn as either an answer or tool calls");
        }
        return (system, turns);
    }

    /// <summary>
    /// The checks of mistral-common's request validator that do not depend on its mode, plus what its encoder asserts,
    /// so no conversation is encoded that mistral-common would refuse. Indices in errors are positions in the input.
    /// </summary>
    private static void Validate(IReadOnlyList<ChatMessage> messages, IReadOnlyList<ChatTool> tools, bool addGenerationPrompt)
    {
        if (messages.Count == 0)
            throw new ErtasException(ErrorCode.InvalidConversation, "the conversation has no messages");
        for (var t = 0; t < tools.Count; t++)
        {
            CheckFunctionName(tools[t].Name, $"tool {t}");
            if (!PythonJson.TryCanonicalize(tools[t].ParametersJson, out var parameters) || !parameters.StartsWith('{'))
                throw new ErtasException(ErrorCode.InvalidToolCall, $"tool {t} ('{tools[t].Name}'): \"parameters\" is not a JSON object");
        }
        string? previous = null;
        var pendingResults = 0;
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i] ?? throw new ErtasException(ErrorCode.InvalidConversation, $"message {i} is null");
            if (message.Role is null || message.Content is null)
                throw new ErtasException(ErrorCode.InvalidConversation, $"message {i} has no role or no content");
            var allowed = previous switch
            {
                null => [ChatMessage.System, ChatMessage.User, ChatMessage.Assistant, ChatMessage.Tool],
                ChatMessage.System or ChatMessage.User => [ChatMessage.System, ChatMessage.User, ChatMessage.Assistant],
                ChatMessage.Assistant => [ChatMessage.Assistant, ChatMessage.User, ChatMessage.Tool],
                _ => new[] { ChatMessage.Assistant, ChatMessage.Tool },
            };
            if (message.Role is not (ChatMessage.System or ChatMessage.User or ChatMessage.Assistant or ChatMessage.Tool))
                throw new ErtasException(ErrorCode.InvalidConversation,
                    $"message {i} has role '{message.Role}'; mistral-v3 supports system, user, assistant and tool");
            if (!allowed.Contains(message.Role))
                throw new ErtasException(ErrorCode.InvalidConversation,
                    $"message {i} ({message.Role}) cannot follow a {previous} message; mistral-common allows {string.Join(", ", allowed)} after {previous}");
            if (message.Role != ChatMessage.Assistant && message.HasToolCalls)
                throw new ErtasException(ErrorCode.InvalidToolCall, $"message {i} is a {message.Role} message with tool_calls; only assistant messages call tools");
            switch (message.Role)
            {
                case ChatMessage.Assistant:
                    if (message.HasToolCalls == (message.Content.Length > 0))
                        throw new ErtasException(ErrorCode.InvalidConversation,
                            $"message {i} is an assistant message with {(message.HasToolCalls ? "both content and tool_calls" : "neither content nor tool_calls")}; it needs exactly one of them");
                    if (pendingResults > 0)
                        throw new ErtasException(ErrorCode.InvalidToolCall,
                            $"message {i}: the assistant speaks before all {pendingResults} pending tool call result(s) came back; every tool call needs its tool message");
                    pendingResults = message.ToolCalls?.Count ?? 0;
                    for (var c = 0; c < pendingResults; c++)
                    {
                        var call = message.ToolCalls![c];
                        CheckFunctionName(call.Name, $"message {i}, tool call {c}");
                        if (call.Id is { } id && id != "null" && !ToolCallIdPattern().IsMatch(id))
                            throw new ErtasException(ErrorCode.InvalidToolCall,
                                $"message {i}, tool call {c}: id '{id}' must be 9 letters or digits (mistral-common's v3 rule, e.g. \"a1b2c3d4e\")");
                    }
                    break;
                case ChatMessage.Tool:
                    if (--pendingResults < 0)
                        throw new ErtasException(ErrorCode.InvalidToolCall, $"message {i} is a tool result with no tool call before it");
                    if (message.ToolCallId is not { } callId)
                        throw new ErtasException(ErrorCode.InvalidToolCall, $"message {i} is a tool result without \"tool_call_id\"; mistral-v3 needs it");
                    if (!ToolCallIdPattern().IsMatch(callId))
                        throw new ErtasException(ErrorCode.InvalidToolCall,
                            $"message {i}: tool_call_id '{callId}' must be 9 letters or digits (mistral-common's v3 rule)");
                    if (message.Name is { } name)
                        CheckFunctionName(name, $"message {i}");
                    break;
            }
            previous = message.Role;
        }
        if (messages.Count == 1 && messages[0].Role is not (ChatMessage.User or ChatMessage.System))
            throw new ErtasException(ErrorCode.InvalidConversation, "a conversation of one message must be a user or system message");
        if (addGenerationPrompt && messages[^1].Role is not (ChatMessage.User or ChatMessage.Tool))
            throw new ErtasException(ErrorCode.InvalidConversation,
                $"message {messages.Count - 1} is a {messages[^1].Role} message, but a generation prompt needs the conversation to end with a user or tool message");
    }

    private static void CheckFunctionName(string name, string where)
    {
        if (!FunctionNamePattern().IsMatch(name))
            throw new ErtasException(ErrorCode.InvalidToolCall,
                $"{where}: function name '{name}' must be 1 to 64 letters, digits, underscores or dashes");
    }

    [GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial Regex FunctionNamePattern();

    [GeneratedRegex("^[a-zA-Z0-9]{9}$")]
    private static partial Regex ToolCallIdPattern();

    /// <summary>mistral-common's <c>Tool.model_dump()</c> list: type, then function name, description, parameters.</summary>
    public static string ToolsJson(IReadOnlyList<ChatTool> tools)
    {
        var json = new StringBuilder("[");
        for (var i = 0; i < tools.Count; i++)
        {
            if (i > 0) json.Append(", ");
            PythonJson.TryCanonicalize(tools[i].ParametersJson, out var parameters);
            json.Append("{\"type\": \"function\", \"function\": {\"name\": ").Append(PythonJson.Quote(tools[i].Name))
                .Append(", \"description\": ").Append(PythonJson.Quote(tools[i].Description))
                .Append(", \"parameters\": ").Append(parameters).Append("}}");
        }
        return json.Append(']').ToString();
    }

    /// <summary>v3's function calls: name, arguments (parsed when they are JSON), and the id unless none was given.</summary>
    public static string ToolCallsJson(IReadOnlyList<ChatToolCall> calls)
    {
        var json = new StringBuilder("[");
        for (var i = 0; i < calls.Count; i++)
        {
            if (i > 0) json.Append(", ");
            json.Append("{\"name\": ").Append(PythonJson.Quote(calls[i].Name))
                .Append(", \"arguments\": ").Append(PythonJson.DumpParsedOrString(calls[i].Arguments.Length == 0 ? "{}" : calls[i].Arguments));
            if (calls[i].Id is { } id && id != "null")
                json.Append(", \"id\": ").Append(PythonJson.Quote(id));
            json.Append('}');
        }
        return json.Append(']').ToString();
    }

    /// <summary>v3's tool result: the content (parsed when it is JSON; empty content is {}) and the call id it answers.</summary>
    private static string ToolResultJson(Turn turn) =>
        "{\"content\": " + PythonJson.DumpParsedOrString(turn.Content.Length == 0 ? "{}" : turn.Content)
        + ", \"call_id\": " + PythonJson.Quote(turn.ToolCallId!) + "}";
}

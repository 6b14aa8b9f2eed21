namespace Ertas.Mistral.Templates;

/// <summary>
/// One turn of a conversation; <see cref="Role"/> is "system", "user", "assistant" or "tool". An assistant turn may
/// carry <see cref="ToolCalls"/> instead of content; a tool turn is the result of the call <see cref="ToolCallId"/>
/// (OpenAI's shape, which mistral-common reads). A missing or null content is the empty string.
/// </summary>
public sealed record ChatMessage(
    string Role,
    string Content,
    IReadOnlyList<ChatToolCall>? ToolCalls = null,
    string? ToolCallId = null,
    string? Name = null)
{
    public const string System = "system";
    public const string User = "user";
    public const string Assistant = "assistant";
    public const string Tool = "tool";

    public bool HasToolCalls => ToolCalls is { Count: > 0 };
}

/// <summary>
/// A function call the assistant makes. <see cref="Arguments"/> is JSON text as OpenAI sends it (a string holding an
/// object); text that does not parse is kept and tokenized as a string, as mistral-common does. A null
/// <see cref="Id"/> means none was given (mistral-common's "null").
/// </summary>
public sealed record ChatToolCall(string? Id, string Name, string Arguments);

/// <summary>
/// A function the model may call (OpenAI's <c>{"type":"function","function":{...}}</c>). <see cref="ParametersJson"/>
/// is the JSON Schema as written in the source, re-spelled the Python way when tokenized.
/// </summary>
public sealed record ChatTool(string Name, string Description, string ParametersJson);

/// <summary>A conversation with the tools offered to the model (none for a plain chat).</summary>
public sealed record ChatDocument(IReadOnlyList<ChatMessage> Messages, IReadOnlyList<ChatTool> Tools);

/// <summary>
/// Token ids of a templated conversation. <see cref="IsAssistant"/> marks, per id, the assistant's content and its
/// closing EOS: the tokens a fine-tune should learn to produce (the loss mask).
/// </summary>
public sealed record TemplatedIds(int[] Ids, bool[] IsAssistant)
{
    public int Count => Ids.Length;
}

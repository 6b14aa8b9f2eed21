namespace Ertas.Mistral.Templates;

/// <summary>One turn of a conversation; <see cref="Role"/> is "system", "user" or "assistant".</summary>
public sealed record ChatMessage(string Role, string Content)
{
    public const string System = "system";
    public const string User = "user";
    public const string Assistant = "assistant";
}

/// <summary>
/// Token ids of a templated conversation. <see cref="IsAssistant"/> marks, per id, the assistant's content and its
/// closing EOS: the tokens a fine-tune should learn to produce (the loss mask).
/// </summary>
public sealed record TemplatedIds(int[] Ids, bool[] IsAssistant)
{
    public int Count => Ids.Length;
}

using Ertas.Mistral.Templates;

namespace Ertas.Data;

/// <summary>
/// One valid line of a dataset. Conversations (chat, ShareGPT, Alpaca) carry <see cref="Messages"/> in chat roles,
/// system messages first and not yet folded (the chat template folds them); completions carry <see cref="Text"/>.
/// A chat line may offer <see cref="Tools"/> (OpenAI's per-line <c>tools</c>), with assistant tool calls and tool
/// results among its messages.
/// </summary>
public sealed record DatasetExample(string File, int Line, DatasetFormat Format, IReadOnlyList<ChatMessage> Messages, string? Text)
{
    public bool IsCompletion => Text is not null;

    public IReadOnlyList<ChatTool> Tools { get; init; } = [];
}

/// <summary>
/// Templated ids of one example and, per id, whether the loss trains on it (the model learns to predict it).
/// <see cref="Truncated"/> is set when <see cref="LengthPolicy.Truncate"/> cut it to the sequence length.
/// </summary>
public sealed record EncodedExample(DatasetExample Source, int[] Ids, bool[] Trained, bool Truncated)
{
    public int Count => Ids.Length;
}

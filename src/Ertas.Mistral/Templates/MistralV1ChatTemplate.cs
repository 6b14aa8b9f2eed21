using Ertas.Core;
using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Templates;

/// <summary>
/// Mistral's v1 instruct layout, as mistral-common's <c>InstructTokenizerV1</c> builds it:
/// <c>&lt;s&gt;[INST] user [/INST] answer&lt;/s&gt;[INST] user [/INST]</c>. Each user turn is the single text
/// <c>"[INST] " + content + " [/INST]"</c> and each answer its own text, both encoded with a dummy prefix (hence
/// <c>▁[INST]</c> and <c>▁answer</c>); BOS and EOS are the control ids, never text.
/// </summary>
public sealed class MistralV1ChatTemplate : IChatTemplate
{
    public string Name => ChatTemplates.MistralV1Name;

    /// <summary>
    /// Mistral's v3 tokenizer (Mistral-7B-Instruct-v0.3 and later) has <c>[INST]</c> and <c>[/INST]</c> as control
    /// tokens; its models were trained on those ids, while this template writes the words as text.
    /// </summary>
    public void EnsureFits(MistralTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var model = tokenizer.Model;
        for (var id = 0; id < model.Count; id++)
        {
            if (model.Types[id] == SentencePieceType.Control && model.Pieces[id] is "[INST]" or "[/INST]")
                throw new ErtasException(ErrorCode.TemplateTokenizerMismatch,
                    $"this tokenizer has '{model.Pieces[id]}' as a control token (id {id}): it is Mistral's v3 tokenizer (e.g. Mistral-7B-Instruct-v0.3), "
                    + $"whose models expect that id, but the {Name} template writes [INST] as text; use a base with the v1 tokenizer "
                    + $"(Mistral-7B v0.1 or v0.2, 32000 pieces), or ChatTemplate '{ChatTemplates.AutoName}' or '{ChatTemplates.MistralV3Name}' for this one", tokenizer.Source);
        }
    }

    public TemplatedIds Encode(MistralTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false,
        IReadOnlyList<ChatTool>? tools = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(messages);
        if (tools is { Count: > 0 })
            throw new ErtasException(ErrorCode.TemplateHasNoTools,
                $"the conversation offers {tools.Count} tool(s), but {Name} has no tool tokens; tools need Mistral's v3 tokenizer and the {ChatTemplates.MistralV3Name} template");
        var (systemPrompt, turns) = Normalize(messages);
        if (addGenerationPrompt && turns[^1].Message.Role == ChatMessage.Assistant)
            throw new ErtasException(ErrorCode.InvalidConversation,
                $"message {turns[^1].Index} is an assistant turn, but a generation prompt needs the conversation to end with a user turn");

        var ids = new List<int> { tokenizer.BosId };
        var isAssistant = new List<bool> { false };
        var firstUser = true;
        foreach (var (_, message) in turns)
        {
            if (message.Role == ChatMessage.User)
            {
                // mistral-common puts the system prompt before the first user message only.
                var content = firstUser && systemPrompt.Length > 0 ? systemPrompt + "\n\n" + message.Content : message.Content;
                firstUser = false;
                Append(tokenizer.Encode("[INST] " + content + " [/INST]", addBos: false), assistant: false);
            }
            else
            {
                Append(tokenizer.Encode(message.Content, addBos: false), assistant: true);
                ids.Add(tokenizer.EosId);
                isAssistant.Add(true);
            }
        }
        return new TemplatedIds(ids.ToArray(), isAssistant.ToArray());

        void Append(IReadOnlyList<int> segment, bool assistant)
        {
            ids.AddRange(segment);
            for (var i = 0; i < segment.Count; i++)
                isAssistant.Add(assistant);
        }
    }

    /// <summary>
    /// Pulls out system messages (mistral-common joins them with a blank line, wherever they are) and checks that
    /// the rest alternate user/assistant starting with user. Indices in errors are positions in the input list.
    /// </summary>
    private static (string SystemPrompt, List<(int Index, ChatMessage Message)> Turns) Normalize(IReadOnlyList<ChatMessage> messages)
    {
        var systemParts = new List<string>();
        var turns = new List<(int Index, ChatMessage Message)>();
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            if (message?.Role is null || message.Content is null)
                throw new ErtasException(ErrorCode.InvalidConversation, $"message {i} has no role or no content");
            if (message.HasToolCalls)
                throw new ErtasException(ErrorCode.TemplateHasNoTools,
                    $"message {i} calls tools, but mistral-v1 has no tool tokens; tool calling needs Mistral's v3 tokenizer and the {ChatTemplates.MistralV3Name} template");
            switch (message.Role)
            {
                case ChatMessage.System:
                    if (message.Content.Length > 0)
                        systemParts.Add(message.Content);
                    continue;
                case ChatMessage.User or ChatMessage.Assistant:
                    break;
                default:
                    throw new ErtasException(ErrorCode.InvalidConversation,
                        $"message {i} has role '{message.Role}'; mistral-v1 supports only system, user and assistant (tool results need the {ChatTemplates.MistralV3Name} template)");
            }
            var expected = turns.Count % 2 == 0 ? ChatMessage.User : ChatMessage.Assistant;
            if (message.Role != expected)
                throw new ErtasException(ErrorCode.InvalidConversation,
                    $"message {i} is a {message.Role} turn where a {expected} turn was expected: " +
                    "roles must alternate user/assistant, starting with user (system messages aside)");
            if (message.Role == ChatMessage.Assistant && message.Content.Length == 0)
                throw new ErtasException(ErrorCode.InvalidConversation,
                    $"message {i} is an empty assistant turn; mistral-common rejects those too");
            turns.Add((i, message));
        }
        if (turns.Count == 0)
            throw new ErtasException(ErrorCode.InvalidConversation, "the conversation has no user message");
        return (string.Join("\n\n", systemParts), turns);
    }
}

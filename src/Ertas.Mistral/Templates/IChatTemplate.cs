using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Templates;

/// <summary>Turns a conversation into the exact token ids a model was trained on.</summary>
public interface IChatTemplate
{
    string Name { get; }

    /// <summary>
    /// Encodes <paramref name="messages"/>, offering <paramref name="tools"/> to the model (ERTAS3015 from a template
    /// without tool tokens). With <paramref name="addGenerationPrompt"/> the conversation must end where the model
    /// speaks next (after a user turn, or a tool result for templates with tools), so the ids end where its answer starts.
    /// </summary>
    TemplatedIds Encode(MistralTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false,
        IReadOnlyList<ChatTool>? tools = null);

    /// <summary>
    /// Throws ERTAS3014 when <paramref name="tokenizer"/> belongs to a model this template does not fit, so that a
    /// fine-tune never learns a prompt format its base was not trained on.
    /// </summary>
    void EnsureFits(MistralTokenizer tokenizer);
}

using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Templates;

/// <summary>Turns a conversation into the exact token ids a model was trained on.</summary>
public interface IChatTemplate
{
    string Name { get; }

    /// <summary>
    /// Encodes <paramref name="messages"/>. With <paramref name="addGenerationPrompt"/> the conversation must end
    /// with a user turn, so the ids end where the model's answer starts.
    /// </summary>
    TemplatedIds Encode(MistralTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false);

    /// <summary>
    /// Throws ERTAS3014 when <paramref name="tokenizer"/> belongs to a model this template does not fit, so that a
    /// fine-tune never learns a prompt format its base was not trained on.
    /// </summary>
    void EnsureFits(MistralTokenizer tokenizer);
}

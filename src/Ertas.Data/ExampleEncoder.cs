using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Data;

/// <summary>
/// Turns a validated example into ids and a per-id "trained" flag. Conversations go through the chat template
/// (which folds system messages into the first user turn), so training sees exactly the ids serving builds;
/// completions are BOS + text + EOS.
/// </summary>
public static class ExampleEncoder
{
    public static EncodedExample Encode(DatasetExample example, MistralTokenizer tokenizer, IChatTemplate template, bool trainOnPrompt)
    {
        ArgumentNullException.ThrowIfNull(example);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        if (example.Text is not null)
        {
            var textIds = tokenizer.Encode(example.Text, addBos: true);
            var ids = new int[textIds.Count + 1];
            for (var i = 0; i < textIds.Count; i++)
                ids[i] = textIds[i];
            ids[^1] = tokenizer.EosId;
            // Every id is trained; the BOS at position 0 is never a prediction target anyway.
            return new EncodedExample(example, ids, Enumerable.Repeat(true, ids.Length).ToArray(), Truncated: false);
        }
        // Tool results and the tool list are prompt: the template marks only answers and tool calls as trained.
        var templated = template.Encode(tokenizer, example.Messages, tools: example.Tools.Count > 0 ? example.Tools : null);
        var trained = trainOnPrompt ? Enumerable.Repeat(true, templated.Count).ToArray() : templated.IsAssistant;
        return new EncodedExample(example, templated.Ids, trained, Truncated: false);
    }
}

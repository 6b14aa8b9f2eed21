using System.Text;
using Ertas.Gguf;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;
using LLama;
using LLama.Common;
using Xunit.Abstractions;

namespace Ertas.Eval.Tests;

/// <summary>
/// Serving speaks the training format: the chat template stored in our GGUF, applied by llama.cpp, and the Ollama
/// Modelfile TEMPLATE, rendered by Go's text/template with Ollama's rules, both tokenize (BOS added, special tokens
/// parsed, as the runtimes do) to exactly the ids our mistral-v1 template trains on.
/// </summary>
[Collection(EvalModelsCollection.Name)]
public sealed class ServingTemplateTests(EvalModels models, ITestOutputHelper output)
{
    private const string SupportBot = "You are the support bot of Ertas. Answer in one sentence.";

    public static TheoryData<string> Conversations => new(ConversationsByName.Keys);

    private static readonly Dictionary<string, ChatMessage[]> ConversationsByName = new()
    {
        ["one turn"] = [new("user", "What is the capital of France?")],
        ["one turn with a system message"] = [new("system", SupportBot), new("user", "How do I reset my password?")],
        ["three turns"] =
        [
            new("user", "What is LoRA?"), new("assistant", "A low-rank adapter."),
            new("user", "And QLoRA?"), new("assistant", "LoRA over a 4-bit base."),
            new("user", "Which one should I use?"),
        ],
        ["three turns with a system message"] =
        [
            new("system", SupportBot),
            new("user", "Hi"), new("assistant", "Hello! How can I help?"),
            new("user", "My build fails."), new("assistant", "Which error does it print?"),
            new("user", "ERTAS9201 on capitals.jsonl line 3."),
        ],
        ["unicode"] = [new("system", "Réponds en français, s'il te plaît. 🇫🇷"), new("user", "Quelle est la capitale de l'Égypte ? 日本語もOK")],
        ["an answer with [INST] as text"] =
        [
            new("user", "Which tag opens a user turn?"), new("assistant", "The text [INST] opens it and [/INST] closes it."),
            new("user", "Thanks."),
        ],
    };

    private int[] Expected(ChatMessage[] conversation)
    {
        var tokenizer = TokenizerFromGguf();
        return ChatTemplates.Get(ChatTemplates.MistralV1Name, tokenizer).Encode(tokenizer, conversation, addGenerationPrompt: true).Ids;
    }

    private MistralTokenizer TokenizerFromGguf()
    {
        using var gguf = new GgufTensorSource(models.F32);
        return TokenizerVocabularies.ToTokenizer(gguf.ReadVocabulary());
    }

    [Fact]
    public void ExportedGguf_CarriesMistralsOfficialV1JinjaWithTheOptionalSystemMessage()
    {
        using var reader = new GgufReader(models.F32);
        Assert.Equal(ChatTemplates.MistralV1Jinja, reader.GetString("tokenizer.chat_template"));
        using var quantized = new GgufReader(models.Q8_0);
        Assert.Equal(ChatTemplates.MistralV1Jinja, quantized.GetString("tokenizer.chat_template")); // quantize keeps it
    }

    [Theory]
    [MemberData(nameof(Conversations))]
    public void LlamaCppAppliesTheGgufsTemplate_AndTokenizesItToTheTrainingIds(string name)
    {
        var conversation = ConversationsByName[name];
        var parameters = new ModelParams(models.F32) { VocabOnly = true, GpuLayerCount = 0 };
        using var weights = LLamaWeights.LoadFromFile(parameters);
        var template = new LLamaTemplate(weights) { AddAssistant = true };
        foreach (var message in conversation)
            template.Add(message.Role, message.Content);
        var text = Encoding.UTF8.GetString(template.Apply());
        output.WriteLine(text.Replace("\n", "\\n"));
        var ids = weights.Tokenize(text, add_bos: true, special: true, Encoding.UTF8).Select(t => (int)t).ToArray();
        Assert.Equal(Expected(conversation), ids);
    }

    [SkippableTheory]
    [MemberData(nameof(Conversations))]
    public void OllamaRendersTheModelfileTemplate_ToTheTrainingIds(string name)
    {
        var conversation = ConversationsByName[name];
        var text = RenderWithGo(ChatTemplates.MistralV1Ollama, conversation, modelfileSystem: null);
        output.WriteLine(text.Replace("\n", "\\n"));
        Assert.Equal(Expected(conversation), LlamaCppIds(text));
    }

    [SkippableFact]
    public void TheModelfilesSystem_IsTheLeadingSystemMessage_WhenTheRequestHasNone()
    {
        var withSystem = ConversationsByName["one turn with a system message"];
        var text = RenderWithGo(ChatTemplates.MistralV1Ollama, withSystem.Where(m => m.Role != "system").ToArray(), modelfileSystem: SupportBot);
        Assert.Equal(Expected(withSystem), LlamaCppIds(text));
        // A request's own system message wins over the Modelfile's.
        var own = RenderWithGo(ChatTemplates.MistralV1Ollama, withSystem, modelfileSystem: "Something else.");
        Assert.Equal(Expected(withSystem), LlamaCppIds(own));
    }

    private int[] LlamaCppIds(string text)
    {
        var parameters = new ModelParams(models.F32) { VocabOnly = true, GpuLayerCount = 0 };
        using var weights = LLamaWeights.LoadFromFile(parameters);
        return weights.Tokenize(text, add_bos: true, special: true, Encoding.UTF8).Select(t => (int)t).ToArray();
    }

    private static string RenderWithGo(string template, ChatMessage[] conversation, string? modelfileSystem) =>
        OllamaRenderer.Render(template, conversation, modelfileSystem);
}

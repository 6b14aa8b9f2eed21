using Ertas.Core;
using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Templates;

/// <summary>The chat templates Ertas knows, by name, and the text forms other tools need (FACTS §6).</summary>
public static class ChatTemplates
{
    public const string MistralV1Name = "mistral-v1";

    /// <summary>
    /// Hugging Face's Jinja template for Mistral-7B-Instruct, verbatim: it goes into GGUF's
    /// <c>tokenizer.chat_template</c>, and Ollama and llama.cpp recognise the model by this exact string.
    /// </summary>
    public const string MistralV1Jinja =
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    /// <summary>Ollama's mistral-instruct Go template, for a Modelfile's explicit <c>TEMPLATE</c>.</summary>
    public const string MistralV1Ollama = "[INST] {{ if .System }}{{ .System }} {{ end }}{{ .Prompt }} [/INST]";

    /// <summary>The stop string a Modelfile needs (<c>PARAMETER stop "&lt;/s&gt;"</c>), or output never ends.</summary>
    public const string MistralV1Stop = "</s>";

    public static IReadOnlyList<string> Names { get; } = [MistralV1Name];

    /// <summary>The template <paramref name="name"/>, checked against the tokenizer it will encode with (ERTAS3014
    /// when the tokenizer belongs to models trained on another format).</summary>
    public static IChatTemplate Get(string name, MistralTokenizer tokenizer)
    {
        var template = Get(name);
        template.EnsureFits(tokenizer);
        return template;
    }

    public static IChatTemplate Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name switch
        {
            MistralV1Name => new MistralV1ChatTemplate(),
            _ => throw new ErtasException(ErrorCode.UnknownTemplate,
                $"unknown chat template '{name}'; valid names: {string.Join(", ", Names)}"),
        };
    }
}

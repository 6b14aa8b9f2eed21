using Ertas.Core;
using Ertas.Mistral.Tokenization;

namespace Ertas.Mistral.Templates;

/// <summary>The chat templates Ertas knows, by name, and the text forms other tools need (FACTS §6).</summary>
public static partial class ChatTemplates
{
    public const string MistralV1Name = "mistral-v1";
    public const string MistralV3Name = "mistral-v3";

    /// <summary>The default: the template the tokenizer's own models were trained on (<see cref="For"/>).</summary>
    public const string AutoName = "auto";

    /// <summary>
    /// Mistral's official v1 Jinja with an optional leading system message (Mistral-7B-Instruct-v0.1/v0.2
    /// tokenizer_config.json after Mistral's 2024 update), verbatim: it goes into GGUF's <c>tokenizer.chat_template</c>.
    /// It puts the system text and a blank line before the first user message, as <see cref="MistralV1ChatTemplate"/>
    /// and mistral-common do, and llama.cpp's built-in detection files it as mistral-v1. The older v0.1 template raised
    /// on any system message, so servers refused exactly the conversations a system-prompted fine-tune needs.
    /// </summary>
    public const string MistralV1Jinja =
        "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}{{- bos_token }}{%- for message in loop_messages %}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif %}{%- if message['role'] == 'user' %}{%- if loop.first and system_message is defined %}{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}{%- else %}{{- ' [INST] ' + message['content'] + ' [/INST]' }}{%- endif %}{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token}}{%- else %}{{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}{%- endif %}{%- endfor %}";

    /// <summary>
    /// The Ollama (Go text/template) TEMPLATE that renders what <see cref="MistralV1ChatTemplate"/> encodes, as the
    /// official Jinja does: every system message joined with a blank line before the first user turn,
    /// <c> [INST] ... [/INST]</c> per user turn, <c> answer&lt;/s&gt;</c> per assistant turn, the whole history (not
    /// only the last turn), and no <c>&lt;s&gt;</c>, which Ollama's tokenizer adds itself. The spaces before [INST] and
    /// the answer are written out, because our GGUFs ask for no tokenizer-added space prefix. It uses
    /// <c>.Messages</c>, so Ollama runs it once over the whole conversation, with the Modelfile's SYSTEM as a leading
    /// system message when the request has none.
    /// </summary>
    public const string MistralV1Ollama =
        """{{- $system := "" }}{{- range .Messages }}{{- if eq .Role "system" }}{{- if $system }}{{- $system = printf "%s\n\n%s" $system .Content }}{{- else }}{{- $system = .Content }}{{- end }}{{- end }}{{- end }}"""
        + """{{- $first := true }}{{- range .Messages }}{{- if eq .Role "user" }} [INST] {{ if and $first $system }}{{ $system }}{{ "\n\n" }}{{ end }}{{ .Content }} [/INST]{{- $first = false }}"""
        + """{{- else if eq .Role "assistant" }} {{ .Content }}</s>{{- end }}{{- end }}""";

    /// <summary>The stop string a Modelfile needs (<c>PARAMETER stop "&lt;/s&gt;"</c>), or output never ends.</summary>
    public const string MistralV1Stop = "</s>";

    public static IReadOnlyList<string> Names { get; } = [AutoName, MistralV1Name, MistralV3Name];

    /// <summary>
    /// The template <paramref name="name"/>, checked against the tokenizer it will encode with (ERTAS3014 when the
    /// tokenizer belongs to models trained on another format); <c>auto</c> becomes <see cref="For"/>'s choice.
    /// </summary>
    public static IChatTemplate Get(string name, MistralTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var template = Get(name);
        if (template is AutoChatTemplate)
            return For(tokenizer);
        template.EnsureFits(tokenizer);
        return template;
    }

    /// <summary>The template by name, before a tokenizer is known; <c>auto</c> picks per tokenizer as it encodes.</summary>
    public static IChatTemplate Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name switch
        {
            AutoName => new AutoChatTemplate(),
            MistralV1Name => new MistralV1ChatTemplate(),
            MistralV3Name => new MistralV3ChatTemplate(),
            _ => throw new ErtasException(ErrorCode.UnknownTemplate,
                $"unknown chat template '{name}'; valid names: {string.Join(", ", Names)}"),
        };
    }

    /// <summary>
    /// mistral-v3 when the tokenizer has v3's control tokens ([INST], [TOOL_CALLS], ... as control pieces, e.g.
    /// Mistral-7B v0.3), otherwise mistral-v1 (Mistral-7B v0.1/v0.2, the built-in vocabulary): the format each
    /// vocabulary's instruct models were trained on.
    /// </summary>
    public static IChatTemplate For(MistralTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (MistralV3ChatTemplate.Fits(tokenizer))
            return new MistralV3ChatTemplate();
        var v1 = new MistralV1ChatTemplate();
        // A tokenizer with [INST] as a control piece but without the rest of v3's is neither: say so rather than guess.
        v1.EnsureFits(tokenizer);
        return v1;
    }

    /// <summary>
    /// Mistral's official Jinja for the tokenizer's template (<see cref="For"/>): what GGUF's
    /// <c>tokenizer.chat_template</c> and tokenizer_config.json carry, so llama.cpp and transformers format as trained.
    /// </summary>
    public static string JinjaFor(MistralTokenizer tokenizer) => For(tokenizer) is MistralV3ChatTemplate ? MistralV3Jinja : MistralV1Jinja;

    /// <summary>The Ollama TEMPLATE that renders the tokenizer's template (<see cref="For"/>) for a Modelfile.</summary>
    public static string OllamaFor(MistralTokenizer tokenizer) => For(tokenizer) is MistralV3ChatTemplate ? MistralV3Ollama : MistralV1Ollama;

    /// <summary><c>auto</c> before a tokenizer is known: resolves on every call, so it never mismatches.</summary>
    private sealed class AutoChatTemplate : IChatTemplate
    {
        public string Name => AutoName;

        public void EnsureFits(MistralTokenizer tokenizer) => For(tokenizer);

        public TemplatedIds Encode(MistralTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false,
            IReadOnlyList<ChatTool>? tools = null) =>
            For(tokenizer).Encode(tokenizer, messages, addGenerationPrompt, tools);
    }
}

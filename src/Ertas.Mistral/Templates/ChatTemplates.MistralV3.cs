namespace Ertas.Mistral.Templates;

public static partial class ChatTemplates
{
    /// <summary>
    /// Mistral's official Jinja for Mistral-7B-Instruct-v0.3 (its tokenizer_config.json, the version with tools),
    /// verbatim: GGUF's <c>tokenizer.chat_template</c> and tokenizer_config.json for a v3 vocabulary. llama.cpp's
    /// detection files it as mistral-v3 because it holds "[AVAILABLE_TOOLS]" and neither " [INST]" (v1) nor
    /// "\"[INST]\"" (v3-tekken). Where it differs from <see cref="MistralV3ChatTemplate"/> (mistral-common), by
    /// Mistral's design: only a first system message counts (a second one raises), the system text is written only when
    /// the last message is a user message, tool-call JSON keeps the request's key order and needs arguments as an
    /// object, and a tool result is written unquoted (<c>content|string</c>), so only JSON results read as trained.
    /// </summary>
    public static string MistralV3Jinja { get; } = """
{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
""".ReplaceLineEndings("\n") + "\n";

    /// <summary>
    /// The Ollama (Go text/template) TEMPLATE that renders what <see cref="MistralV3ChatTemplate"/> encodes: Ollama's
    /// own mistral v0.3 template reshaped to mistral-common's layout. Every system message (<c>.System</c>) and the
    /// tool list go with the LAST user message; <c>[TOOL_CALLS] [...]&lt;/s&gt;</c> and
    /// <c>[TOOL_RESULTS] {...}[/TOOL_RESULTS]</c> are spelled with Python's ", " and ": " separators, as mistral-common's
    /// json.dumps spells them; no <c>&lt;s&gt;</c>, which Ollama's tokenizer adds. Ollama hands templates plain Go maps
    /// for tool parameters and call arguments, so their keys come out sorted; a parameter is written as type, enum,
    /// description; a tool result is written as is when it starts like JSON (<c>{ [ " - 0-9</c>, true, false, null)
    /// and quoted otherwise (mistral-common parses what parses). Go's JSON escapes &lt; &gt; &amp; where Python does not.
    /// The ids match training when the training data spells its tools and arguments the same way.
    /// </summary>
    public const string MistralV3Ollama =
        """{{- $lastUser := -1 }}{{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}{{- $lastUser = $i }}{{- end }}{{- end }}"""
        + """{{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}"""
        + """{{- if and $.Tools (eq $i $lastUser) }}[AVAILABLE_TOOLS] [{{- range $t, $tool := $.Tools }}{{ if $t }}, {{ end }}"""
        + """{"type": "function", "function": {"name": {{ json $tool.Function.Name }}, "description": {{ json $tool.Function.Description }}, "parameters": {"type": {{ json $tool.Function.Parameters.Type }}, "properties": {{"{"}}"""
        + """{{- $first := true }}{{- range $name, $p := $tool.Function.Parameters.Properties }}{{ if not $first }}, {{ end }}{{- $first = false }}{{ json $name }}: {"type": {{ json $p.Type }}"""
        + """{{- if $p.Items }}, "items": {{ json $p.Items }}{{ end }}{{- if $p.Enum }}, "enum": [{{- range $e, $v := $p.Enum }}{{ if $e }}, {{ end }}{{ json $v }}{{- end }}]{{ end }}"""
        + """{{- if $p.Description }}, "description": {{ json $p.Description }}{{ end }}}{{- end }}}"""
        + """{{- if $tool.Function.Parameters.Required }}, "required": [{{- range $r, $v := $tool.Function.Parameters.Required }}{{ if $r }}, {{ end }}{{ json $v }}{{- end }}]{{ end }}}}}"""
        + """{{- end }}][/AVAILABLE_TOOLS]{{- end }}"""
        + """[INST] {{ if and $.System (eq $i $lastUser) }}{{ $.System }}{{ "\n\n" }}{{ end }}{{ $m.Content }}[/INST]"""
        + """{{- else if eq $m.Role "assistant" }}{{- if $m.ToolCalls }}[TOOL_CALLS] [{{- range $c, $call := $m.ToolCalls }}{{ if $c }}, {{ end }}"""
        + """{"name": {{ json $call.Function.Name }}, "arguments": {{"{"}}{{- $first := true }}{{- range $k, $v := $call.Function.Arguments }}{{ if not $first }}, {{ end }}{{- $first = false }}{{ json $k }}: {{ json $v }}{{- end }}}"""
        + """{{- if $call.ID }}, "id": {{ json $call.ID }}{{ end }}}{{- end }}]{{- else }} {{ $m.Content }}{{- end }}</s>"""
        + """{{- else if eq $m.Role "tool" }}[TOOL_RESULTS] {"content": """
        + """{{- if not $m.Content }} {}{{- else if or (eq (slice $m.Content 0 1) "{" "[" "\"" "-" "0" "1" "2" "3" "4" "5" "6" "7" "8" "9") (eq $m.Content "true" "false" "null") }} {{ $m.Content }}"""
        + """{{- else }} {{ json $m.Content }}{{- end }}, "call_id": {{ json $m.ToolCallID }}}[/TOOL_RESULTS]{{- end }}{{- end }}""";
}

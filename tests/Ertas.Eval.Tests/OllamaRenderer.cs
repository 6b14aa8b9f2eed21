using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ertas.Mistral.Templates;

namespace Ertas.Eval.Tests;

/// <summary>
/// Ollama's prompt rendering, run by Go's text/template itself (ollama/ollama template/template.go, late 2025): the
/// Modelfile's SYSTEM becomes a leading system message when the request has none; consecutive messages of one role
/// are merged with a blank line, except tool results; a template that mentions .Messages runs once with the messages,
/// .System (every system message joined), .Tools, and Ollama's <c>json</c> function. Tool parameters and call arguments
/// reach the template as plain Go maps, as Ollama's convertToolsForTemplate/convertMessagesForTemplate hand them over.
/// </summary>
internal static class OllamaRenderer
{
    public static string Render(string template, IReadOnlyList<ChatMessage> conversation, string? modelfileSystem,
        IReadOnlyList<ChatTool>? tools = null)
    {
        var go = GoCompiler();
        Skip.If(go is null, "Go is not installed (apt-get install golang-go; .ci/run installs it): Ollama's template engine is Go's text/template");
        using var folder = new TempDirectory();
        File.WriteAllText(folder.Combine("main.go"), GoProgram);
        File.WriteAllText(folder.Combine("template.txt"), template);
        File.WriteAllText(folder.Combine("input.json"), Request(conversation, modelfileSystem, tools).ToJsonString());
        var start = new ProcessStartInfo(go!, "run main.go template.txt input.json")
        {
            WorkingDirectory = folder.Path,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
        };
        start.Environment["GO111MODULE"] = "off";
        start.Environment["GOCACHE"] = Path.Combine(Path.GetTempPath(), "ertas-go-cache");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(120_000), "go run timed out");
        Assert.True(process.ExitCode == 0, $"go run failed: {stderr}");
        return stdout.Result;
    }

    /// <summary>The request as Ollama's /api/chat takes it: arguments and parameters as JSON objects.</summary>
    private static JsonObject Request(IReadOnlyList<ChatMessage> conversation, string? modelfileSystem, IReadOnlyList<ChatTool>? tools)
    {
        var messages = new JsonArray();
        foreach (var m in conversation)
        {
            var message = new JsonObject { ["role"] = m.Role, ["content"] = m.Content };
            if (m.ToolCalls is { Count: > 0 } calls)
                message["tool_calls"] = new JsonArray(calls.Select(c => (JsonNode)new JsonObject
                {
                    ["id"] = c.Id ?? "",
                    ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = JsonNode.Parse(c.Arguments) },
                }).ToArray());
            if (m.ToolCallId is not null)
                message["tool_call_id"] = m.ToolCallId;
            if (m.Name is not null)
                message["tool_name"] = m.Name;
            messages.Add(message);
        }
        var request = new JsonObject { ["system"] = modelfileSystem ?? "", ["messages"] = messages };
        if (tools is { Count: > 0 })
            request["tools"] = new JsonArray(tools.Select(t => (JsonNode)new JsonObject
            {
                ["type"] = "function",
                ["function"] = new JsonObject
                {
                    ["name"] = t.Name,
                    ["description"] = t.Description,
                    ["parameters"] = JsonNode.Parse(t.ParametersJson),
                },
            }).ToArray());
        return request;
    }

    private static string? GoCompiler() =>
        new[] { "/usr/bin/go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go" }.FirstOrDefault(File.Exists)
        ?? (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(p => Path.Combine(p, "go")).FirstOrDefault(File.Exists);

    // Ollama's api types and template execution, reduced to what a .Messages template sees.
    private const string GoProgram = """
        package main

        import (
            "encoding/json"
            "os"
            "strings"
            "text/template"
        )

        type PropertyType []string

        func (pt *PropertyType) UnmarshalJSON(data []byte) error {
            var s string
            if err := json.Unmarshal(data, &s); err == nil {
                *pt = []string{s}
                return nil
            }
            var a []string
            if err := json.Unmarshal(data, &a); err != nil {
                return err
            }
            *pt = a
            return nil
        }

        func (pt PropertyType) MarshalJSON() ([]byte, error) {
            if len(pt) == 1 {
                return json.Marshal(pt[0])
            }
            return json.Marshal([]string(pt))
        }

        type ToolProperty struct {
            Type        PropertyType `json:"type,omitempty"`
            Items       any          `json:"items,omitempty"`
            Description string       `json:"description,omitempty"`
            Enum        []any        `json:"enum,omitempty"`
        }

        type Tool struct {
            Type     string `json:"type"`
            Items    any    `json:"items,omitempty"`
            Function struct {
                Name        string `json:"name"`
                Description string `json:"description"`
                Parameters  struct {
                    Type       string                  `json:"type"`
                    Defs       any                     `json:"$defs,omitempty"`
                    Items      any                     `json:"items,omitempty"`
                    Required   []string                `json:"required,omitempty"`
                    Properties map[string]ToolProperty `json:"properties"`
                } `json:"parameters"`
            } `json:"function"`
        }

        type ToolCall struct {
            ID       string `json:"id,omitempty"`
            Function struct {
                Index     int            `json:"index"`
                Name      string         `json:"name"`
                Arguments map[string]any `json:"arguments"`
            } `json:"function"`
        }

        type Message struct {
            Role       string     `json:"role"`
            Content    string     `json:"content"`
            ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
            ToolName   string     `json:"tool_name,omitempty"`
            ToolCallID string     `json:"tool_call_id,omitempty"`
        }

        type Input struct {
            System   string    `json:"system"`
            Messages []Message `json:"messages"`
            Tools    []Tool    `json:"tools"`
        }

        type templateTools []Tool

        func (t templateTools) String() string {
            bts, _ := json.Marshal(t)
            return string(bts)
        }

        func main() {
            text, err := os.ReadFile(os.Args[1])
            if err != nil { panic(err) }
            raw, err := os.ReadFile(os.Args[2])
            if err != nil { panic(err) }
            var in Input
            if err := json.Unmarshal(raw, &in); err != nil { panic(err) }
            msgs := in.Messages
            hasSystem := false
            for _, m := range msgs { if m.Role == "system" { hasSystem = true } }
            if in.System != "" && !hasSystem {
                msgs = append([]Message{{Role: "system", Content: in.System}}, msgs...)
            }
            var collated []*Message
            var system []string
            for i := range msgs {
                if msgs[i].Role == "system" { system = append(system, msgs[i].Content) }
                if len(collated) > 0 && collated[len(collated)-1].Role == msgs[i].Role && msgs[i].Role != "tool" {
                    collated[len(collated)-1].Content += "\n\n" + msgs[i].Content
                } else {
                    collated = append(collated, &msgs[i])
                }
            }
            var tools templateTools
            if in.Tools != nil { tools = templateTools(in.Tools) }
            funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
            t := template.Must(template.New("").Option("missingkey=zero").Funcs(funcs).Parse(string(text)))
            values := map[string]any{"Messages": collated, "System": strings.Join(system, "\n\n"), "Tools": tools, "Response": ""}
            if err := t.Execute(os.Stdout, values); err != nil { panic(err) }
        }
        """;
}

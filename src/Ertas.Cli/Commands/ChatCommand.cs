using System.Globalization;
using Ertas.Core;
using Ertas.Eval;
using Ertas.Gguf;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Cli.Commands;

/// <summary>
/// <c>ertas chat</c>: talk to a GGUF through llama.cpp, the runtime users deploy, with prompts built by our chat
/// template, so the model sees exactly the format it was fine-tuned on. Answers go to stdout and nothing else does;
/// the banner, prompts and notes go to stderr, so <c>--message</c> output can be piped as is.
/// </summary>
public sealed class ChatCommand : ICommand
{
    private readonly TextReader? _input;

    /// <param name="input">Where interactive lines come from; the console when null (tests pass a reader).</param>
    public ChatCommand(TextReader? input = null) => _input = input;

    public IReadOnlyList<string> Verb { get; } = ["chat"];
    public string Usage => "ertas chat FILE.gguf [--system TEXT] [--tools TOOLS.json] [--lora ADAPTER.gguf] [--max-tokens N] [--temperature T [--seed S]] [--message TEXT ...]";
    public string Summary => "Chat with a GGUF model through llama.cpp, prompts in the format its vocabulary's models train on (mistral-v1 or mistral-v3).";
    public int MaxPositionals => 1;
    public string PositionalsName => "FILE.gguf";
    public string PositionalsHelp => "The GGUF model to chat with.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--system", "A system message, placed where the template puts it in training (v1: first user message, v3: last).", "TEXT"),
        new("--tools", "Tools the model may call (mistral-v3 GGUFs): a JSON file with a \"tools\" list in OpenAI's shape, or the list itself.", "FILE"),
        new("--lora", "A llama.cpp LoRA adapter GGUF to apply at scale 1.", "FILE"),
        new("--max-tokens", "Most tokens per answer (default 512); an answer also ends at EOS.", "N"),
        new("--temperature", "Sample from softmax(logits / T), T > 0, instead of greedy decoding.", "T"),
        new("--seed", "Seed of the sampler with --temperature (default 42).", "S"),
        new("--message", "Answer this message without a terminal and exit (repeatable: one conversation, in order).", "TEXT", Repeatable: true),
        new("--context", $"Context size in tokens (default {LlamaCppChat.DefaultContextSize}, or the model's training context if smaller); "
            + "the oldest turns are dropped to fit.", "N"),
        new("--threads", "llama.cpp threads (default 4).", "N"),
    ];

    private const string ResetCommand = "/reset";
    private const string ExitCommand = "/exit";

    public int Run(ParsedArgs args, CliContext context)
    {
        if (args.Positionals.Count == 0)
            throw new ErtasException(ErrorCode.MissingArgument, "give the model to chat with: ertas chat FILE.gguf");
        var modelPath = args.Positionals[0];
        var maxTokens = args.GetInt("--max-tokens", 512, min: 1, max: 1 << 20);
        var contextSize = args.GetIntOrNull("--context", min: 16, max: 1 << 20);
        var threads = args.GetInt("--threads", 4, min: 1, max: 1024);
        var sampler = Sampler(args);
        var loraPath = args.Get("--lora");
        if (!File.Exists(modelPath))
            throw new ErtasException(ErrorCode.FileNotFound, "the model to chat with does not exist", modelPath);
        if (loraPath is not null && !File.Exists(loraPath))
            throw new ErtasException(ErrorCode.FileNotFound, "the LoRA adapter does not exist", loraPath);

        // The tokenizer inside the GGUF is the one the model was trained with; reading it also rejects non-GGUF files
        // with our own diagnostic before llama.cpp sees them.
        MistralTokenizer tokenizer;
        using (var gguf = new GgufTensorSource(modelPath))
            tokenizer = TokenizerVocabularies.ToTokenizer(gguf.ReadVocabulary());
        // The template the vocabulary's models train on, as export chose the GGUF's Jinja: v3's control tokens mean v3.
        var template = ChatTemplates.For(tokenizer);
        var tools = args.Get("--tools") is { } toolsPath ? ReadTools(toolsPath, template) : [];
        using var model = LlamaCppChat.Load(modelPath, contextSize, threads, loraPath);
        if (maxTokens >= model.ContextSize)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"--max-tokens {maxTokens} leaves no room for a prompt in the context of {model.ContextSize} tokens");
        if (contextSize > model.TrainingContextSize && model.TrainingContextSize > 0)
            context.Error.WriteLine($"ertas chat: --context {contextSize} is beyond the {model.TrainingContextSize} tokens the model was trained on; long chats may degrade");

        var session = new Session(model, tokenizer, new ChatConversation(tokenizer, template, args.Get("--system"), tools), sampler, maxTokens, context);
        var messages = args.GetAll("--message");
        if (messages.Count > 0)
        {
            foreach (var message in messages)
                session.Answer(message);
            return 0;
        }

        var lora = loraPath is null ? "" : $" + {Path.GetFileName(loraPath)}";
        var sampling = sampler.IsGreedy ? "greedy" : $"temperature {sampler.Temperature.ToString(CultureInfo.InvariantCulture)}";
        context.Error.WriteLine(
            $"ertas chat: {Path.GetFileName(modelPath)}{lora}, template {template.Name}, context {model.ContextSize}, {sampling}; "
            + $"{ResetCommand} clears the history, {ExitCommand} or Ctrl+D ends");
        var input = _input ?? Console.In;
        // A prompt marker only for a person at a terminal; piped or injected input gets none.
        var showPrompt = _input is null && !Console.IsInputRedirected;
        while (true)
        {
            if (showPrompt)
            {
                context.Error.Write("> ");
                context.Error.Flush();
            }
            var line = input.ReadLine();
            // Ctrl+C while waiting for a line takes effect once the read returns.
            context.Cancellation.ThrowIfCancellationRequested();
            if (line is null || line.Trim() == ExitCommand)
                return 0;
            if (line.Trim() == ResetCommand)
            {
                session.Reset();
                context.Error.WriteLine("ertas chat: history cleared");
                continue;
            }
            if (string.IsNullOrWhiteSpace(line))
                continue;
            try
            {
                session.Answer(line);
            }
            catch (ErtasException e) when (e.Code == ErrorCode.InvalidArgument)
            {
                // A message too long for the context: the chat goes on, the person can send a shorter one.
                context.Error.WriteLine(e.ToDiagnostic());
            }
        }
    }

    /// <summary>
    /// The tools of <c>--tools</c>: a chat file's <c>tools</c> (messages optional) or a bare list, read by the parser
    /// training data goes through, so a tool spelled in a dataset is spelled the same in the prompt.
    /// </summary>
    private static IReadOnlyList<ChatTool> ReadTools(string path, IChatTemplate template)
    {
        if (!File.Exists(path))
            throw new ErtasException(ErrorCode.FileNotFound, "the tools file does not exist", path);
        if (template is not MistralV3ChatTemplate)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"--tools needs a model with Mistral's v3 tool tokens; this GGUF's vocabulary trains on {template.Name}, which has no tool calling", path);
        // The chat-file parser wants messages: a stand-in is added after the file's own text, so its errors keep the
        // file's lines and columns.
        const string standIn = "\"messages\": [{\"role\": \"user\", \"content\": \"-\"}]";
        var text = File.ReadAllText(path).TrimEnd();
        var json = text.TrimStart().StartsWith('[') ? "{\"tools\": " + text + "\n, " + standIn + "}"
            : text.EndsWith('}') && !text.Contains("\"messages\"", StringComparison.Ordinal) ? text[..^1] + ", " + standIn + "}"
            : text;
        var document = ChatFile.ParseDocument(json, path);
        return document.Tools;
    }

    private static ChatSampler Sampler(ParsedArgs args)
    {
        if (args.Get("--temperature") is not { } text)
        {
            if (args.Has("--seed"))
                throw new ErtasException(ErrorCode.InvalidArgument, "--seed only applies with --temperature (greedy decoding draws nothing)");
            return ChatSampler.Greedy();
        }
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var temperature)
            || !(temperature > 0) || double.IsInfinity(temperature))
            throw new ErtasException(ErrorCode.InvalidArgument, $"--temperature expects a number above 0, got '{text}'; leave it out for greedy decoding");
        return ChatSampler.WithTemperature(temperature, args.GetInt("--seed", 42, min: 0));
    }

    /// <summary>One chat: the model, the history and where answers go.</summary>
    private sealed class Session(LlamaCppChat model, MistralTokenizer tokenizer, ChatConversation conversation, ChatSampler sampler, int maxTokens, CliContext context)
    {
        public void Reset() => conversation.Reset();

        /// <summary>Streams the answer to <paramref name="message"/> to stdout, ending its line, and keeps the exchange.</summary>
        public void Answer(string message)
        {
            var (prompt, dropped) = conversation.Prompt(message, model.ContextSize - maxTokens);
            if (dropped > 0)
                context.Error.WriteLine(
                    $"ertas chat: dropped the oldest {dropped} exchange{(dropped == 1 ? "" : "s")} from the history to fit the context of {model.ContextSize} tokens");
            var text = new StreamingDetokenizer(tokenizer);
            foreach (var id in model.Stream(prompt, maxTokens, tokenizer.EosId, sampler, context.Cancellation))
            {
                var piece = text.Add(id);
                if (piece.Length == 0)
                    continue;
                context.Out.Write(piece);
                context.Out.Flush();
            }
            context.Out.Write(text.Flush());
            context.Out.WriteLine();
            context.Out.Flush();
            var calledTools = text.Ids.Count > 0 && text.Ids[0] == tokenizer.ControlId(MistralV3ChatTemplate.ToolCalls);
            if (calledTools)
                context.Error.WriteLine("ertas chat: the model called a tool; chat runs no tools, so this exchange is not kept in the history");
            else if (!conversation.Record(message, text.Text))
                context.Error.WriteLine("ertas chat: the answer was empty; this exchange is not kept in the history");
        }
    }
}

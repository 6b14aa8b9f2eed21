using Ertas.Core;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas tokenize</c>: ids of a text or of a chat rendered through a template, on one line.</summary>
public sealed class TokenizeCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["tokenize"];
    public string Usage => "ertas tokenize --tokenizer PATH (--text TEXT [--parse-special] [--no-bos] | --chat FILE.json [--template auto|mistral-v1|mistral-v3])";
    public string Summary => "Print token ids, space-separated, for a text or a chat file.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--tokenizer", "SentencePiece tokenizer.model, or a checkpoint folder holding one.", "PATH", Required: true),
        new("--text", "Plain text to encode (a BOS id first unless --no-bos).", "TEXT"),
        new("--chat", "JSON file {\"messages\":[{\"role\":..,\"content\":..}], \"tools\":[...]} (OpenAI's shape) rendered with --template.", "FILE"),
        new("--template", $"Chat template: {string.Join(", ", ChatTemplates.Names)} (default {ChatTemplates.AutoName}: the one the tokenizer's models were trained on).", "NAME"),
        new("--no-bos", "Do not prepend the BOS id to --text."),
        new("--parse-special", "Turn control-token text in --text (\"[INST]\", \"</s>\") into the control ids, as llama.cpp's parse_special; without it such text is text."),
    ];

    public int Run(ParsedArgs args, CliContext context)
    {
        var tokenizer = MistralTokenizer.Load(ResolveTokenizerPath(args.Require("--tokenizer")));
        var text = args.Get("--text");
        var chat = args.Get("--chat");
        if ((text is null) == (chat is null))
            throw new ErtasException(ErrorCode.InvalidArgument, "give exactly one of --text or --chat");
        IReadOnlyList<int> ids;
        if (chat is not null)
        {
            foreach (var textOnly in (ReadOnlySpan<string>)["--no-bos", "--parse-special"])
                if (args.Has(textOnly))
                    throw new ErtasException(ErrorCode.InvalidArgument, $"{textOnly} applies to --text; a chat template decides its own BOS and control tokens");
            var template = ChatTemplates.Get(args.Get("--template") ?? ChatTemplates.AutoName, tokenizer);
            var document = ChatFile.LoadDocument(chat);
            ids = template.Encode(tokenizer, document.Messages, tools: document.Tools).Ids;
        }
        else
        {
            if (args.Has("--template"))
                throw new ErtasException(ErrorCode.InvalidArgument, "--template applies to --chat only");
            ids = tokenizer.Encode(text!, addBos: !args.Has("--no-bos"), parseSpecial: args.Has("--parse-special"));
        }
        context.Out.WriteLine(string.Join(' ', ids));
        return 0;
    }

    /// <summary>Accepts a checkpoint folder too, since that is where users' tokenizer.model lives.</summary>
    public static string ResolveTokenizerPath(string path)
    {
        if (Directory.Exists(path))
        {
            var inside = Path.Combine(path, "tokenizer.model");
            return File.Exists(inside)
                ? inside
                : throw new ErtasException(ErrorCode.TokenizerMissing, $"no tokenizer.model in folder '{path}'", path);
        }
        return path;
    }
}

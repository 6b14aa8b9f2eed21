using Ertas.Core;
using Ertas.Mistral.Templates;
using Ertas.Mistral.Tokenization;

namespace Ertas.Cli.Commands;

/// <summary><c>ertas tokenize</c>: ids of a text or of a chat rendered through a template, on one line.</summary>
public sealed class TokenizeCommand : ICommand
{
    public IReadOnlyList<string> Verb { get; } = ["tokenize"];
    public string Usage => "ertas tokenize --tokenizer PATH (--text TEXT | --chat FILE.json) [--template mistral-v1] [--no-bos]";
    public string Summary => "Print token ids, space-separated, for a text or a chat file.";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--tokenizer", "SentencePiece tokenizer.model, or a checkpoint folder holding one.", "PATH", Required: true),
        new("--text", "Plain text to encode (a BOS id first unless --no-bos).", "TEXT"),
        new("--chat", "JSON file {\"messages\":[{\"role\":..,\"content\":..}]} rendered with --template.", "FILE"),
        new("--template", $"Chat template: {string.Join(", ", ChatTemplates.Names)} (default {ChatTemplates.MistralV1Name}).", "NAME"),
        new("--no-bos", "Do not prepend the BOS id to --text."),
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
            if (args.Has("--no-bos"))
                throw new ErtasException(ErrorCode.InvalidArgument, "--no-bos applies to --text; a chat template decides its own BOS");
            var template = ChatTemplates.Get(args.Get("--template") ?? ChatTemplates.MistralV1Name, tokenizer);
            ids = template.Encode(tokenizer, ChatFile.Load(chat)).Ids;
        }
        else
        {
            if (args.Has("--template"))
                throw new ErtasException(ErrorCode.InvalidArgument, "--template applies to --chat only");
            ids = tokenizer.Encode(text!, addBos: !args.Has("--no-bos"));
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

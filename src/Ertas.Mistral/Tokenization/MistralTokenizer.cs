using Ertas.Core;
using Microsoft.ML.Tokenizers;

namespace Ertas.Mistral.Tokenization;

/// <summary>
/// Mistral's sentencepiece tokenizer: Microsoft.ML.Tokenizers' <see cref="LlamaTokenizer"/> does the encoding (it
/// reproduces mistral-common's ids, FACTS §1), <see cref="SentencePieceModel"/> supplies scores and types.
/// </summary>
public sealed class MistralTokenizer
{
    private readonly LlamaTokenizer _tokenizer;

    private readonly SentencePieceBpeEncoder _encoder;

    // Pieces cut out of the text before BPE when special parsing is asked for, longest first (llama.cpp's order):
    // control, unknown and user-defined pieces (the encoder matches user-defined ones in any text by itself).
    private readonly (string Piece, int Id)[] _parsedSpecials;

    private MistralTokenizer(SentencePieceModel model, LlamaTokenizer tokenizer, string source)
    {
        Model = model;
        _tokenizer = tokenizer;
        Source = source;
        _encoder = new SentencePieceBpeEncoder(model);
        _parsedSpecials = PiecesOfType(model, SentencePieceType.UserDefined, SentencePieceType.Control, SentencePieceType.Unknown);
    }

    private static (string Piece, int Id)[] PiecesOfType(SentencePieceModel model, params SentencePieceType[] types) =>
        Enumerable.Range(0, model.Count)
            .Where(id => types.Contains(model.Types[id]) && model.Pieces[id].Length > 0 && model.IdOf(model.Pieces[id]) == id)
            .Select(id => (Piece: model.Pieces[id], Id: id))
            .OrderByDescending(p => p.Piece.Length)
            .ThenBy(p => p.Id)
            .ToArray();

    public SentencePieceModel Model { get; }

    /// <summary>The file it was loaded from (errors about the tokenizer point there), or a description.</summary>
    public string Source { get; }
    public int VocabSize => Model.Count;
    public int BosId => Model.BosId;
    public int EosId => Model.EosId;
    public int UnkId => Model.UnkId;

    /// <summary>Loads a <c>tokenizer.model</c> (ERTAS3001 when missing, ERTAS3002 when not a usable model).</summary>
    public static MistralTokenizer Load(string path)
    {
        var bytes = SentencePieceModel.ReadFile(path);
        return Create(SentencePieceModel.Parse(bytes, path), bytes, path);
    }

    /// <summary>Wraps an in-memory model, e.g. one from <see cref="SentencePieceBpeTrainer"/>.</summary>
    public static MistralTokenizer FromModel(SentencePieceModel model) => Create(model, model.ToBytes(), "<in-memory tokenizer model>");

    private static MistralTokenizer Create(SentencePieceModel model, byte[] bytes, string source)
    {
        if (model.ModelType != SentencePieceModelType.Bpe)
            throw new ErtasException(ErrorCode.TokenizerCorrupt,
                $"'{source}' is a {model.ModelType} sentencepiece model; Mistral tokenizers are BPE", source);
        CheckSpecialId(model, model.BosId, "bos", source);
        CheckSpecialId(model, model.EosId, "eos", source);
        CheckSpecialId(model, model.UnkId, "unk", source);

        LlamaTokenizer tokenizer;
        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            // No special-token table: mistral-common encodes "<s>" typed in a message as the characters '<', 's',
            // '>', never as the control token, and so must we (a user could otherwise inject turn boundaries).
            tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false, specialTokens: null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new ErtasException(ErrorCode.TokenizerCorrupt,
                $"'{source}' could not be loaded as a sentencepiece BPE model: {e.Message}", source, inner: e);
        }
        return new MistralTokenizer(model, tokenizer, source);
    }

    private static void CheckSpecialId(SentencePieceModel model, int id, string name, string source)
    {
        if (id < 0 || id >= model.Count)
            throw new ErtasException(ErrorCode.TokenizerCorrupt,
                $"'{source}' declares {name}_id {id} but has only {model.Count} pieces", source);
    }

    /// <summary>
    /// Sentencepiece encoding of plain text: dummy prefix, spaces as ▁, byte fallback for unknown characters.
    /// Never adds EOS; text that looks like a control token stays text.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addBos) => Encode(text, addBos, parseSpecial: false);

    /// <summary>
    /// <see cref="Encode(string, bool)"/>, and with <paramref name="parseSpecial"/> the text of a control or unknown
    /// piece (<c>[INST]</c>, <c>&lt;/s&gt;</c>, <c>&lt;unk&gt;</c>) becomes that piece's id, as llama.cpp's
    /// <c>parse_special</c> does. Without it such text stays text, so a message can never forge a turn boundary.
    /// The dummy prefix belongs to the start of the whole text (SentencePiece's), never to text after a special piece,
    /// and with special parsing none goes before a leading special piece (as llama.cpp and Hugging Face do):
    /// <c>"&lt;s&gt;[INST] hi[/INST]"</c> gives <c>&lt;s&gt; [INST] ▁hi [/INST]</c>, the v3 layout. llama.cpp on our
    /// GGUFs (no space prefix of its own) gives the same ids for the text with that dummy-prefix space written out.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addBos, bool parseSpecial)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addBos)
            ids.Add(BosId);
        var fragments = parseSpecial ? SplitAtSpecials(text, _parsedSpecials) : null;
        if (fragments is null)
        {
            _encoder.Encode(text, Model.AddDummyPrefix, ids);
            return ids;
        }
        for (var i = 0; i < fragments.Count; i++)
        {
            var (fragment, id) = fragments[i];
            if (fragment is null)
            {
                ids.Add(id);
                continue;
            }
            // No dummy prefix before a leading special piece, as llama.cpp's parse_special (an empty first fragment).
            _encoder.Encode(fragment, addDummyPrefix: i == 0 && Model.AddDummyPrefix, ids);
        }
        return ids;
    }

    /// <summary>
    /// Cuts <paramref name="text"/> at every occurrence of the pieces, longest piece first over the remaining text
    /// (llama.cpp's tokenizer_st_partition). Null when none occurs. A text fragment is (text, -1), a piece (null, id);
    /// the first entry is always a (possibly empty) text fragment, where the dummy prefix goes.
    /// </summary>
    private static List<(string? Text, int Id)>? SplitAtSpecials(string text, (string Piece, int Id)[] specials)
    {
        List<(string? Text, int Id)>? fragments = null;
        foreach (var (piece, id) in specials)
        {
            if (fragments is null)
            {
                if (!text.Contains(piece, StringComparison.Ordinal))
                    continue;
                fragments = [(text, -1)];
            }
            for (var f = 0; f < fragments.Count; f++)
            {
                if (fragments[f].Text is not { } raw)
                    continue;
                var at = raw.IndexOf(piece, StringComparison.Ordinal);
                if (at < 0)
                    continue;
                fragments.RemoveAt(f);
                fragments.InsertRange(f, [(raw[..at], -1), (null, id), (raw[(at + piece.Length)..], -1)]);
                f++; // continue with the text after the piece
            }
        }
        if (fragments is null)
            return null;
        // Empty text between pieces encodes to nothing; only the leading one matters (it carries the dummy prefix).
        var kept = new List<(string? Text, int Id)>(fragments.Count) { fragments[0] };
        kept.AddRange(fragments.Skip(1).Where(f => f.Text is null || f.Text.Length > 0));
        return kept;
    }

    /// <summary>The id of <paramref name="piece"/> when the vocabulary has it as a control token, else -1.</summary>
    public int ControlId(string piece)
    {
        var id = Model.IdOf(piece);
        return id >= 0 && Model.Types[id] == SentencePieceType.Control ? id : -1;
    }

    /// <summary>Text of <paramref name="ids"/>, control tokens (BOS, EOS) left out.</summary>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var kept = new List<int>();
        foreach (var id in ids)
        {
            CheckId(id);
            if (Model.Types[id] != SentencePieceType.Control)
                kept.Add(id);
        }
        return _tokenizer.Decode(kept, considerSpecialTokens: false);
    }

    /// <summary>
    /// Text of <paramref name="ids"/> as llama.cpp renders a generation with special tokens shown: control tokens
    /// other than BOS and EOS (v3's <c>[TOOL_CALLS]</c>, <c>[INST]</c>, ...) appear as their piece text, and the text
    /// after one keeps its leading space (<c>[TOOL_CALLS]▁[{</c> reads "[TOOL_CALLS] [{"). A model's tool call is
    /// only visible this way; <see cref="Decode"/> drops it.
    /// </summary>
    public string DecodeWithControlPieces(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var text = new System.Text.StringBuilder();
        var run = new List<int>();
        foreach (var id in ids)
        {
            CheckId(id);
            if (Model.Types[id] != SentencePieceType.Control)
            {
                run.Add(id);
                continue;
            }
            Flush();
            if (id != BosId && id != EosId)
                text.Append(Model.Pieces[id]);
        }
        Flush();
        return text.ToString();

        void Flush()
        {
            if (run.Count == 0)
                return;
            // SentencePiece drops the dummy-prefix space of a text's first piece; only the very first run has one.
            if (text.Length > 0 && Model.Pieces[run[0]].StartsWith('▁'))
                text.Append(' ');
            text.Append(_tokenizer.Decode(run, considerSpecialTokens: false));
            run.Clear();
        }
    }

    /// <summary>The raw piece, e.g. "▁the", "&lt;0x0A&gt;", "&lt;s&gt;".</summary>
    public string IdToPiece(int id)
    {
        CheckId(id);
        return Model.Pieces[id];
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)Model.Count)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary of {Model.Count}");
    }
}

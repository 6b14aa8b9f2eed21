using System.Text;

namespace Ertas.Mistral.Tokenization;

/// <summary>
/// SentencePiece's BPE encoding (bpe_model.cc), written out because Microsoft.ML.Tokenizers breaks ties between
/// equal pairs differently: on <c>}}}]</c> it merges the right <c>}}</c> first and gives <c>}}} ]</c>, where
/// SentencePiece and llama.cpp merge the leftmost and give <c>}} }]</c> (mistral-common's ids for v3 tool lists).
/// Symbols start as single characters, or whole user-defined pieces which never merge; the adjacent pair whose
/// concatenation is the highest-scoring piece merges first, the leftmost on ties; characters left without a piece
/// become their UTF-8 bytes (byte fallback) or unk.
/// </summary>
internal sealed class SentencePieceBpeEncoder
{
    private readonly SentencePieceModel _model;
    private readonly Dictionary<string, int> _mergeable = new(StringComparer.Ordinal);
    private readonly (string Piece, int Id)[] _userDefined;
    private readonly int[] _byteIds;

    public SentencePieceBpeEncoder(SentencePieceModel model)
    {
        _model = model;
        _byteIds = Enumerable.Repeat(-1, 256).ToArray();
        var userDefined = new List<(string, int)>();
        for (var id = 0; id < model.Count; id++)
        {
            var piece = model.Pieces[id];
            switch (model.Types[id])
            {
                case SentencePieceType.Normal or SentencePieceType.Unused:
                    _mergeable.TryAdd(piece, id);
                    break;
                case SentencePieceType.UserDefined:
                    _mergeable.TryAdd(piece, id);
                    if (piece.Length > 0) userDefined.Add((piece, id));
                    break;
                case SentencePieceType.Byte when piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal)
                    && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var b):
                    _byteIds[b] = id;
                    break;
            }
        }
        _userDefined = userDefined.OrderByDescending(p => p.Item1.Length).ToArray();
    }

    /// <summary>Encodes <paramref name="text"/>; with <paramref name="addDummyPrefix"/> a "▁" goes in front, as the normalizer does.</summary>
    public void Encode(string text, bool addDummyPrefix, List<int> output)
    {
        if (text.Length == 0)
            return;
        var normalized = Normalize(text, addDummyPrefix);
        var (symbols, frozen) = Split(normalized);
        Merge(symbols, frozen);
        foreach (var symbol in symbols)
        {
            if (symbol.Length == 0)
                continue;
            Emit(symbol, output);
        }
    }

    /// <summary>Mistral's normalizer: the identity, optional extra-whitespace removal, spaces escaped as ▁.</summary>
    private string Normalize(string text, bool addDummyPrefix)
    {
        if (_model.RemoveExtraWhitespaces)
            text = string.Join(' ', text.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var builder = new StringBuilder(text.Length + 1);
        if (addDummyPrefix && text.Length > 0)
            builder.Append('\u2581');
        foreach (var c in text)
            builder.Append(c == ' ' ? '\u2581' : c);
        return builder.ToString();
    }

    /// <summary>One symbol per character (surrogate pairs kept whole), user-defined pieces as one frozen symbol each.</summary>
    private (List<string> Symbols, List<bool> Frozen) Split(string normalized)
    {
        var symbols = new List<string>(normalized.Length);
        var frozen = new List<bool>(normalized.Length);
        var position = 0;
        while (position < normalized.Length)
        {
            var matched = false;
            foreach (var (piece, _) in _userDefined)
            {
                if (string.CompareOrdinal(normalized, position, piece, 0, piece.Length) == 0)
                {
                    symbols.Add(piece);
                    frozen.Add(true);
                    position += piece.Length;
                    matched = true;
                    break;
                }
            }
            if (matched)
                continue;
            var length = char.IsHighSurrogate(normalized[position]) && position + 1 < normalized.Length && char.IsLowSurrogate(normalized[position + 1]) ? 2 : 1;
            symbols.Add(normalized.Substring(position, length));
            frozen.Add(false);
            position += length;
        }
        return (symbols, frozen);
    }

    private void Merge(List<string> symbols, List<bool> frozen)
    {
        var count = symbols.Count;
        var previous = new int[count];
        var next = new int[count];
        for (var i = 0; i < count; i++)
        {
            previous[i] = i - 1;
            next[i] = i + 1 < count ? i + 1 : -1;
        }
        // Highest score first, then the leftmost pair: SentencePiece's agenda order. Stale entries are skipped when popped.
        var agenda = new PriorityQueue<(int Left, int Right, string Piece), (float Score, int Left)>(
            Comparer<(float Score, int Left)>.Create((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left)));
        var reverseMerges = new Dictionary<string, (string, string)>(StringComparer.Ordinal);

        void TryAddPair(int left, int right)
        {
            if (left < 0 || right < 0 || frozen[left] || frozen[right])
                return;
            var piece = symbols[left] + symbols[right];
            if (!_mergeable.TryGetValue(piece, out var id))
                return;
            agenda.Enqueue((left, right, piece), (_model.Scores[id], left));
            if (_model.Types[id] == SentencePieceType.Unused)
                reverseMerges.TryAdd(piece, (symbols[left], symbols[right]));
        }

        for (var i = 0; i + 1 < count; i++)
            TryAddPair(i, i + 1);
        while (agenda.TryDequeue(out var pair, out _))
        {
            var (left, right, piece) = pair;
            if (symbols[left].Length == 0 || symbols[right].Length == 0 || symbols[left].Length + symbols[right].Length != piece.Length
                || next[left] != right)
                continue;
            symbols[left] = piece;
            symbols[right] = "";
            next[left] = next[right];
            if (next[right] >= 0)
                previous[next[right]] = left;
            TryAddPair(previous[left], left);
            TryAddPair(left, next[left]);
        }

        if (reverseMerges.Count == 0)
            return;
        // Unused pieces take part in merging but are never output: split them back into what they were merged from.
        for (var i = 0; i < symbols.Count; i++)
        {
            if (symbols[i].Length == 0)
                continue;
            var parts = new List<string>();
            Resegment(symbols[i], parts, reverseMerges);
            if (parts.Count == 1)
                continue;
            symbols[i] = parts[0];
            symbols.InsertRange(i + 1, parts.Skip(1));
            i += parts.Count - 1;
        }
    }

    private void Resegment(string symbol, List<string> output, Dictionary<string, (string, string)> reverseMerges)
    {
        if (_mergeable.TryGetValue(symbol, out var id) && _model.Types[id] == SentencePieceType.Unused
            && reverseMerges.TryGetValue(symbol, out var halves))
        {
            Resegment(halves.Item1, output, reverseMerges);
            Resegment(halves.Item2, output, reverseMerges);
            return;
        }
        output.Add(symbol);
    }

    private void Emit(string symbol, List<int> output)
    {
        if (_mergeable.TryGetValue(symbol, out var id) && _model.Types[id] != SentencePieceType.Unused)
        {
            output.Add(id);
            return;
        }
        if (_model.ByteFallback)
        {
            foreach (var b in Encoding.UTF8.GetBytes(symbol))
                output.Add(_byteIds[b] >= 0 ? _byteIds[b] : _model.UnkId);
            return;
        }
        output.Add(_model.UnkId);
    }
}

using System.Globalization;
using System.Text;
using Ertas.Core;

namespace Ertas.Mistral.Tokenization;

/// <summary>
/// Trains a small sentencepiece BPE vocabulary laid out like Mistral's: <c>&lt;unk&gt; &lt;s&gt; &lt;/s&gt;</c>, the 256
/// byte pieces, the learned merges (scores 0, -1, -2, ... in merge order), then every character of the text.
/// Meant for test models and tiny end-to-end builds, not for quality.
/// </summary>
/// <remarks>
/// Sentencepiece, llama.cpp and Microsoft.ML.Tokenizers all encode by repeatedly merging the adjacent pair whose
/// concatenation is the highest-scoring piece. Every merge result is therefore added as a piece with a score
/// strictly below all earlier ones, so the three encoders agree with each other and with the training order.
/// When the text runs out of mergeable pairs before <c>vocabSize</c> is reached, training stops early and the
/// model is smaller: check <see cref="SentencePieceModel.Count"/> (the trainer spec's vocab_size says the same).
/// When the text has more distinct characters than fit, the rarest are left out and reach the model as bytes.
/// </remarks>
public static class SentencePieceBpeTrainer
{
    public const char WordBoundary = '\u2581';
    public const int MaxPieceLength = 16;
    private const int SpecialAndBytePieces = 3 + 256;

    /// <summary>Trains on a built-in few-KB English text; deterministic, so equal sizes give equal bytes.</summary>
    public static SentencePieceModel TrainDefault(int vocabSize = 512) => Train(EnglishTrainingText.Text, vocabSize);

    /// <summary>Trains on <paramref name="text"/>; the result has at most <paramref name="vocabSize"/> pieces.</summary>
    public static SentencePieceModel Train(string text, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(text);
        var words = CountWords(text);
        var characters = RankCharacters(words);
        if (characters.Count == 0)
            throw new ErtasException(ErrorCode.InvalidArgument, "cannot train a tokenizer on empty text");
        var budget = vocabSize - SpecialAndBytePieces;
        if (budget < 1)
            throw new ErtasException(ErrorCode.InvalidArgument,
                $"vocabulary size {vocabSize} is too small: it needs at least {SpecialAndBytePieces + 1} " +
                "(3 special pieces, 256 byte pieces and at least one character)");
        // Like sentencepiece's character_coverage: when every character does not fit with room for merges, the
        // rarest ones are left out (they encode as bytes) and a quarter of the budget goes to merges.
        if (characters.Count > budget)
            characters = characters.Take(Math.Max(1, budget - budget / 4)).ToList();

        var merges = LearnMerges(words, characters, budget - characters.Count);

        var pieces = new List<SentencePiece>(SpecialAndBytePieces + merges.Count + characters.Count)
        {
            new("<unk>", 0f, SentencePieceType.Unknown),
            new("<s>", 0f, SentencePieceType.Control),
            new("</s>", 0f, SentencePieceType.Control),
        };
        for (var b = 0; b < 256; b++)
            pieces.Add(new($"<0x{b:X2}>", 0f, SentencePieceType.Byte));
        var score = 0f;
        foreach (var merge in merges)
            pieces.Add(new(merge, score--));
        foreach (var character in characters)
            pieces.Add(new(character, score--));

        return new SentencePieceModel(pieces, TrainerSpec.ForBpe(pieces.Count), NormalizerSpec.Identity());
    }

    /// <summary>
    /// Applies Mistral's normalizer (identity, dummy prefix, spaces as ▁) line by line and splits at each ▁, as
    /// sentencepiece's trainer does, so no piece can span two words. Each word becomes a list of characters.
    /// </summary>
    private static Dictionary<string, int> CountWords(string text)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var rawLine in text.Split('\n'))
        {
            var line = rawLine.TrimEnd('\r');
            if (line.Length == 0)
                continue;
            var normalized = WordBoundary + line.Replace(' ', WordBoundary);
            var start = 0;
            for (var i = 1; i <= normalized.Length; i++)
            {
                if (i == normalized.Length || normalized[i] == WordBoundary)
                {
                    var word = normalized[start..i];
                    counts[word] = counts.GetValueOrDefault(word) + 1;
                    start = i;
                }
            }
        }
        return counts;
    }

    /// <summary>Every character of the text, most frequent first, ties in ordinal order.</summary>
    private static List<string> RankCharacters(Dictionary<string, int> words)
    {
        var frequency = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (word, count) in words)
            foreach (var rune in word.EnumerateRunes())
            {
                var character = rune.ToString();
                frequency[character] = frequency.GetValueOrDefault(character) + count;
            }
        return frequency
            .OrderByDescending(pair => pair.Value)
            .ThenBy(pair => pair.Key, StringComparer.Ordinal)
            .Select(pair => pair.Key)
            .ToList();
    }

    private enum CharacterClass { Boundary, Digit, Letter, Other, Excluded }

    private sealed record Symbol(string Text, int Length, CharacterClass Class)
    {
        /// <summary>The class of the text after an optional leading ▁; Boundary when the symbol is just ▁.</summary>
        public static Symbol Of(string text)
        {
            var runes = text.EnumerateRunes().ToArray();
            var body = runes.SkipWhile(r => r.Value == WordBoundary).ToArray();
            var cls = body.Length == 0 ? CharacterClass.Boundary : Classify(body[0]);
            return new Symbol(text, runes.Length, cls);
        }
    }

    private static CharacterClass Classify(Rune rune) =>
        Rune.IsDigit(rune) ? CharacterClass.Digit
        : Rune.IsLetter(rune) || Rune.GetUnicodeCategory(rune) is UnicodeCategory.NonSpacingMark
            or UnicodeCategory.SpacingCombiningMark ? CharacterClass.Letter
        : CharacterClass.Other;

    /// <summary>
    /// Sentencepiece's validity rules, simplified: ▁ only at the start of a piece, digits never merged
    /// (split_digits), letters never merged with punctuation (its script rule), at most 16 characters.
    /// </summary>
    private static bool CanMerge(Symbol left, Symbol right)
    {
        if (left.Class is CharacterClass.Digit or CharacterClass.Excluded
            || right.Class is CharacterClass.Digit or CharacterClass.Boundary or CharacterClass.Excluded)
            return false;
        if (left.Length + right.Length > MaxPieceLength)
            return false;
        return left.Class == CharacterClass.Boundary || left.Class == right.Class;
    }

    private static List<string> LearnMerges(Dictionary<string, int> wordCounts, List<string> characters, int maxMerges)
    {
        var symbols = new List<Symbol>();
        var idOf = new Dictionary<string, int>(StringComparer.Ordinal);
        int Intern(string text)
        {
            if (!idOf.TryGetValue(text, out var id))
            {
                id = symbols.Count;
                symbols.Add(Symbol.Of(text));
                idOf.Add(text, id);
            }
            return id;
        }
        foreach (var character in characters)
            Intern(character);
        var kept = symbols.Count;

        // Sorted so that iteration order, and with it every tie, never depends on hashing.
        var words = wordCounts
            .OrderBy(pair => pair.Key, StringComparer.Ordinal)
            .Select(pair => (Symbols: pair.Key.EnumerateRunes().Select(r => Intern(r.ToString())).ToList(), Count: pair.Value))
            .ToList();
        // Characters interned only now were left out of the vocabulary: nothing may be built from them.
        for (var id = kept; id < symbols.Count; id++)
            symbols[id] = symbols[id] with { Class = CharacterClass.Excluded };

        var merges = new List<string>();
        var learned = new HashSet<string>(characters, StringComparer.Ordinal);
        // Pair counts are kept up to date word by word: only words holding the merged pair are recounted.
        var pairCounts = new Dictionary<long, long>();
        void CountPairs(List<int> wordSymbols, long count)
        {
            for (var i = 0; i + 1 < wordSymbols.Count; i++)
            {
                if (!CanMerge(symbols[wordSymbols[i]], symbols[wordSymbols[i + 1]]))
                    continue;
                var key = PairKey(wordSymbols[i], wordSymbols[i + 1]);
                var total = pairCounts.GetValueOrDefault(key) + count;
                if (total == 0)
                    pairCounts.Remove(key);
                else
                    pairCounts[key] = total;
            }
        }
        foreach (var (wordSymbols, count) in words)
            CountPairs(wordSymbols, count);

        while (merges.Count < maxMerges && pairCounts.Count > 0)
        {
            var best = PickBest(pairCounts, symbols);
            var left = (int)(best >> 32);
            var right = (int)(best & 0xFFFFFFFF);
            var merged = symbols[left].Text + symbols[right].Text;
            var mergedId = Intern(merged);
            // A piece can be reachable by two splits ("ab"+"c", "a"+"bc"); it is one vocabulary entry either way.
            if (learned.Add(merged))
                merges.Add(merged);

            foreach (var (wordSymbols, count) in words)
            {
                if (!ContainsPair(wordSymbols, left, right))
                    continue;
                CountPairs(wordSymbols, -count);
                for (var i = 0; i + 1 < wordSymbols.Count; i++)
                    if (wordSymbols[i] == left && wordSymbols[i + 1] == right)
                    {
                        wordSymbols[i] = mergedId;
                        wordSymbols.RemoveAt(i + 1);
                    }
                CountPairs(wordSymbols, count);
            }
        }
        return merges;
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    private static bool ContainsPair(List<int> wordSymbols, int left, int right)
    {
        for (var i = 0; i + 1 < wordSymbols.Count; i++)
            if (wordSymbols[i] == left && wordSymbols[i + 1] == right)
                return true;
        return false;
    }

    /// <summary>Most frequent pair; ties go to the ordinally smallest concatenation, then the shorter left part.</summary>
    private static long PickBest(Dictionary<long, long> pairCounts, List<Symbol> symbols)
    {
        var best = -1L;
        var bestCount = -1L;
        foreach (var (key, count) in pairCounts)
        {
            if (count < bestCount)
                continue;
            if (count == bestCount && !PrecedesOnTie(key, best, symbols))
                continue;
            best = key;
            bestCount = count;
        }
        return best;
    }

    private static bool PrecedesOnTie(long candidate, long incumbent, List<Symbol> symbols)
    {
        var (candidateLeft, candidateRight) = (symbols[(int)(candidate >> 32)].Text, symbols[(int)(candidate & 0xFFFFFFFF)].Text);
        var (incumbentLeft, incumbentRight) = (symbols[(int)(incumbent >> 32)].Text, symbols[(int)(incumbent & 0xFFFFFFFF)].Text);
        var order = CompareConcatenations(candidateLeft, candidateRight, incumbentLeft, incumbentRight);
        return order < 0 || (order == 0 && candidateLeft.Length < incumbentLeft.Length);
    }

    /// <summary>Ordinal comparison of a1+b1 with a2+b2, without building either string.</summary>
    private static int CompareConcatenations(string a1, string b1, string a2, string b2)
    {
        int length1 = a1.Length + b1.Length, length2 = a2.Length + b2.Length;
        for (var i = 0; i < Math.Min(length1, length2); i++)
        {
            var c1 = i < a1.Length ? a1[i] : b1[i - a1.Length];
            var c2 = i < a2.Length ? a2[i] : b2[i - a2.Length];
            if (c1 != c2)
                return c1.CompareTo(c2);
        }
        return length1.CompareTo(length2);
    }
}

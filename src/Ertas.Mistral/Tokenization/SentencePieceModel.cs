using System.Text;
using Ertas.Core;

namespace Ertas.Mistral.Tokenization;

/// <summary>
/// sentencepiece's <c>SentencePiece.Type</c>. GGUF's <c>tokenizer.ggml.token_type</c> uses the same numbers
/// (FACTS §3), so a cast is the mapping.
/// </summary>
public enum SentencePieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>One vocabulary entry: its id is its position in <see cref="SentencePieceModel.Pieces"/>.</summary>
public readonly record struct SentencePiece(string Piece, float Score, SentencePieceType Type = SentencePieceType.Normal);

/// <summary>
/// A sentencepiece <c>ModelProto</c> (a <c>tokenizer.model</c> file), read and written by hand so no protobuf
/// runtime is needed. Field 1 is the repeated piece list, 2 the trainer spec, 3 the normalizer spec; any other
/// top-level field is kept raw and written back after them.
/// </summary>
public sealed class SentencePieceModel
{
    private const int PiecesField = 1;
    private const int TrainerSpecField = 2;
    private const int NormalizerSpecField = 3;
    private const int PieceTextField = 1;
    private const int PieceScoreField = 2;
    private const int PieceTypeField = 3;

    internal static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly string[] _pieces;
    private readonly float[] _scores;
    private readonly SentencePieceType[] _types;
    private readonly ProtoField[] _otherFields;
    private Dictionary<string, int>? _idsByPiece;

    public SentencePieceModel(IReadOnlyList<SentencePiece> pieces, TrainerSpec trainer, NormalizerSpec normalizer)
        : this(pieces, trainer, normalizer, [])
    {
    }

    private SentencePieceModel(IReadOnlyList<SentencePiece> pieces, TrainerSpec? trainer, NormalizerSpec? normalizer,
        ProtoField[] otherFields)
    {
        if (pieces.Count == 0)
            throw new ArgumentException("a sentencepiece model needs at least one piece", nameof(pieces));
        _pieces = new string[pieces.Count];
        _scores = new float[pieces.Count];
        _types = new SentencePieceType[pieces.Count];
        for (var i = 0; i < pieces.Count; i++)
        {
            _pieces[i] = pieces[i].Piece;
            _scores[i] = pieces[i].Score;
            _types[i] = pieces[i].Type;
        }
        Trainer = trainer;
        Normalizer = normalizer;
        _otherFields = otherFields;
    }

    public IReadOnlyList<string> Pieces => _pieces;
    public IReadOnlyList<float> Scores => _scores;
    public IReadOnlyList<SentencePieceType> Types => _types;
    public int Count => _pieces.Length;

    /// <summary>Null only when the file has no trainer_spec (never the case for files sentencepiece writes).</summary>
    public TrainerSpec? Trainer { get; }
    public NormalizerSpec? Normalizer { get; }

    public SentencePieceModelType ModelType => Trainer?.ModelType ?? SentencePieceModelType.Unigram;
    public bool ByteFallback => Trainer?.ByteFallback ?? false;
    public bool SplitDigits => Trainer?.SplitDigits ?? false;
    public int UnkId => Trainer?.UnkId ?? 0;
    public int BosId => Trainer?.BosId ?? 1;
    public int EosId => Trainer?.EosId ?? 2;
    public int PadId => Trainer?.PadId ?? -1;
    public string NormalizerName => Normalizer?.Name ?? "";
    public bool AddDummyPrefix => Normalizer?.AddDummyPrefix ?? true;
    public bool RemoveExtraWhitespaces => Normalizer?.RemoveExtraWhitespaces ?? true;

    public SentencePiece this[int id] => new(_pieces[id], _scores[id], _types[id]);

    /// <summary>The id of <paramref name="piece"/>, or -1. The first occurrence wins, as in sentencepiece.</summary>
    public int IdOf(string piece)
    {
        var map = _idsByPiece;
        if (map is null)
        {
            map = new Dictionary<string, int>(_pieces.Length, StringComparer.Ordinal);
            for (var i = 0; i < _pieces.Length; i++)
                map.TryAdd(_pieces[i], i);
            _idsByPiece = map;
        }
        return map.TryGetValue(piece, out var id) ? id : -1;
    }

    /// <summary>Values for GGUF's <c>tokenizer.ggml.token_type</c> (FACTS §3: same numbering as sentencepiece).</summary>
    public int[] GgufTokenTypes() => Array.ConvertAll(_types, type => (int)type);

    /// <summary>Reads a <c>tokenizer.model</c>; a missing or unreadable file is a user error naming the path.</summary>
    public static SentencePieceModel Load(string path) => Parse(ReadFile(path), path);

    internal static byte[] ReadFile(string path)
    {
        if (!File.Exists(path))
            throw new ErtasException(ErrorCode.TokenizerMissing, $"tokenizer model '{path}' does not exist", path);
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ErtasException(ErrorCode.TokenizerMissing, $"cannot read tokenizer model '{path}': {e.Message}", path, inner: e);
        }
    }

    /// <summary>Parses a serialized ModelProto; <paramref name="source"/> names it in errors.</summary>
    public static SentencePieceModel Parse(ReadOnlySpan<byte> bytes, string source)
    {
        try
        {
            return ParseCore(bytes);
        }
        catch (Exception e) when (e is ProtoFormatException or DecoderFallbackException)
        {
            throw new ErtasException(ErrorCode.TokenizerCorrupt,
                $"'{source}' is not a sentencepiece tokenizer model: {e.Message}", source, inner: e);
        }
    }

    private static SentencePieceModel ParseCore(ReadOnlySpan<byte> bytes)
    {
        var pieces = new List<SentencePiece>();
        TrainerSpec? trainer = null;
        NormalizerSpec? normalizer = null;
        var others = new List<ProtoField>();
        var reader = new ProtoReader(bytes);
        while (!reader.AtEnd)
        {
            var field = reader.ReadField();
            switch (field.Number)
            {
                case PiecesField:
                    RequireWireType(field, ProtoWireType.LengthDelimited, "pieces");
                    pieces.Add(ParsePiece(field.Payload!, pieces.Count));
                    break;
                case TrainerSpecField:
                    RequireWireType(field, ProtoWireType.LengthDelimited, "trainer_spec");
                    trainer = new TrainerSpec(ProtoMessage.ParseFields(field.Payload));
                    break;
                case NormalizerSpecField:
                    RequireWireType(field, ProtoWireType.LengthDelimited, "normalizer_spec");
                    normalizer = new NormalizerSpec(ProtoMessage.ParseFields(field.Payload));
                    break;
                default:
                    others.Add(field);
                    break;
            }
        }
        if (pieces.Count == 0)
            throw new ProtoFormatException("it holds no vocabulary pieces");
        return new SentencePieceModel(pieces, trainer, normalizer, others.ToArray());
    }

    private static SentencePiece ParsePiece(byte[] payload, int id)
    {
        string? text = null;
        var score = 0f;
        var type = SentencePieceType.Normal;
        // Unknown fields inside a piece are dropped: sentencepiece defines none beyond these three.
        foreach (var field in ProtoMessage.ParseFields(payload))
        {
            switch (field.Number)
            {
                case PieceTextField:
                    RequireWireType(field, ProtoWireType.LengthDelimited, $"piece {id} text");
                    text = StrictUtf8.GetString(field.Payload!);
                    break;
                case PieceScoreField:
                    RequireWireType(field, ProtoWireType.Fixed32, $"piece {id} score");
                    score = BitConverter.UInt32BitsToSingle((uint)field.Scalar);
                    break;
                case PieceTypeField:
                    RequireWireType(field, ProtoWireType.Varint, $"piece {id} type");
                    if (field.Scalar is < 1 or > 6)
                        throw new ProtoFormatException($"piece {id} has unknown type {field.Scalar}");
                    type = (SentencePieceType)field.Scalar;
                    break;
            }
        }
        return text is null
            ? throw new ProtoFormatException($"piece {id} has no text")
            : new SentencePiece(text, score, type);
    }

    private static void RequireWireType(ProtoField field, ProtoWireType expected, string what)
    {
        if (field.WireType != expected)
            throw new ProtoFormatException($"{what} (field {field.Number}) has wire type {field.WireType}, expected {expected}");
    }

    /// <summary>
    /// Serializes in protoc's order (pieces, trainer, normalizer, others). Pieces always carry a score and carry a
    /// type only when it is not NORMAL, which is what sentencepiece writes, so its files round-trip byte for byte.
    /// </summary>
    public byte[] ToBytes()
    {
        var writer = new ProtoWriter();
        for (var i = 0; i < _pieces.Length; i++)
        {
            var piece = new ProtoWriter();
            piece.Write(ProtoField.String(PieceTextField, _pieces[i]));
            piece.Write(ProtoField.Float(PieceScoreField, _scores[i]));
            if (_types[i] != SentencePieceType.Normal)
                piece.Write(ProtoField.Varint(PieceTypeField, (ulong)_types[i]));
            writer.Write(ProtoField.Bytes(PiecesField, piece.ToArray()));
        }
        if (Trainer is not null)
            writer.Write(ProtoField.Bytes(TrainerSpecField, Trainer.Serialize()));
        if (Normalizer is not null)
            writer.Write(ProtoField.Bytes(NormalizerSpecField, Normalizer.Serialize()));
        foreach (var field in _otherFields)
            writer.Write(field);
        return writer.ToArray();
    }

    /// <summary>Writes the model atomically, so a failed write never leaves a half tokenizer behind.</summary>
    public void Save(string path)
    {
        var bytes = ToBytes();
        AtomicFile.Write(path, stream => stream.Write(bytes));
    }
}

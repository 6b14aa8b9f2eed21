namespace Ertas.Mistral.Tokenization;

/// <summary>sentencepiece's <c>TrainerSpec.ModelType</c>.</summary>
public enum SentencePieceModelType
{
    Unigram = 1,
    Bpe = 2,
    Word = 3,
    Char = 4,
}

/// <summary>
/// sentencepiece's <c>TrainerSpec</c>: typed access to the fields that matter for encoding and export, every other
/// field kept raw so that re-serializing gives the original bytes back.
/// </summary>
public sealed class TrainerSpec : ProtoMessage
{
    private const int ModelTypeField = 3;
    private const int VocabSizeField = 4;
    private const int SplitDigitsField = 25;
    private const int ByteFallbackField = 35;
    private const int UnkIdField = 40;
    private const int BosIdField = 41;
    private const int EosIdField = 42;
    private const int PadIdField = 43;

    private static readonly Dictionary<int, ProtoWireType> KnownWireTypes = new()
    {
        [ModelTypeField] = ProtoWireType.Varint,
        [VocabSizeField] = ProtoWireType.Varint,
        [SplitDigitsField] = ProtoWireType.Varint,
        [ByteFallbackField] = ProtoWireType.Varint,
        [UnkIdField] = ProtoWireType.Varint,
        [BosIdField] = ProtoWireType.Varint,
        [EosIdField] = ProtoWireType.Varint,
        [PadIdField] = ProtoWireType.Varint,
    };

    public TrainerSpec(IEnumerable<ProtoField> fields) : base(fields, KnownWireTypes) { }

    // Defaults are the ones in sentencepiece_model.proto, so an absent field reads as sentencepiece reads it.
    public SentencePieceModelType ModelType => (SentencePieceModelType)GetInt32(ModelTypeField, (int)SentencePieceModelType.Unigram);
    public int VocabSize => GetInt32(VocabSizeField, 8000);
    public bool SplitDigits => GetBool(SplitDigitsField, false);
    public bool ByteFallback => GetBool(ByteFallbackField, false);
    public int UnkId => GetInt32(UnkIdField, 0);
    public int BosId => GetInt32(BosIdField, 1);
    public int EosId => GetInt32(EosIdField, 2);
    /// <summary>-1 when the model has no padding piece (Mistral's case).</summary>
    public int PadId => GetInt32(PadIdField, -1);

    /// <summary>A BPE trainer spec with Mistral v1's special-token layout, written in field-number order as protoc does.</summary>
    public static TrainerSpec ForBpe(int vocabSize, bool byteFallback = true, bool splitDigits = true,
        int unkId = 0, int bosId = 1, int eosId = 2, int padId = -1) =>
        new([
            ProtoField.Int32(ModelTypeField, (int)SentencePieceModelType.Bpe),
            ProtoField.Int32(VocabSizeField, vocabSize),
            ProtoField.Bool(SplitDigitsField, splitDigits),
            ProtoField.Bool(ByteFallbackField, byteFallback),
            ProtoField.Int32(UnkIdField, unkId),
            ProtoField.Int32(BosIdField, bosId),
            ProtoField.Int32(EosIdField, eosId),
            ProtoField.Int32(PadIdField, padId),
        ]);
}

/// <summary>sentencepiece's <c>NormalizerSpec</c>, kept raw like <see cref="TrainerSpec"/>.</summary>
public sealed class NormalizerSpec : ProtoMessage
{
    private const int NameField = 1;
    private const int PrecompiledCharsmapField = 2;
    private const int AddDummyPrefixField = 3;
    private const int RemoveExtraWhitespacesField = 4;
    private const int EscapeWhitespacesField = 5;

    private static readonly Dictionary<int, ProtoWireType> KnownWireTypes = new()
    {
        [NameField] = ProtoWireType.LengthDelimited,
        [PrecompiledCharsmapField] = ProtoWireType.LengthDelimited,
        [AddDummyPrefixField] = ProtoWireType.Varint,
        [RemoveExtraWhitespacesField] = ProtoWireType.Varint,
        [EscapeWhitespacesField] = ProtoWireType.Varint,
    };

    public NormalizerSpec(IEnumerable<ProtoField> fields) : base(fields, KnownWireTypes) { }

    /// <summary>Normalization rule name, e.g. "identity" (Mistral) or "nmt_nfkc"; empty when absent.</summary>
    public string Name => GetString(NameField, "");
    public bool AddDummyPrefix => GetBool(AddDummyPrefixField, true);
    public bool RemoveExtraWhitespaces => GetBool(RemoveExtraWhitespacesField, true);
    public bool EscapeWhitespaces => GetBool(EscapeWhitespacesField, true);

    /// <summary>Mistral v1's normalizer: no Unicode rewriting, a dummy prefix, spaces kept and escaped as ▁.</summary>
    public static NormalizerSpec Identity() =>
        new([
            ProtoField.String(NameField, "identity"),
            // Empty charsmap, as in Mistral's file: some readers expect the field to be present.
            ProtoField.Bytes(PrecompiledCharsmapField, []),
            ProtoField.Bool(AddDummyPrefixField, true),
            ProtoField.Bool(RemoveExtraWhitespacesField, false),
            ProtoField.Bool(EscapeWhitespacesField, true),
        ]);
}

namespace Ertas.Gguf;

/// <summary>
/// One metadata entry. <see cref="Value"/> holds the CLR value for <see cref="Type"/>: byte, sbyte, ushort, short,
/// uint, int, float, bool, string, ulong, long, double; arrays are typed CLR arrays (<c>string[]</c>,
/// <c>float[]</c>, <c>int[]</c>, ...), and an array of arrays is an <c>object[]</c> of typed arrays.
/// </summary>
public sealed record GgufKeyValue(string Key, GgufValueType Type, object Value)
{
    /// <summary>For arrays, the type of the elements; null for scalars.</summary>
    public GgufValueType? ElementType => Type == GgufValueType.Array ? GgufValues.ElementTypeOf((Array)Value) : null;

    public override string ToString() => $"{Key} = {GgufValues.Describe(Value)}";
}

/// <summary>Mapping between GGUF value types and the CLR types that represent them.</summary>
public static class GgufValues
{
    public static GgufValueType TypeOf(object value) =>
        TryTypeOf(value.GetType(), out var type) ? type
            : value is Array ? GgufValueType.Array
            : throw new ArgumentException($"a {value.GetType().Name} cannot be stored as GGUF metadata");

    public static bool TryTypeOf(Type clrType, out GgufValueType type)
    {
        type = clrType switch
        {
            _ when clrType == typeof(byte) => GgufValueType.UInt8,
            _ when clrType == typeof(sbyte) => GgufValueType.Int8,
            _ when clrType == typeof(ushort) => GgufValueType.UInt16,
            _ when clrType == typeof(short) => GgufValueType.Int16,
            _ when clrType == typeof(uint) => GgufValueType.UInt32,
            _ when clrType == typeof(int) => GgufValueType.Int32,
            _ when clrType == typeof(float) => GgufValueType.Float32,
            _ when clrType == typeof(bool) => GgufValueType.Bool,
            _ when clrType == typeof(string) => GgufValueType.String,
            _ when clrType == typeof(ulong) => GgufValueType.UInt64,
            _ when clrType == typeof(long) => GgufValueType.Int64,
            _ when clrType == typeof(double) => GgufValueType.Float64,
            _ => (GgufValueType)uint.MaxValue,
        };
        return type != (GgufValueType)uint.MaxValue;
    }

    /// <summary>Element type of a typed array; <c>object[]</c> means an array of arrays.</summary>
    public static GgufValueType ElementTypeOf(Array array)
    {
        var element = array.GetType().GetElementType()!;
        if (element == typeof(object))
            return GgufValueType.Array;
        return TryTypeOf(element, out var type) ? type
            : throw new ArgumentException($"a {element.Name}[] cannot be stored as a GGUF array");
    }

    /// <summary>Bytes one element takes on disk; 0 for strings and arrays (variable).</summary>
    public static int FixedSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        _ => 0,
    };

    public static bool IsDefined(GgufValueType type) => (uint)type <= (uint)GgufValueType.Float64;

    internal static string Describe(object value) => value switch
    {
        string s => $"\"{(s.Length > 60 ? s[..60] + "..." : s)}\"",
        Array a => $"[{a.Length} x {ElementTypeOf(a)}]",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}

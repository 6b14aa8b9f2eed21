using System.Globalization;
using System.Text;

namespace Ertas.Mistral.Templates;

/// <summary>
/// JSON spelled as Python's <c>json.dumps(json.loads(text), ensure_ascii=False)</c> spells it, because that is the
/// text mistral-common tokenizes for tool lists, tool calls and tool results: <c>", "</c> and <c>": "</c> separators,
/// keys in input order (a repeated key keeps its first place and its last value), integers as written, floats as
/// Python's shortest <c>repr</c> (<c>1e5</c> becomes <c>100000.0</c>), non-ASCII text unescaped. Any other
/// spelling gives token ids the model never saw.
/// </summary>
public static class PythonJson
{
    /// <summary>
    /// <c>json.dumps(json.loads(text))</c>, or false when Python's <c>json.loads</c> would reject
    /// <paramref name="text"/> (it accepts <c>NaN</c> and <c>Infinity</c>, and no comments or trailing commas).
    /// </summary>
    public static bool TryCanonicalize(string text, out string canonical)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parser = new Parser(text);
        var output = new StringBuilder(text.Length);
        if (parser.TryParseDocument(output))
        {
            canonical = output.ToString();
            return true;
        }
        canonical = "";
        return false;
    }

    /// <summary>
    /// mistral-common's <c>_parse_json_content</c> followed by <c>json.dumps</c>: the canonical JSON when
    /// <paramref name="text"/> parses (so "22" stays the number 22), otherwise the text as a JSON string.
    /// </summary>
    public static string DumpParsedOrString(string text) => TryCanonicalize(text, out var canonical) ? canonical : Quote(text);

    /// <summary><c>json.dumps(s, ensure_ascii=False)</c>.</summary>
    public static string Quote(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var builder = new StringBuilder(value.Length + 2);
        AppendQuoted(builder, value);
        return builder.ToString();
    }

    private static void AppendQuoted(StringBuilder builder, string value)
    {
        builder.Append('"');
        foreach (var c in value)
        {
            switch (c)
            {
                case '"': builder.Append("\\\""); break;
                case '\\': builder.Append("\\\\"); break;
                case '\n': builder.Append("\\n"); break;
                case '\r': builder.Append("\\r"); break;
                case '\t': builder.Append("\\t"); break;
                case '\b': builder.Append("\\b"); break;
                case '\f': builder.Append("\\f"); break;
                case < ' ': builder.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                default: builder.Append(c); break;
            }
        }
        builder.Append('"');
    }

    /// <summary>
    /// Python's <c>repr(float)</c>: the shortest digits that round-trip, positional from 1e-4 up to 1e16, with an
    /// exponent (<c>1e+16</c>, <c>1e-05</c>) outside that range, and always a fractional part when positional.
    /// </summary>
    public static string FloatRepr(double value)
    {
        if (double.IsNaN(value)) return "NaN";
        if (double.IsInfinity(value)) return value > 0 ? "Infinity" : "-Infinity";
        var negative = value < 0 || (value == 0 && double.IsNegative(value));
        var roundTrip = Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
        var exponent = 0;
        var e = roundTrip.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(roundTrip.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            roundTrip = roundTrip[..e];
        }
        var point = roundTrip.IndexOf('.');
        var integerPart = point >= 0 ? roundTrip[..point] : roundTrip;
        var digits = (integerPart + (point >= 0 ? roundTrip[(point + 1)..] : "")).TrimEnd('0');
        // decimalPoint: where the point sits relative to the first significant digit (value = 0.DIGITS x 10^decimalPoint).
        var decimalPoint = integerPart.Length + exponent;
        var leadingZeros = digits.Length - digits.TrimStart('0').Length;
        digits = digits[leadingZeros..];
        decimalPoint -= leadingZeros;
        var sign = negative ? "-" : "";
        if (digits.Length == 0)
            return sign + "0.0";
        if (decimalPoint is > -4 and <= 16)
        {
            if (decimalPoint <= 0)
                return sign + "0." + new string('0', -decimalPoint) + digits;
            if (decimalPoint >= digits.Length)
                return sign + digits + new string('0', decimalPoint - digits.Length) + ".0";
            return sign + digits[..decimalPoint] + "." + digits[decimalPoint..];
        }
        var mantissa = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
        var power = decimalPoint - 1;
        return sign + mantissa + "e" + (power < 0 ? "-" : "+") + Math.Abs(power).ToString("00", CultureInfo.InvariantCulture);
    }

    /// <summary>A recursive-descent reader with Python's json grammar that writes the canonical form as it goes.</summary>
    private ref struct Parser(string text)
    {
        private readonly string _text = text;
        private int _position;

        public bool TryParseDocument(StringBuilder output)
        {
            SkipWhitespace();
            if (!TryValue(output, depth: 0))
                return false;
            SkipWhitespace();
            return _position == _text.Length;
        }

        private void SkipWhitespace()
        {
            while (_position < _text.Length && _text[_position] is ' ' or '\t' or '\n' or '\r')
                _position++;
        }

        private bool TryValue(StringBuilder output, int depth)
        {
            // Python's own recursion limit rejects absurd nesting too; this keeps a hostile file off our stack.
            if (depth > 512 || _position >= _text.Length)
                return false;
            switch (_text[_position])
            {
                case '{': return TryObject(output, depth);
                case '[': return TryArray(output, depth);
                case '"':
                    if (!TryString(out var s)) return false;
                    AppendQuoted(output, s);
                    return true;
                default:
                    foreach (var literal in (ReadOnlySpan<string>)["true", "false", "null", "NaN", "Infinity", "-Infinity"])
                    {
                        if (string.CompareOrdinal(_text, _position, literal, 0, literal.Length) == 0)
                        {
                            _position += literal.Length;
                            output.Append(literal);
                            return true;
                        }
                    }
                    return TryNumber(output);
            }
        }

        private bool TryObject(StringBuilder output, int depth)
        {
            _position++;
            // Python builds a dict: a repeated key keeps its first position and takes the last value.
            var members = new List<(string Key, string Value)>();
            SkipWhitespace();
            if (_position < _text.Length && _text[_position] == '}')
            {
                _position++;
                output.Append("{}");
                return true;
            }
            while (true)
            {
                SkipWhitespace();
                if (_position >= _text.Length || _text[_position] != '"' || !TryString(out var key))
                    return false;
                SkipWhitespace();
                if (_position >= _text.Length || _text[_position] != ':')
                    return false;
                _position++;
                SkipWhitespace();
                var value = new StringBuilder();
                if (!TryValue(value, depth + 1))
                    return false;
                var existing = members.FindIndex(m => m.Key == key);
                if (existing >= 0)
                    members[existing] = (key, value.ToString());
                else
                    members.Add((key, value.ToString()));
                SkipWhitespace();
                if (_position >= _text.Length)
                    return false;
                if (_text[_position] == '}')
                {
                    _position++;
                    break;
                }
                if (_text[_position] != ',')
                    return false;
                _position++;
            }
            output.Append('{');
            for (var i = 0; i < members.Count; i++)
            {
                if (i > 0) output.Append(", ");
                AppendQuoted(output, members[i].Key);
                output.Append(": ").Append(members[i].Value);
            }
            output.Append('}');
            return true;
        }

        private bool TryArray(StringBuilder output, int depth)
        {
            _position++;
            SkipWhitespace();
            output.Append('[');
            if (_position < _text.Length && _text[_position] == ']')
            {
                _position++;
                output.Append(']');
                return true;
            }
            var first = true;
            while (true)
            {
                SkipWhitespace();
                if (!first) output.Append(", ");
                first = false;
                if (!TryValue(output, depth + 1))
                    return false;
                SkipWhitespace();
                if (_position >= _text.Length)
                    return false;
                if (_text[_position] == ']')
                {
                    _position++;
                    output.Append(']');
                    return true;
                }
                if (_text[_position] != ',')
                    return false;
                _position++;
            }
        }

        private bool TryString(out string value)
        {
            value = "";
            _position++;
            var builder = new StringBuilder();
            while (_position < _text.Length)
            {
                var c = _text[_position++];
                if (c == '"')
                {
                    value = builder.ToString();
                    return true;
                }
                if (c < ' ')
                    return false; // Python's strict mode: raw control characters are invalid inside strings
                if (c != '\\')
                {
                    builder.Append(c);
                    continue;
                }
                if (_position >= _text.Length)
                    return false;
                var escape = _text[_position++];
                switch (escape)
                {
                    case '"': builder.Append('"'); break;
                    case '\\': builder.Append('\\'); break;
                    case '/': builder.Append('/'); break;
                    case 'b': builder.Append('\b'); break;
                    case 'f': builder.Append('\f'); break;
                    case 'n': builder.Append('\n'); break;
                    case 'r': builder.Append('\r'); break;
                    case 't': builder.Append('\t'); break;
                    case 'u':
                        if (_position + 4 > _text.Length
                            || !ushort.TryParse(_text.AsSpan(_position, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var code))
                            return false;
                        _position += 4;
                        builder.Append((char)code);
                        break;
                    default:
                        return false;
                }
            }
            return false;
        }

        /// <summary>Python's number pattern <c>-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?</c>: an int without fraction or exponent.</summary>
        private bool TryNumber(StringBuilder output)
        {
            var start = _position;
            if (_position < _text.Length && _text[_position] == '-')
                _position++;
            if (_position >= _text.Length || !char.IsAsciiDigit(_text[_position]))
                return false;
            if (_text[_position] == '0')
                _position++;
            else
                SkipDigits();
            var isFloat = false;
            if (_position + 1 < _text.Length && _text[_position] == '.' && char.IsAsciiDigit(_text[_position + 1]))
            {
                _position++;
                SkipDigits();
                isFloat = true;
            }
            if (_position < _text.Length && _text[_position] is 'e' or 'E')
            {
                var mark = _position;
                _position++;
                if (_position < _text.Length && _text[_position] is '+' or '-')
                    _position++;
                if (_position < _text.Length && char.IsAsciiDigit(_text[_position]))
                {
                    SkipDigits();
                    isFloat = true;
                }
                else
                {
                    _position = mark; // Python's regex stops before a bare 'e'; what follows then fails the parse
                }
            }
            var literal = _text.AsSpan(start, _position - start);
            if (!isFloat)
                output.Append(literal is "-0" ? "0" : literal);
            else
                output.Append(FloatRepr(double.Parse(literal, NumberStyles.Float, CultureInfo.InvariantCulture)));
            return true;
        }

        private void SkipDigits()
        {
            while (_position < _text.Length && char.IsAsciiDigit(_text[_position]))
                _position++;
        }
    }
}

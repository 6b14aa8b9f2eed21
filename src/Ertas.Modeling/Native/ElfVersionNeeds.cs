using System.Buffers.Binary;
using System.Text;

namespace Ertas.Modeling.Native;

/// <summary>One Vernaux entry of an ELF file's <c>.gnu.version_r</c> section: "this object needs
/// <see cref="Version"/> from <see cref="File"/>".</summary>
/// <param name="FlagsOffset">File offset of the entry's <c>vna_flags</c> (u16), so a caller can patch it in place.</param>
public readonly record struct VersionNeed(string File, string Version, ushort Flags, long FlagsOffset)
{
    public bool IsWeak => (Flags & ElfVersionNeeds.VerFlagWeak) != 0;
}

public enum WeakenOutcome
{
    /// <summary>The flag was set by this call.</summary>
    Patched,
    /// <summary>The need was already weak: nothing changed.</summary>
    AlreadyWeak,
    /// <summary>The object does not ask for that version at all: nothing to do.</summary>
    NotNeeded,
}

/// <summary>
/// Just enough of the ELF64 little-endian format (System V gABI, "Symbol Versioning") to list an object's
/// version needs and mark one weak. A weak need (<c>VER_FLG_WEAK</c>) makes glibc's loader accept a library whose
/// provider lacks that version instead of refusing to load it; symbols are still bound exactly as before.
/// </summary>
public static class ElfVersionNeeds
{
    public const ushort VerFlagWeak = 0x2;
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const int VerneedSize = 16;
    private const int VernauxSize = 16;

    internal readonly record struct Section(uint Type, long Offset, long Size, uint Link, uint Info);

    /// <summary>Every Vernaux entry, in file order. Throws <see cref="InvalidDataException"/> on anything that is not
    /// a well-formed ELF64 little-endian object.</summary>
    public static IReadOnlyList<VersionNeed> Read(ReadOnlySpan<byte> elf)
    {
        var sections = ReadSectionHeaders(elf);
        var needs = new List<VersionNeed>();
        foreach (var verneed in sections.Where(s => s.Type == ShtGnuVerneed))
        {
            if (verneed.Link >= sections.Count)
                throw Bad($"the version-need section links to string table {verneed.Link}, but there are only {sections.Count} sections");
            var strings = sections[(int)verneed.Link];
            var entry = verneed.Offset;
            // sh_info holds the number of Verneed entries; vn_next chains them (0 ends the chain).
            for (var i = 0u; i < verneed.Info; i++)
            {
                CheckRange(elf, entry, VerneedSize, "Verneed entry");
                var file = ReadString(elf, strings, U32(elf, entry + 4));
                var auxCount = U16(elf, entry + 2);
                var aux = entry + U32(elf, entry + 8);
                for (var j = 0; j < auxCount; j++)
                {
                    CheckRange(elf, aux, VernauxSize, "Vernaux entry");
                    var version = ReadString(elf, strings, U32(elf, aux + 8));
                    needs.Add(new VersionNeed(file, version, U16(elf, aux + 4), aux + 4));
                    var nextAux = U32(elf, aux + 12);
                    if (nextAux == 0) break;
                    aux += nextAux;
                }
                var next = U32(elf, entry + 12);
                if (next == 0) break;
                entry += next;
            }
        }
        return needs;
    }

    /// <summary>Sets <c>VER_FLG_WEAK</c> on every need for <paramref name="version"/> (normally one), in place.
    /// Only those u16 flag fields can change; everything else in <paramref name="elf"/> stays byte-for-byte.</summary>
    public static WeakenOutcome MakeWeak(Span<byte> elf, string version)
    {
        var matches = Read(elf).Where(n => n.Version == version).ToList();
        if (matches.Count == 0) return WeakenOutcome.NotNeeded;
        if (matches.All(n => n.IsWeak)) return WeakenOutcome.AlreadyWeak;
        foreach (var need in matches)
            BinaryPrimitives.WriteUInt16LittleEndian(elf[(int)need.FlagsOffset..], (ushort)(need.Flags | VerFlagWeak));
        return WeakenOutcome.Patched;
    }

    internal static List<Section> ReadSectionHeaders(ReadOnlySpan<byte> elf)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw Bad("not an ELF file (bad magic)");
        if (elf[4] != 2) throw Bad($"only 64-bit ELF is supported, EI_CLASS is {elf[4]}");
        if (elf[5] != 1) throw Bad($"only little-endian ELF is supported, EI_DATA is {elf[5]}");
        var shoff = (long)U64(elf, 0x28);
        var shentsize = U16(elf, 0x3A);
        long shnum = U16(elf, 0x3C);
        if (shoff == 0) throw Bad("the file has no section header table");
        if (shentsize < 64) throw Bad($"section header entries are {shentsize} bytes, expected at least 64");
        // With 0xff00 or more sections, e_shnum is 0 and section 0's sh_size holds the real count.
        if (shnum == 0)
        {
            CheckRange(elf, shoff, 64, "section header 0");
            shnum = (long)U64(elf, shoff + 32);
        }
        var sections = new List<Section>((int)Math.Min(shnum, 1 << 16));
        for (var i = 0L; i < shnum; i++)
        {
            var h = shoff + i * shentsize;
            CheckRange(elf, h, 64, $"section header {i}");
            sections.Add(new Section(
                Type: U32(elf, h + 4),
                Offset: (long)U64(elf, h + 24),
                Size: (long)U64(elf, h + 32),
                Link: U32(elf, h + 40),
                Info: U32(elf, h + 44)));
        }
        return sections;
    }

    internal static string ReadString(ReadOnlySpan<byte> elf, Section table, uint index)
    {
        if (index >= table.Size) throw Bad($"string index {index} lies outside its {table.Size}-byte string table");
        CheckRange(elf, table.Offset, table.Size, "string table");
        var bytes = elf.Slice((int)(table.Offset + index), (int)(table.Size - index));
        var end = bytes.IndexOf((byte)0);
        if (end < 0) throw Bad($"string at index {index} is not NUL-terminated");
        return Encoding.ASCII.GetString(bytes[..end]);
    }

    internal static void CheckRange(ReadOnlySpan<byte> elf, long offset, long length, string what)
    {
        if (offset < 0 || length < 0 || offset > elf.Length - length)
            throw Bad($"{what} at offset {offset} (+{length} bytes) lies outside the {elf.Length}-byte file");
    }

    internal static ushort U16(ReadOnlySpan<byte> b, long at) => BinaryPrimitives.ReadUInt16LittleEndian(b[(int)at..]);
    internal static uint U32(ReadOnlySpan<byte> b, long at) => BinaryPrimitives.ReadUInt32LittleEndian(b[(int)at..]);
    internal static ulong U64(ReadOnlySpan<byte> b, long at) => BinaryPrimitives.ReadUInt64LittleEndian(b[(int)at..]);

    internal static InvalidDataException Bad(string message) => new($"malformed ELF: {message}");
}

using static Ertas.Modeling.Native.ElfVersionNeeds;

namespace Ertas.Modeling.Native;

/// <summary>One relocation that fills a pointer slot (<c>R_X86_64_GLOB_DAT</c> or <c>R_X86_64_JUMP_SLOT</c>) with the
/// address of <see cref="Symbol"/>; <see cref="Offset"/> is the slot's address relative to the load bias;
/// <see cref="JumpSlot"/>: a PLT slot (calls go through it) rather than a GLOB_DAT one (the address taken).</summary>
public readonly record struct RelocationSlot(string Symbol, ulong Offset, bool JumpSlot);

/// <summary>Just enough of ELF64 (System V gABI, x86-64 psABI) to find where a shared object keeps the addresses of
/// functions it imports: its global offset table slots, named by the dynamic relocations that fill them.</summary>
public static class ElfRelocations
{
    private const uint ShtRela = 4;
    private const uint ShtDynsym = 11;
    private const uint RX86_64GlobDat = 6;
    private const uint RX86_64JumpSlot = 7;
    private const int RelaSize = 24;
    private const int SymbolSize = 24;

    /// <summary>Every GLOB_DAT and JUMP_SLOT relocation against one of <paramref name="symbols"/>, in file order.</summary>
    public static IReadOnlyList<RelocationSlot> FindSlots(ReadOnlySpan<byte> elf, IReadOnlyCollection<string> symbols)
    {
        var sections = ReadSectionHeaders(elf);
        var slots = new List<RelocationSlot>();
        foreach (var rela in sections.Where(s => s.Type == ShtRela))
        {
            if (rela.Link >= sections.Count || sections[(int)rela.Link].Type != ShtDynsym) continue; // not dynamic
            var symtab = sections[(int)rela.Link];
            if (symtab.Link >= sections.Count) throw Bad($"the symbol table links to string table {symtab.Link}, but there are only {sections.Count} sections");
            var strings = sections[(int)symtab.Link];
            CheckRange(elf, rela.Offset, rela.Size, "relocation section");
            for (var at = rela.Offset; at + RelaSize <= rela.Offset + rela.Size; at += RelaSize)
            {
                var info = U64(elf, at + 8);
                var type = (uint)info;
                if (type != RX86_64GlobDat && type != RX86_64JumpSlot) continue;
                var symbol = symtab.Offset + (long)(info >> 32) * SymbolSize;
                CheckRange(elf, symbol, SymbolSize, "symbol");
                var name = ReadString(elf, strings, U32(elf, symbol));
                if (symbols.Contains(name)) slots.Add(new RelocationSlot(name, U64(elf, at), type == RX86_64JumpSlot));
            }
        }
        return slots;
    }

    /// <summary>The page-aligned virtual address of the first PT_LOAD segment: what the mapping at file offset 0
    /// starts at, before the load bias is added (0 for ordinary shared objects).</summary>
    public static ulong FirstLoadAddress(ReadOnlySpan<byte> elf)
    {
        ReadSectionHeaders(elf); // validates the header
        var phoff = (long)U64(elf, 0x20);
        var phentsize = U16(elf, 0x36);
        var phnum = U16(elf, 0x38);
        for (var i = 0; i < phnum; i++)
        {
            var h = phoff + (long)i * phentsize;
            CheckRange(elf, h, 56, $"program header {i}");
            if (U32(elf, h) == 1) return U64(elf, h + 16) & ~0xfffUL;
        }
        throw Bad("the file has no loadable segment");
    }
}

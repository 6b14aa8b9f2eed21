using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Ertas.Modeling.Native;

/// <summary>
/// Keeps libtorch's large CPU tensor blocks mapped after they are freed and hands them out again for the next tensor
/// of the same size, so a training step stops faulting in (and the kernel stops zeroing) gigabytes of fresh pages.
/// <para>
/// Why: libtorch gets every tensor's storage from <c>posix_memalign</c> in libc10 and returns it with <c>free</c>. With
/// glibc's mmap threshold fixed at 1 MB (<see cref="GlibcMalloc"/>, needed for the 7B step's memory) each tensor larger
/// than that is a fresh mapping: perf put a third of a 100m step's CPU time in page faults and zeroing. Raising the
/// threshold instead made the step 3x faster but let RSS grow every step (glibc's heap fragments). A cache keyed on
/// the exact size reuses the pages, because a step allocates the same shapes layer after layer.
/// </para>
/// <para>
/// Memory: a request takes a cached block of its exact size, else one up to twice its size cut down (the tail stays
/// cached as loose pages). Else a new mapping is made and cached pages are moved under it with mremap, which moves
/// page table entries (a whole 2 MB huge page as one) without copying or zeroing: loose pages first, then freed blocks
/// taken apart, oldest first. Only what the cache cannot cover faults in fresh, and as many cached bytes are unmapped.
/// So live plus cached bytes never exceed the most bytes ever live at once, not counting the one allocation that is
/// live but never written: TorchSharp's copy of each custom autograd function's output (<see cref="BeginOutputMetadata"/>)
/// gets a fresh mapping, which holds no pages, and is unmapped when freed (a recycled, resident block would have made
/// it count).
/// </para>
/// <para>
/// Why moves: a step's shapes repeat, but not in the same order, so an exact-size cache still missed 500 times a 100m
/// step and unmapped what it evicted; the kernel then zeroed 2.1 GB of fresh pages a step (13 % of CPU samples in
/// page faults). Moving the pages instead leaves under 10 MB a step to fault in (about 250 MB moved), and the step
/// took 3.4-3.7 s instead of 4.4-4.9 in alternating runs.
/// </para>
/// <para>
/// How: the entries for <c>posix_memalign</c> and <c>free</c> in libc10's global offset table are pointed at this class.
/// Every block is laid out as glibc lays out an mmapped chunk (a header before the pointer: the offset to the mapping's
/// start, then the chunk size with <c>IS_MMAPPED</c>), so glibc's own <c>free</c> releases a block correctly once the
/// table is restored at exit. Pointers the cache did not hand out go to glibc untouched.
/// </para>
/// </summary>
public sealed unsafe partial class TensorBlockCache
{
    /// <summary>Requests smaller than this stay with glibc's heap, which already reuses them.</summary>
    public const nuint MinBlockBytes = GlibcMalloc.LargeBlockBytes;
    public const string DisableVariable = "ERTAS_TENSOR_CACHE";

    private const nuint Page = 4096;
    private const nuint HugePage = 2 << 20;
    private const nuint GlibcIsMmapped = 2;
    private const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapFixed = 0x10, MapAnonymous = 0x20, MadvHugePage = 14, ENoMem = 12;
    private const int MremapMayMove = 1, MremapFixed = 2;

    // The process has one libc10 and one offset table to patch, so the hook's state is one instance per process.
    private static TensorBlockCache? s_installed;
    private static readonly Lock InstallGate = new();

    // TorchSharp's custom autograd functions keep an empty_like copy of every output (Node.SaveOutputsInfo, for a
    // zero gradient should one be missing) that is never written. A fresh mapping costs it no RSS; a recycled block
    // would make it resident: 33 layer outputs, 132 MB, in a 7B step. Per thread, as the call that allocates it is.
    [ThreadStatic] private static bool t_untouchedOutputs;

    private readonly Lock _gate = new();
    // A block's pages may come from several earlier blocks (moved with mremap), and mremap moves pages only within one
    // kernel mapping, so a block keeps its extents: (offset, length) pieces, each inside one mapping, covering it in order.
    private readonly record struct Extent(nuint Offset, nuint Length);

    /// <summary>A mapping handed out, or cached whole: <c>[Start, Start + Length)</c>, the user part from the second page.</summary>
    private sealed record Block(nint Start, nuint Length, Extent[] Extents, bool Untouched = false);

    private const int MaxExtents = 32; // pieces moved into one block at most, to bound the mappings a block is cut into

    private readonly Dictionary<nint, Block> _live = []; // user pointer -> block
    private readonly List<Block> _free = []; // freed blocks kept whole, oldest first
    private readonly List<(nint Start, nuint Length)> _spans = []; // loose cached pages, each inside one mapping, oldest first
    private readonly (nint Slot, nint Original)[] _patched;
    private nuint _liveBytes, _cachedBytes, _peakMappedBytes;
    private long _hits, _split, _misses, _takenApart, _evicted, _failedMoves;
    private nuint _movedBytes, _freshBytes;

    private TensorBlockCache(int slots) => _patched = new (nint, nint)[slots];

    /// <summary>
    /// Counters since install: requests served by a cached block of their size (hits) or cut from a larger one (split
    /// hits); requests mapped new (misses), of whose bytes some came as pages moved from cached blocks (moved, the
    /// blocks taken apart for them) and the rest faulted in (fresh); cached blocks unmapped to stay under the peak
    /// (evicted), and moves the kernel refused.
    /// </summary>
    public readonly record struct Statistics(long Hits, long SplitHits, long Misses, long TakenApart, long EvictedBlocks, long FailedMoves,
        long MovedBytes, long FreshBytes, long LiveBytes, long CachedBytes, long PeakMappedBytes, int CachedBlocks, int LoosePieces);

    public static Statistics? Current
    {
        get
        {
            var cache = Volatile.Read(ref s_installed);
            if (cache is null) return null;
            lock (cache._gate)
                return new Statistics(cache._hits, cache._split, cache._misses, cache._takenApart, cache._evicted, cache._failedMoves,
                    (long)cache._movedBytes, (long)cache._freshBytes, (long)cache._liveBytes, (long)cache._cachedBytes, (long)cache._peakMappedBytes,
                    cache._free.Count, cache._spans.Count);
        }
    }

    /// <summary>
    /// Hooks libc10 (already loaded) once per process. Returns null when installed (or already), else why not: not
    /// Linux x64 glibc, <see cref="DisableVariable"/>=0, or libc10 not found in this process's maps.
    /// </summary>
    public static string? TryInstall()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return "the tensor block cache hooks glibc on Linux x64 only";
        if (Environment.GetEnvironmentVariable(DisableVariable) == "0") return $"{DisableVariable}=0";
        lock (InstallGate)
        {
            if (s_installed is not null) return null;
            TensorBlockCache? cache = null;
            var written = 0;
            try
            {
                var maps = File.ReadAllLines("/proc/self/maps");
                var library = FindMapped(maps, "libc10.so");
                if (library is null) return "libc10.so is not loaded";
                var (path, start) = library.Value;
                var elf = File.ReadAllBytes(path);
                // Only the PLT slots: they are what libc10's calls go through, and they lie outside RELRO. free's GLOB_DAT
                // slot serves c10::demangle's string deleter, which is not tensor memory.
                var slots = ElfRelocations.FindSlots(elf, ["posix_memalign", "free"]).Where(r => r.JumpSlot).ToList();
                if (!slots.Any(r => r.Symbol == "posix_memalign") || !slots.Any(r => r.Symbol == "free"))
                    return $"{path} does not import posix_memalign and free through its PLT";
                // With another allocator preloaded (jemalloc, tcmalloc), libc10's other memory is that allocator's, and
                // handing it to glibc would abort: stay out of the way.
                var libc = NativeLibrary.Load("libc.so.6");
                if (dlsym(0, "free") != NativeLibrary.GetExport(libc, "free")
                    || dlsym(0, "posix_memalign") != NativeLibrary.GetExport(libc, "posix_memalign"))
                    return "another malloc is preloaded";
                var loadBias = (nint)(start - ElfRelocations.FirstLoadAddress(elf));
                cache = new TensorBlockCache(slots.Count);
                Volatile.Write(ref s_installed, cache); // before the first hooked call can arrive
                // posix_memalign first and free last (Uninstall goes the other way), so no block of ours reaches glibc's free.
                foreach (var relocation in slots.OrderBy(r => r.Symbol == "free"))
                {
                    var slot = loadBias + (nint)relocation.Offset;
                    nint hook = relocation.Symbol == "free"
                        ? (nint)(delegate* unmanaged[Cdecl]<void*, void>)&FreeHook
                        : (nint)(delegate* unmanaged[Cdecl]<void**, nuint, nuint, int>)&PosixMemalignHook;
                    cache._patched[written] = (slot, Write(maps, slot, hook));
                    written++;
                }
            }
            catch (Exception e) // whatever went wrong (an odd ELF, /proc unreadable, mprotect refused), torch must still load
            {
                // Optional: put back what was written and go on without it.
                if (cache is not null)
                {
                    var maps = File.ReadAllLines("/proc/self/maps");
                    for (var i = written - 1; i >= 0; i--) Write(maps, cache._patched[i].Slot, cache._patched[i].Original);
                    Volatile.Write(ref s_installed, null);
                }
                return $"the tensor block cache could not hook libc10: {e.Message}";
            }
            AppDomain.CurrentDomain.ProcessExit += (_, _) => Uninstall();
            return null;
        }
    }

    /// <summary>Restores libc10's table and unmaps every cached block. Blocks still live are freed by glibc later.</summary>
    public static void Uninstall()
    {
        lock (InstallGate)
        {
            var cache = s_installed;
            if (cache is null) return;
            var maps = File.ReadAllLines("/proc/self/maps");
            for (var i = cache._patched.Length - 1; i >= 0; i--) Write(maps, cache._patched[i].Slot, cache._patched[i].Original);
            Volatile.Write(ref s_installed, null);
            lock (cache._gate) cache.UnmapCached();
        }
    }

    /// <summary>
    /// Called at the very end of a custom autograd function's forward: until <see cref="EndOutputMetadata"/>, large
    /// allocations on this thread get fresh (unresident) mappings, because TorchSharp's apply() now allocates an
    /// empty_like of each output that it never writes.
    /// </summary>
    public static void BeginOutputMetadata() => t_untouchedOutputs = true;

    /// <summary>Called when apply() returns (or throws): allocations reuse cached blocks again.</summary>
    public static void EndOutputMetadata() => t_untouchedOutputs = false;

    /// <summary>Starts <see cref="Statistics.PeakMappedBytes"/> again from the bytes mapped now.</summary>
    public static void ResetPeak()
    {
        var cache = Volatile.Read(ref s_installed);
        if (cache is null) return;
        lock (cache._gate) cache._peakMappedBytes = cache._liveBytes + cache._cachedBytes;
    }

    /// <summary>Unmaps every cached block now (e.g. when training ends and other work follows).</summary>
    public static void Trim()
    {
        var cache = Volatile.Read(ref s_installed);
        if (cache is null) return;
        lock (cache._gate) cache.UnmapCached();
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int PosixMemalignHook(void** result, nuint alignment, nuint size)
    {
        var cache = Volatile.Read(ref s_installed);
        // Small requests, odd alignments and a call that raced Uninstall go to glibc.
        if (cache is null || size < MinBlockBytes || alignment > HugePage) return GlibcPosixMemalign(result, alignment, size);
        try
        {
            var user = cache.Allocate(size);
            if (user == 0) return ENoMem;
            *result = (void*)user;
            return 0;
        }
        catch (Exception) // an exception must not cross into libtorch (it would end the process): report no memory
        {
            return ENoMem;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void FreeHook(void* pointer)
    {
        var cache = Volatile.Read(ref s_installed);
        if (pointer == null) return;
        try
        {
            if (cache is not null && cache.Release((nint)pointer)) return;
        }
        catch (Exception) // see PosixMemalignHook; a block whose release failed stays mapped, which is only a leak
        {
            return;
        }
        GlibcFree(pointer);
    }

    private nint Allocate(nuint size)
    {
        var length = Page + RoundUp(size, Page);
        var hugePages = size >= HugePage;
        if (t_untouchedOutputs)
        {
            // Never written, so never resident: mapping it fresh adds no RSS and needs no room made.
            var untouched = Reserve(length, hugePages);
            lock (_gate)
            {
                _misses++;
                return untouched == 0 ? 0 : HandOut(new Block(untouched, length, [new Extent(0, length)], Untouched: true));
            }
        }
        lock (_gate)
        {
            for (var i = _free.Count - 1; i >= 0; i--)
            {
                if (_free[i].Length != length) continue;
                var block = _free[i];
                _free.RemoveAt(i);
                _cachedBytes -= length;
                _hits++;
                return HandOut(block);
            }
            // A larger block cut down to size serves without a system call; its tail stays cached as loose pages. At
            // most twice the size, so a big block is kept whole for the next tensor of its own size.
            var best = -1;
            for (var i = 0; i < _free.Count; i++)
                if (_free[i].Length > length && _free[i].Length <= 2 * length && (best < 0 || _free[i].Length < _free[best].Length)) best = i;
            if (best >= 0)
            {
                var block = _free[best];
                _free.RemoveAt(best);
                _cachedBytes -= length;
                var head = new List<Extent>();
                foreach (var extent in block.Extents)
                {
                    var end = extent.Offset + extent.Length;
                    if (extent.Offset < length) head.Add(new Extent(extent.Offset, Math.Min(end, length) - extent.Offset));
                    if (end > length)
                    {
                        var from = Math.Max(extent.Offset, length);
                        // The pages sharing the cut huge page with the head go back to the kernel: moved later, they would
                        // split that huge page under a live tensor (measured: a checkpointed step slowed from 6 to 8 s
                        // as its huge pages were split up). Whole huge pages after it stay cached.
                        var keepFrom = block.Length - Page < HugePage ? from : Math.Max(from, Math.Min(end, Page + RoundUp(length - Page, HugePage)));
                        if (keepFrom > from)
                        {
                            munmap(block.Start + (nint)from, keepFrom - from);
                            _cachedBytes -= keepFrom - from;
                        }
                        if (end > keepFrom) _spans.Add((block.Start + (nint)keepFrom, end - keepFrom));
                    }
                }
                _split++;
                return HandOut(new Block(block.Start, length, [.. head]));
            }
            _misses++;
            var start = Reserve(length, hugePages);
            if (start == 0 && _cachedBytes > 0)
            {
                // Out of address space or over a mapping limit: give every cached page back and try once more.
                UnmapCached();
                start = Reserve(length, hugePages);
            }
            if (start == 0) return 0;
            Extent[] extents;
            nuint moved;
            try
            {
                extents = FillFromCache(start, length, out moved);
            }
            catch
            {
                munmap(start, length);
                throw;
            }
            _movedBytes += moved;
            _freshBytes += length - moved;
            // The pages not moved fault in fresh: give back at least as many cached bytes, so live + cached cannot pass
            // its old peak.
            EvictAtLeast(length - moved);
            return HandOut(new Block(start, length, extents));
        }
    }

    /// <summary>
    /// Moves cached pages (mremap: no copy, no zeroing) under the new mapping at <paramref name="start"/> and returns
    /// its extents. Whole 2 MB pieces go to the user part's 2 MB offsets, so huge pages move as they are (one page
    /// table entry each) and stay huge; then 4 KB-paged loose pages fill the header page and the tail after the last
    /// 2 MB slot. What nothing covers faults in fresh, as a new mapping would. Blocks are taken apart only when the
    /// loose pages run out.
    /// </summary>
    private Extent[] FillFromCache(nint start, nuint length, out nuint moved)
    {
        // Each piece is a mapping of its own: moved pages, or fresh ones where a move failed.
        var filled = new List<Extent>();
        moved = 0;
        void Fill(int index, nint from, nuint at, nuint bytes, ref nuint moved)
        {
            if (MoveFromSpan(index, from, bytes, start + (nint)at)) moved += bytes;
            filled.Add(new Extent(at, bytes));
        }
        var slotsEnd = Page + (length - Page) / HugePage * HugePage;
        var cursor = Page;
        while (cursor < slotsEnd && filled.Count < MaxExtents)
        {
            var i = HugeSpan();
            if (i < 0) break;
            var (spanStart, spanLength) = _spans[i];
            var from = (nint)RoundUp((nuint)spanStart, HugePage);
            var bytes = Math.Min(RoundDown((nuint)(spanStart + (nint)spanLength - from), HugePage), slotsEnd - cursor);
            Fill(i, from, cursor, bytes, ref moved);
            cursor += bytes;
        }
        // Huge-page slots left empty fault in fresh as huge pages: filled with 4 KB pieces they would lose that.
        foreach (var (holeStart, holeEnd) in new[] { ((nuint)0, Page), (slotsEnd, length) })
        {
            for (var at = holeStart; at < holeEnd && filled.Count < MaxExtents;)
            {
                var (i, from, bytes) = LoosePiece(holeEnd - at);
                if (i < 0) break;
                Fill(i, from, at, bytes, ref moved);
                at += bytes;
            }
        }
        // The pages nothing covered stay part of the new mapping, cut into pieces by the moves.
        filled.Sort((a, b) => a.Offset.CompareTo(b.Offset));
        var extents = new List<Extent>();
        nuint next = 0;
        void Gap(nuint from, nuint to)
        {
            // Reserve's madvise splits the new mapping after the header page: a gap is cut there too.
            if (from < Page && to > Page)
            {
                extents.Add(new Extent(from, Page - from));
                from = Page;
            }
            if (to > from) extents.Add(new Extent(from, to - from));
        }
        foreach (var extent in filled)
        {
            Gap(next, extent.Offset);
            extents.Add(extent);
            next = extent.Offset + extent.Length;
        }
        Gap(next, length);
        return [.. extents];
    }

    /// <summary>The index of the loose span with the most whole 2 MB pages (the oldest on ties); free blocks are taken
    /// apart into spans, oldest first, until one has any. -1 when none.</summary>
    private int HugeSpan()
    {
        while (true)
        {
            var best = -1;
            nuint most = 0;
            for (var i = 0; i < _spans.Count; i++)
            {
                var aligned = AlignedBytes(_spans[i]);
                if (aligned >= HugePage && aligned > most) (best, most) = (i, aligned);
            }
            if (best >= 0 || !TakeApartOldest()) return best;
        }
    }

    /// <summary>
    /// Up to <paramref name="need"/> bytes of 4 KB-paged cached memory: a span's pages before its first or after its
    /// last 2 MB boundary, the smallest that holds <paramref name="need"/>, else the largest. Free blocks are taken
    /// apart when no span has such pages. Huge pages are never cut: that would split them for good.
    /// </summary>
    private (int Index, nint From, nuint Bytes) LoosePiece(nuint need)
    {
        while (true)
        {
            (int Index, nint From, nuint Bytes) best = (-1, 0, 0);
            for (var i = 0; i < _spans.Count; i++)
            {
                var (spanStart, spanLength) = _spans[i];
                var spanEnd = (nuint)spanStart + spanLength;
                var head = Math.Min(spanEnd, RoundUp((nuint)spanStart, HugePage));
                var tail = Math.Max(head, RoundDown(spanEnd, HugePage));
                foreach (var (from, bytes) in new[] { ((nuint)spanStart, head - (nuint)spanStart), (tail, spanEnd - tail) })
                {
                    if (bytes == 0) continue;
                    var better = best.Index < 0
                        || (bytes >= need ? best.Bytes < need || bytes < best.Bytes : best.Bytes < need && bytes > best.Bytes);
                    if (better) best = (i, (nint)from, Math.Min(bytes, need));
                }
            }
            if (best.Index >= 0) return best;
            if (TakeApartOldest()) continue;
            return (-1, 0, 0);
        }
    }

    /// <summary>Turns the oldest free block into loose spans (its extents); false when there is none.</summary>
    private bool TakeApartOldest()
    {
        if (_free.Count == 0) return false;
        var block = _free[0];
        _free.RemoveAt(0);
        foreach (var extent in block.Extents) _spans.Add((block.Start + (nint)extent.Offset, extent.Length));
        _takenApart++;
        return true;
    }

    /// <summary>Moves <paramref name="bytes"/> at <paramref name="from"/> (inside span <paramref name="index"/>) to
    /// <paramref name="to"/>, leaving the span's pages before and after as spans. A failed move unmaps the pages (they
    /// were cached, so nothing is lost) and maps fresh ones at <paramref name="to"/>; false then.</summary>
    private bool MoveFromSpan(int index, nint from, nuint bytes, nint to)
    {
        var (spanStart, spanLength) = _spans[index];
        _spans.RemoveAt(index);
        var spanEnd = spanStart + (nint)spanLength;
        if (from + (nint)bytes < spanEnd) _spans.Insert(index, (from + (nint)bytes, (nuint)(spanEnd - from - (nint)bytes)));
        if (from > spanStart) _spans.Insert(index, (spanStart, (nuint)(from - spanStart)));
        _cachedBytes -= bytes;
        if (mremap(from, bytes, bytes, MremapMayMove | MremapFixed, to) == to) return true;
        munmap(from, bytes);
        _failedMoves++;
        // The kernel unmaps the destination before it checks the source, so a failed move leaves a hole in the new
        // block: map fresh pages there (the new block was made of the same kind).
        if (mmap(to, bytes, ProtRead | ProtWrite, MapPrivate | MapAnonymous | MapFixed, -1, 0) != to)
            throw new InvalidOperationException($"could not map 0x{to:x} again after a failed move"); // Allocate reports no memory
        if (bytes >= HugePage) madvise(to, bytes, MadvHugePage);
        return false;
    }

    /// <summary>Unmaps loose spans, then whole free blocks, oldest first, until <paramref name="bytes"/> are released
    /// or nothing is cached.</summary>
    private void EvictAtLeast(nuint bytes)
    {
        nuint released = 0;
        while (released < bytes && _spans.Count > 0)
        {
            var (spanStart, spanLength) = _spans[0];
            _spans.RemoveAt(0);
            munmap(spanStart, spanLength);
            released += spanLength;
        }
        while (released < bytes && _free.Count > 0)
        {
            var block = _free[0];
            _free.RemoveAt(0);
            munmap(block.Start, block.Length);
            released += block.Length;
            _evicted++;
        }
        _cachedBytes -= released;
    }

    /// <summary>Unmaps everything cached; the caller holds <see cref="_gate"/>.</summary>
    private void UnmapCached()
    {
        foreach (var block in _free) munmap(block.Start, block.Length);
        foreach (var (spanStart, spanLength) in _spans) munmap(spanStart, spanLength);
        _evicted += _free.Count;
        _free.Clear();
        _spans.Clear();
        _cachedBytes = 0;
    }

    private nint HandOut(Block block)
    {
        var user = block.Start + (nint)Page;
        // glibc's chunk header: prev_size holds the distance from the mapping's start to the chunk (16 bytes before
        // the pointer), size holds the rest of the mapping with IS_MMAPPED; glibc's free then unmaps exactly this.
        ((nuint*)user)[-2] = Page - 16;
        ((nuint*)user)[-1] = (block.Length - Page + 16) | GlibcIsMmapped;
        // A block freed past libc10 (glibc unmapped it: the header allows that) leaves a stale entry whose address
        // mmap can hand out again; the new block replaces it.
        if (_live.Remove(user, out var stale)) _liveBytes -= stale.Length;
        _live.Add(user, block);
        _liveBytes += block.Length;
        _peakMappedBytes = Math.Max(_peakMappedBytes, _liveBytes + _cachedBytes);
        return user;
    }

    private bool Release(nint user)
    {
        // Most frees are small glibc chunks: a block of ours is 2 MB aligned and carries its header, checked before any
        // lookup, so an address glibc reused after freeing a block itself is never taken for one.
        if ((user & (nint)(HugePage - 1)) != 0 || ((nuint*)user)[-2] != Page - 16 || (((nuint*)user)[-1] & GlibcIsMmapped) == 0)
            return false;
        Block? block;
        lock (_gate)
        {
            // After Uninstall a late free goes to glibc, which unmaps the block through its header.
            if (!ReferenceEquals(Volatile.Read(ref s_installed), this)) return false;
            if (!_live.TryGetValue(user, out block) || ((nuint*)user)[-1] != ((block.Length - Page + 16) | GlibcIsMmapped))
                return false;
            _live.Remove(user);
            _liveBytes -= block.Length;
            if (!block.Untouched)
            {
                _free.Add(block);
                _cachedBytes += block.Length;
                return true;
            }
        }
        // An unwritten block has no pages to keep, and cached it would be handed out as if it had: unmapping is cheap.
        munmap(block.Start, block.Length);
        return true;
    }

    /// <summary>Maps <paramref name="length"/> bytes, untouched, so that the user part after the first page starts on a
    /// 2 MB boundary (huge pages need it). Returns the mapping's start, or 0.</summary>
    private static nint Reserve(nuint length, bool hugePages)
    {
        var raw = mmap(0, length + HugePage, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (raw == -1) return 0;
        var user = (nint)RoundUp((nuint)raw + Page, HugePage);
        var start = user - (nint)Page;
        if (start > raw) munmap(raw, (nuint)(start - raw));
        var end = raw + (nint)(length + HugePage);
        if (end > start + (nint)length) munmap(start + (nint)length, (nuint)(end - start - (nint)length));
        if (hugePages) madvise(user, length - Page, MadvHugePage);
        return start;
    }

    /// <summary>Bytes of whole 2 MB pages, at 2 MB offsets, inside a span.</summary>
    private static nuint AlignedBytes((nint Start, nuint Length) span)
    {
        var from = RoundUp((nuint)span.Start, HugePage);
        var to = RoundDown((nuint)span.Start + span.Length, HugePage);
        return to > from ? to - from : 0;
    }

    private static nuint RoundDown(nuint value, nuint multiple) => value / multiple * multiple;

    private static nuint RoundUp(nuint value, nuint multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>Writes <paramref name="value"/> into the pointer-sized slot at <paramref name="slot"/>, lifting the
    /// page's protection for the write (RELRO makes some slots read-only), and returns what the slot held.</summary>
    private static nint Write(string[] maps, nint slot, nint value)
    {
        var page = slot & ~(nint)(Page - 1);
        var protection = ProtectionOf(maps, slot);
        if ((protection & ProtWrite) == 0 && mprotect(page, Page, protection | ProtWrite) != 0)
            throw new InvalidOperationException($"mprotect failed on 0x{page:x} ({Marshal.GetLastPInvokeError()})");
        var original = Interlocked.Exchange(ref *(nint*)slot, value);
        if ((protection & ProtWrite) == 0) mprotect(page, Page, protection);
        return original;
    }

    private static int ProtectionOf(string[] maps, nint address)
    {
        foreach (var line in maps)
        {
            var mapping = MapsLine.Parse(line);
            if (!mapping.Contains((ulong)address)) continue;
            var perms = mapping.Permissions;
            return (perms[0] == 'r' ? ProtRead : 0) | (perms[1] == 'w' ? ProtWrite : 0) | (perms[2] == 'x' ? 4 : 0);
        }
        throw new InvalidOperationException($"address 0x{address:x} is not mapped");
    }

    /// <summary>The path of the loaded library named <paramref name="fileName"/> and the start of its mapping at file offset 0.</summary>
    private static (string Path, ulong Start)? FindMapped(string[] maps, string fileName)
    {
        foreach (var line in maps)
        {
            var mapping = MapsLine.Parse(line);
            if (mapping.Offset == 0 && Path.GetFileName(mapping.Path) == fileName) return (mapping.Path, mapping.Start);
        }
        return null;
    }

    [LibraryImport("libc", EntryPoint = "dlsym", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint dlsym(nint handle, string symbol);

    [LibraryImport("libc", EntryPoint = "posix_memalign")]
    private static partial int GlibcPosixMemalign(void** result, nuint alignment, nuint size);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void GlibcFree(void* pointer);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc")]
    private static partial int munmap(nint address, nuint length);

    // mremap is variadic (the new address is its fifth argument); on x64 SysV an integer-only call is the same.
    [LibraryImport("libc")]
    private static partial nint mremap(nint oldAddress, nuint oldLength, nuint newLength, int flags, nint newAddress);

    [LibraryImport("libc")]
    private static partial int madvise(nint address, nuint length, int advice);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int mprotect(nint address, nuint length, int protection);
}

/// <summary>One line of <c>/proc/self/maps</c>: <c>start-end perms offset dev inode [path]</c>.</summary>
public readonly record struct MapsLine(ulong Start, ulong End, string Permissions, ulong Offset, string Path)
{
    public bool Contains(ulong address) => address >= Start && address < End;

    public static MapsLine Parse(string line)
    {
        var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
        var range = fields[0].Split('-');
        return new MapsLine(Convert.ToUInt64(range[0], 16), Convert.ToUInt64(range[1], 16), fields[1],
            Convert.ToUInt64(fields[2], 16), fields.Length == 6 ? fields[5].Trim() : "");
    }
}

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
/// Memory: a request takes a cached block of its exact size, else a cached block up to twice its size with the tail
/// unmapped, else cached blocks (oldest first) are unmapped until as many bytes as the new block are released (or the
/// cache is empty) before anything new is mapped. So live plus cached bytes never exceed the most bytes ever live at
/// once, not counting the one allocation that is live but never written: TorchSharp's copy of each custom autograd
/// function's output (<see cref="BeginOutputMetadata"/>) gets a fresh mapping, which holds no pages, and is unmapped
/// when freed (a recycled, resident block would have made it count). With that, the 7b preset's QLoRA step peaks at
/// the same RSS as without the cache.
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
    private const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20, MadvHugePage = 14, ENoMem = 12;

    // The process has one libc10 and one offset table to patch, so the hook's state is one instance per process.
    private static TensorBlockCache? s_installed;
    private static readonly Lock InstallGate = new();

    // TorchSharp's custom autograd functions keep an empty_like copy of every output (Node.SaveOutputsInfo, for a
    // zero gradient should one be missing) that is never written. A fresh mapping costs it no RSS; a recycled block
    // would make it resident: 33 layer outputs, 132 MB, in a 7B step. Per thread, as the call that allocates it is.
    [ThreadStatic] private static bool t_untouchedOutputs;

    private readonly Lock _gate = new();
    private readonly Dictionary<nint, (nuint Length, bool Untouched)> _live = []; // user pointer -> mapping
    private readonly List<(nint User, nuint Length)> _cached = []; // oldest first
    private readonly (nint Slot, nint Original)[] _patched;
    private nuint _liveBytes, _cachedBytes, _peakMappedBytes;
    private long _hits, _misses, _evicted, _shrunk;

    private TensorBlockCache(int slots) => _patched = new (nint, nint)[slots];

    /// <summary>Counters since install: blocks reused, blocks mapped fresh, cached bytes unmapped to make room.</summary>
    public readonly record struct Statistics(long Hits, long ShrunkHits, long Misses, long EvictedBlocks, long LiveBytes, long CachedBytes, long PeakMappedBytes);

    public static Statistics? Current
    {
        get
        {
            var cache = Volatile.Read(ref s_installed);
            if (cache is null) return null;
            lock (cache._gate)
                return new Statistics(cache._hits, cache._shrunk, cache._misses, cache._evicted, (long)cache._liveBytes, (long)cache._cachedBytes, (long)cache._peakMappedBytes);
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
        if (t_untouchedOutputs)
        {
            // Never written, so never resident: mapping it fresh adds no RSS and needs no room made.
            var untouched = Map(length, size >= HugePage);
            lock (_gate)
            {
                if (untouched != 0) Track(untouched, length, untouched: true);
                _misses++;
            }
            return untouched;
        }
        lock (_gate)
        {
            for (var i = _cached.Count - 1; i >= 0; i--)
            {
                if (_cached[i].Length != length) continue;
                var user = _cached[i].User;
                _cached.RemoveAt(i);
                _cachedBytes -= length;
                Track(user, length);
                _hits++;
                return user;
            }
            // A larger resident block cut down to size serves without faults and only lowers live + cached; at most twice
            // the size, so big blocks are not spent on small tensors.
            var best = -1;
            for (var i = 0; i < _cached.Count; i++)
                if (_cached[i].Length > length && _cached[i].Length <= 2 * length && (best < 0 || _cached[i].Length < _cached[best].Length)) best = i;
            if (best >= 0)
            {
                var (user, had) = _cached[best];
                _cached.RemoveAt(best);
                _cachedBytes -= had;
                Shrink(user, had, length);
                Track(user, length);
                _shrunk++;
                return user;
            }
            // Unmap at least as many cached bytes as are about to be mapped, so live + cached cannot pass its old peak.
            nuint released = 0;
            var evict = 0;
            while (evict < _cached.Count && released < length) released += _cached[evict++].Length;
            for (var i = 0; i < evict; i++) Unmap(_cached[i].User, _cached[i].Length);
            _cached.RemoveRange(0, evict);
            _cachedBytes -= released;
            _evicted += evict;
            _misses++;
            var fresh = Map(length, size >= HugePage);
            if (fresh == 0 && _cached.Count > 0)
            {
                // Out of address space or over a mapping limit: give every cached block back and try once more.
                _evicted += _cached.Count;
                UnmapCached();
                fresh = Map(length, size >= HugePage);
            }
            if (fresh != 0) Track(fresh, length);
            return fresh;
        }
    }

    /// <summary>Unmaps every cached block; the caller holds <see cref="_gate"/>.</summary>
    private void UnmapCached()
    {
        foreach (var (user, length) in _cached) Unmap(user, length);
        _cached.Clear();
        _cachedBytes = 0;
    }

    private void Track(nint user, nuint length, bool untouched = false)
    {
        // A block freed past libc10 (glibc unmapped it: the header allows that) leaves a stale entry whose address
        // mmap can hand out again; the new block replaces it.
        if (_live.Remove(user, out var stale)) _liveBytes -= stale.Length;
        _live.Add(user, (length, untouched));
        _liveBytes += length;
        _peakMappedBytes = Math.Max(_peakMappedBytes, _liveBytes + _cachedBytes);
    }

    private bool Release(nint user)
    {
        // Most frees are small glibc chunks: a block of ours is 2 MB aligned and carries its header, checked before any
        // lookup, so an address glibc reused after freeing a block itself is never taken for one.
        if ((user & (nint)(HugePage - 1)) != 0 || ((nuint*)user)[-2] != Page - 16 || (((nuint*)user)[-1] & GlibcIsMmapped) == 0)
            return false;
        (nuint Length, bool Untouched) block;
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
                _cached.Add((user, block.Length));
                _cachedBytes += block.Length;
                return true;
            }
        }
        // An unwritten block has no pages to keep, and cached it would be handed out as if it had: unmapping is cheap.
        Unmap(user, block.Length);
        return true;
    }

    /// <summary>Maps <paramref name="length"/> bytes whose user part starts on a 2 MB boundary (huge pages need it),
    /// with glibc's mmapped-chunk header in the page before it. Returns the user pointer, or 0.</summary>
    private static nint Map(nuint length, bool hugePages)
    {
        var raw = mmap(0, length + HugePage, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (raw == -1) return 0;
        var user = (nint)RoundUp((nuint)raw + Page, HugePage);
        var block = user - (nint)Page;
        if (block > raw) munmap(raw, (nuint)(block - raw));
        var end = raw + (nint)(length + HugePage);
        if (end > block + (nint)length) munmap(block + (nint)length, (nuint)(end - block - (nint)length));
        if (hugePages) madvise(user, length - Page, MadvHugePage);
        // glibc's chunk header: prev_size holds the distance from the mapping's start to the chunk (16 bytes before
        // the pointer), size holds the rest of the mapping with IS_MMAPPED; glibc's free then unmaps exactly this.
        ((nuint*)user)[-2] = Page - 16;
        ((nuint*)user)[-1] = (length - Page + 16) | GlibcIsMmapped;
        return user;
    }

    /// <summary>Unmaps the tail of a block so it is <paramref name="length"/> long, and rewrites the glibc size field.</summary>
    private static void Shrink(nint user, nuint had, nuint length)
    {
        munmap(user - (nint)Page + (nint)length, had - length);
        ((nuint*)user)[-1] = (length - Page + 16) | GlibcIsMmapped;
    }

    private static void Unmap(nint user, nuint length) => munmap(user - (nint)Page, length);

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

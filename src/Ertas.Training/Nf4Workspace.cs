using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Training;

/// <summary>
/// Reusable CPU buffers for dequantized NF4 weights, one per (element count, dtype), shared by a model's weights.
/// <para>
/// Why: a dequantized 7B projection is 117 MB of bf16. glibc serves allocations above its mmap threshold (32 MB at
/// most) with fresh mmaps, so every forward and backward would fault in and zero every page of a new buffer (the
/// kernel's time, more than the dequantization itself). Reusing one buffer per shape costs, for 7B, 274 MB held for the
/// model's life. The dequantized weight never outlives the matmul that reads it (<see cref="LoraFunction"/> saves
/// nothing of W for backward), so one buffer per shape suffices; a rent while that buffer is out (re-entrancy, a second
/// thread) gets a fresh tensor instead, so sharing is never unsafe, only slower.
/// </para>
/// Reference-counted: each weight that holds the workspace calls <see cref="Attach"/> and, when disposed,
/// <see cref="Release"/>; the buffers are freed with the last one.
/// </summary>
public sealed class Nf4Workspace
{
    private sealed class Slot(Tensor buffer)
    {
        public readonly Tensor Buffer = buffer;
        public int InUse;
    }

    private readonly Dictionary<(long Elements, ScalarType DType), Slot> _slots = [];
    private int _holders;

    /// <summary>Buffers held now (for tests and reports).</summary>
    public long HeldBytes
    {
        get
        {
            lock (_slots) return _slots.Values.Sum(s => s.Buffer.NumberOfElements * s.Buffer.ElementSize);
        }
    }

    /// <summary>Registers one more weight that uses this workspace.</summary>
    public Nf4Workspace Attach()
    {
        Interlocked.Increment(ref _holders);
        return this;
    }

    /// <summary>One holder is gone; the last one frees the buffers.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _holders) != 0) return;
        lock (_slots)
        {
            foreach (var slot in _slots.Values) slot.Buffer.Dispose();
            _slots.Clear();
        }
    }

    /// <summary>The weight dequantized to <paramref name="dtype"/>, in a shared buffer when on the CPU and that buffer
    /// is free. Dispose the lease as soon as the weight has been used.</summary>
    public Lease Dequantize(Nf4Tensor weight, ScalarType dtype)
    {
        if (weight.Device.type != DeviceType.CPU)
            return new Lease(null, weight.Dequantize(dtype));
        Slot? slot;
        lock (_slots)
        {
            var key = (weight.ElementCount, dtype);
            if (!_slots.TryGetValue(key, out slot))
            {
                var buffer = empty([weight.ElementCount], dtype);
                buffer.DetachFromDisposeScope();
                _slots[key] = slot = new Slot(buffer);
            }
        }
        if (Interlocked.Exchange(ref slot.InUse, 1) == 1)
            return new Lease(null, weight.Dequantize(dtype)); // taken: never share a live buffer
        weight.DequantizeInto(slot.Buffer);
        return new Lease(slot, slot.Buffer.view(weight.Shape));
    }

    /// <summary>A dequantized weight: a view of a shared buffer (returned on dispose) or a tensor of its own.</summary>
    public readonly struct Lease : IDisposable
    {
        private readonly object? _slot;

        internal Lease(object? slot, Tensor weight) => (_slot, Weight) = (slot, weight);

        public Tensor Weight { get; }

        public void Dispose()
        {
            Weight.Dispose();
            if (_slot is Slot slot) Volatile.Write(ref slot.InUse, 0);
        }
    }
}

using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling;

/// <summary>
/// Tensor arithmetic whose <see cref="Scalar"/> arguments stay alive until libtorch has returned.
/// <para>
/// TorchSharp 0.107's Scalar is a finalizable wrapper of a native <c>c10::Scalar*</c> that no dispose scope holds.
/// An implicit conversion at a call site (<c>t * 2.0</c>, <c>t.pow(2)</c>) or one inside TorchSharp (<c>a + b</c> is
/// <c>a.add(b, 1)</c>) makes a temporary that only its handle outlives: once the handle is read the JIT treats the
/// wrapper as dead, so a GC set off by another thread's allocation can finalize it and free the c10::Scalar while
/// the native call still reads it (one 7B step aborted so, inside a layer recomputed during backward). Every method
/// here makes its Scalars in <c>WithScalar</c>, which disposes each one after the call that reads it has returned and
/// so keeps it reachable until then.
/// </para>
/// <para>
/// Each method is the TorchSharp form named in its summary, op for op, with Scalars of the same kind (an int or long
/// is an integral c10::Scalar, a float or double a floating one), so results are bit for bit the same.
/// ScalarLifetimeTests fails when Ertas.Modeling or Ertas.Training makes a Scalar anywhere else or calls a TorchSharp
/// member that makes one internally.
/// </para>
/// </summary>
public static class ScalarSafe
{
    /// <summary><c>a + b</c> (TorchSharp: <c>a.add(b, 1)</c>).</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => WithScalar(1, alpha => a.add(b, alpha));

    /// <summary><c>a + b</c> (TorchSharp: <c>a.add(b, 1)</c> with b a Scalar).</summary>
    public static Tensor Plus(this Tensor a, double b) => WithScalar(b, other => WithScalar(1, alpha => a.add(other, alpha)));

    /// <summary><c>a * b</c>.</summary>
    public static Tensor Times(this Tensor a, double b) => WithScalar(b, other => a.mul(other));

    /// <summary><c>a * b</c>, b integral.</summary>
    public static Tensor Times(this Tensor a, long b) => WithScalar(b, other => a.mul(other));

    /// <summary><c>a / b</c>.</summary>
    public static Tensor DividedBy(this Tensor a, double b) => WithScalar(b, other => a.div(other));

    /// <summary><c>a / b</c>, b integral (true division all the same).</summary>
    public static Tensor DividedBy(this Tensor a, long b) => WithScalar(b, other => a.div(other));

    /// <summary><c>a / b</c> for a number over a tensor (TorchSharp: <c>b.reciprocal() * a</c>).</summary>
    public static Tensor Divide(double a, Tensor b)
    {
        using var reciprocal = b.reciprocal();
        return WithScalar(a, numerator => reciprocal.mul(numerator));
    }

    /// <summary><c>a.pow(exponent)</c>, exponent integral.</summary>
    public static Tensor Power(this Tensor a, long exponent) => WithScalar(exponent, power => a.pow(power));

    /// <summary><c>a.add_(b)</c> for a tensor b (TorchSharp: <c>a.add_(b, 1)</c>).</summary>
    public static Tensor AddInPlace(this Tensor a, Tensor b) => WithScalar(1, alpha => a.add_(b, alpha));

    /// <summary><c>a.add_(b)</c> (TorchSharp: <c>a.add_(b, 1)</c> with b a Scalar).</summary>
    public static Tensor AddInPlace(this Tensor a, double b) => WithScalar(b, other => WithScalar(1, alpha => a.add_(other, alpha)));

    /// <summary><c>a.mul_(b)</c>.</summary>
    public static Tensor MulInPlace(this Tensor a, double b) => WithScalar(b, other => a.mul_(other));

    /// <summary><c>a.addcmul_(tensor1, tensor2, value)</c>: a += value * tensor1 * tensor2.</summary>
    public static Tensor AddcmulInPlace(this Tensor a, Tensor tensor1, Tensor tensor2, double value) =>
        WithScalar(value, factor => a.addcmul_(tensor1, tensor2, factor));

    /// <summary><c>a.addcdiv_(tensor1, tensor2, value)</c>: a += value * tensor1 / tensor2.</summary>
    public static Tensor AddcdivInPlace(this Tensor a, Tensor tensor1, Tensor tensor2, double value) =>
        WithScalar(value, factor => a.addcdiv_(tensor1, tensor2, factor));

    /// <summary><c>a.masked_fill(mask, value)</c>, value integral.</summary>
    public static Tensor MaskedFill(this Tensor a, Tensor mask, long value) => WithScalar(value, fill => a.masked_fill(mask, fill));

    /// <summary><c>a.masked_fill_(mask, value)</c>.</summary>
    public static Tensor MaskedFillInPlace(this Tensor a, Tensor mask, double value) => WithScalar(value, fill => a.masked_fill_(mask, fill));

    /// <summary><c>a.clamp_max(max)</c>.</summary>
    public static Tensor ClampMax(this Tensor a, double max) => WithScalar(max, bound => a.clamp_max(bound));

    /// <summary><c>a.ge(b)</c> (a &gt;= b), b integral.</summary>
    public static Tensor AtLeast(this Tensor a, long b) => WithScalar(b, other => a.ge(other));

    /// <summary><c>a.lt(b)</c> (a &lt; b), b integral.</summary>
    public static Tensor LessThan(this Tensor a, long b) => WithScalar(b, other => a.lt(other));

    /// <summary><c>a.ne(b)</c> (a != b), b integral.</summary>
    public static Tensor NotEqual(this Tensor a, long b) => WithScalar(b, other => a.ne(other));

    /// <summary><c>torch.arange(start, stop, step)</c>, integral bounds (the one- and two-bound overloads make their
    /// missing start and step as temporaries).</summary>
    public static Tensor Arange(long start, long stop, long step, ScalarType dtype, Device? device = null) =>
        WithScalar(start, first => WithScalar(stop, end => WithScalar(step, increment => arange(first, end, increment, dtype, device))));

    /// <summary>
    /// The L2 norm over all elements: <c>torch.linalg.vector_norm(a, 2)</c>, whose only TorchSharp form makes its order
    /// a temporary Scalar. <c>Tensor.norm(float)</c> passes the order by value and libtorch's <c>norm(p)</c> is
    /// <c>linalg_vector_norm(p)</c> over every dimension, so the value is the same (ScalarSafeTests checks it bit for bit).
    /// </summary>
    public static Tensor L2Norm(this Tensor a) => a.norm(2f);

    // The only places a Scalar is made: disposing it after use returns is what keeps it reachable during the call.
    private static Tensor WithScalar(long value, Func<Scalar, Tensor> use)
    {
        using var scalar = value.ToScalar();
        return use(scalar);
    }

    private static Tensor WithScalar(double value, Func<Scalar, Tensor> use)
    {
        using var scalar = value.ToScalar();
        return use(scalar);
    }
}

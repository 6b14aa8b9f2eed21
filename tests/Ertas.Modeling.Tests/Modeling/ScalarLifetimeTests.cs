using System.Collections.Immutable;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;
using Ertas.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ertas.Modeling.Tests.Modeling;

/// <summary>
/// A TorchSharp Scalar made as a temporary can be finalized while libtorch still reads it (see <see cref="ScalarSafe"/>).
/// These tests read the IL of Ertas.Modeling and Ertas.Training and fail on any method outside ScalarSafe that makes a
/// Scalar (an implicit conversion, <c>ToScalar</c>) or calls a TorchSharp member that makes one inside itself. That set
/// is computed from TorchSharp.dll's own IL, so a TorchSharp upgrade is checked too: every member whose body makes a
/// Scalar, then every member that calls (or takes a delegate to) one of those, until nothing is added. Calls through
/// virtual dispatch (a module's forward) are not followed.
/// </summary>
public sealed class ScalarLifetimeTests
{
    private static readonly Lazy<HashSet<string>> TorchSharpTemporaries = new(ComputeTorchSharpTemporaries);

    [Fact]
    public void ModelingAndTrainingMakeScalarsOnlyThroughScalarSafe()
    {
        var offences = new[] { typeof(MistralModel).Assembly.Location, typeof(Trainer).Assembly.Location }
            .SelectMany(path => Offences(IlMethods(path).Where(m => !IsHelper(m.Type))))
            .ToList();
        Assert.True(offences.Count == 0,
            $"{offences.Count} call(s) leave a TorchSharp Scalar to the finalizer during a native call; use ScalarSafe:\n" +
            string.Join("\n", offences));
    }

    [Fact]
    public void ScalarSafeKeepsEveryScalarItMakesInADisposedLocal()
    {
        var helper = IlMethods(typeof(ScalarSafe).Assembly.Location).Where(m => IsHelper(m.Type)).ToList();
        Assert.NotEmpty(helper);
        // The helper may make Scalars, but never call a TorchSharp member that makes its own.
        Assert.Empty(helper.SelectMany(m => m.Calls.Where(c => !MakesScalar(c) && TorchSharpTemporaries.Value.Contains(c)).Select(c => $"{m.Id} calls {c}")));
        foreach (var method in helper)
        {
            var made = method.Calls.Count(MakesScalar);
            var disposed = method.Calls.Count(c => c is "System.IDisposable::Dispose()" or "TorchSharp.Scalar::Dispose()");
            // A Scalar passed straight into a call is a temporary again; one held in a local without using is too.
            Assert.True(method.ScalarLocals == made && disposed >= made,
                $"{method.Id} makes {made} Scalar(s), holds {method.ScalarLocals} in locals and disposes {disposed} thing(s)");
        }
    }

    [Fact]
    public void TheScanFlagsImplicitScalarsAndTorchSharpsOwnTemporaries()
    {
        var temporaries = TorchSharpTemporaries.Value;
        Assert.Contains("TorchSharp.torch+Tensor::add(TorchSharp.torch+Tensor)", temporaries);          // add(other, 1)
        Assert.Contains("TorchSharp.torch+Tensor::op_Addition(TorchSharp.torch+Tensor,TorchSharp.torch+Tensor)", temporaries);
        Assert.Contains("TorchSharp.torch+Tensor::op_Multiply(TorchSharp.torch+Tensor,Double)", temporaries);
        Assert.Contains("TorchSharp.torch+linalg::vector_norm(TorchSharp.torch+Tensor,Double,Int64[],Boolean)", temporaries);
        Assert.Contains("TorchSharp.Modules.AdamW::step(System.Func`1<TorchSharp.torch+Tensor>)", temporaries); // through a lambda
        Assert.DoesNotContain("TorchSharp.torch+Tensor::add(TorchSharp.torch+Tensor,TorchSharp.Scalar)", temporaries);
        Assert.DoesNotContain("TorchSharp.torch+Tensor::op_Subtraction(TorchSharp.torch+Tensor,TorchSharp.torch+Tensor)", temporaries);

        var offences = Offences(IlMethods(typeof(ScalarLifetimeTests).Assembly.Location).Where(m => m.Type.EndsWith("+Offenders", StringComparison.Ordinal)));
        Assert.Equal(new[]
        {
            "Ertas.Modeling.Tests.Modeling.ScalarLifetimeTests+Offenders::Implicit(TorchSharp.torch+Tensor) makes a Scalar: TorchSharp.Scalar::op_Implicit(Double)",
            "Ertas.Modeling.Tests.Modeling.ScalarLifetimeTests+Offenders::Internal(TorchSharp.torch+Tensor,TorchSharp.torch+Tensor) calls TorchSharp.torch+Tensor::op_Addition(TorchSharp.torch+Tensor,TorchSharp.torch+Tensor), which makes a temporary Scalar inside TorchSharp",
        }, offences);
    }

    // Never run: the IL the scan must flag.
    private static class Offenders
    {
        public static Tensor Implicit(Tensor a) => a.mul(2.0);
        public static Tensor Internal(Tensor a, Tensor b) => a + b;
        public static Tensor Safe(Tensor a, Tensor b) => a.Plus(b) - b;
    }

    private static bool IsHelper(string type) => type == typeof(ScalarSafe).FullName || type.StartsWith(typeof(ScalarSafe).FullName + "+", StringComparison.Ordinal);

    private static bool MakesScalar(string callee) =>
        callee.StartsWith("TorchSharp.Scalar::op_Implicit(", StringComparison.Ordinal) || callee.StartsWith("TorchSharp.Scalar::.ctor(", StringComparison.Ordinal) ||
        (callee.StartsWith("TorchSharp.", StringComparison.Ordinal) && callee.Contains("::ToScalar(", StringComparison.Ordinal));

    private static IEnumerable<string> Offences(IEnumerable<IlMethod> methods) =>
        from method in methods
        from callee in method.Calls.Distinct()
        where MakesScalar(callee) || TorchSharpTemporaries.Value.Contains(callee)
        select MakesScalar(callee)
            ? $"{method.Id} makes a Scalar: {callee}"
            : $"{method.Id} calls {callee}, which makes a temporary Scalar inside TorchSharp";

    private static HashSet<string> ComputeTorchSharpTemporaries()
    {
        var methods = IlMethods(typeof(Scalar).Assembly.Location);
        var callers = new Dictionary<string, List<string>>();
        foreach (var method in methods)
            foreach (var callee in method.Calls.Distinct())
            {
                if (!callers.TryGetValue(callee, out var list)) callers[callee] = list = [];
                list.Add(method.Id);
            }
        var found = methods.Where(m => m.Calls.Any(MakesScalar)).Select(m => m.Id).ToHashSet();
        var pending = new Queue<string>(found);
        while (pending.TryDequeue(out var id))
            foreach (var caller in callers.GetValueOrDefault(id) ?? [])
                if (found.Add(caller)) pending.Enqueue(caller);
        return found;
    }

    /// <summary>A method body: its id (<c>Type::name(parameter types)</c>, the same text for a definition and for a
    /// reference to it from another assembly), every method it calls or takes a delegate to, and how many of its locals
    /// are Scalars.</summary>
    private sealed record IlMethod(string Type, string Id, IReadOnlyList<string> Calls, int ScalarLocals);

    private static readonly Dictionary<short, OpCode> OpCodesByValue =
        typeof(OpCodes).GetFields().Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    private static List<IlMethod> IlMethods(string assemblyPath)
    {
        using var pe = new PEReader(File.OpenRead(assemblyPath));
        var reader = pe.GetMetadataReader();
        var names = new TypeNames(reader);
        var result = new List<IlMethod>();
        foreach (var handle in reader.MethodDefinitions)
        {
            var definition = reader.GetMethodDefinition(handle);
            var calls = new List<string>();
            var scalarLocals = 0;
            if (definition.RelativeVirtualAddress != 0)
            {
                var body = pe.GetMethodBody(definition.RelativeVirtualAddress);
                foreach (var token in MethodOperands(body.GetILBytes()!))
                    calls.Add(names.MethodId(MetadataTokens.EntityHandle(token)));
                if (!body.LocalSignature.IsNil)
                    scalarLocals = reader.GetStandaloneSignature(body.LocalSignature).DecodeLocalSignature(names, null).Count(t => t == "TorchSharp.Scalar");
            }
            result.Add(new IlMethod(names.TypeName(definition.GetDeclaringType()), names.MethodId(handle), calls, scalarLocals));
        }
        return result;
    }

    /// <summary>The tokens of call, callvirt, newobj, ldftn and ldvirtftn: every operand that names a method.</summary>
    private static IEnumerable<int> MethodOperands(byte[] il)
    {
        for (var i = 0; i < il.Length;)
        {
            short value = il[i++];
            if (value == 0xFE) value = (short)(0xFE00 | il[i++]);
            var op = OpCodesByValue[value];
            if (op.OperandType == OperandType.InlineMethod) yield return BitConverter.ToInt32(il, i);
            i += op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
        }
    }

    /// <summary>Type names as <c>Namespace.Outer+Inner</c>, generic instances by their definition in method ids.</summary>
    private sealed class TypeNames(MetadataReader reader) : ISignatureTypeProvider<string, object?>
    {
        public string MethodId(EntityHandle handle)
        {
            switch (handle.Kind)
            {
                case HandleKind.MethodDefinition:
                    var definition = reader.GetMethodDefinition((MethodDefinitionHandle)handle);
                    return Id(TypeName(definition.GetDeclaringType()), definition.Name, definition.DecodeSignature(this, null));
                case HandleKind.MemberReference:
                    var reference = reader.GetMemberReference((MemberReferenceHandle)handle);
                    var parent = reference.Parent.Kind == HandleKind.TypeSpecification
                        ? GenericDefinition(TypeName(reference.Parent))
                        : TypeName(reference.Parent);
                    return Id(parent, reference.Name, reference.DecodeMethodSignature(this, null));
                case HandleKind.MethodSpecification:
                    return MethodId(reader.GetMethodSpecification((MethodSpecificationHandle)handle).Method);
                default:
                    return handle.Kind.ToString();
            }
        }

        private string Id(string type, StringHandle name, MethodSignature<string> signature) =>
            $"{type}::{reader.GetString(name)}({string.Join(",", signature.ParameterTypes)})";

        private static string GenericDefinition(string type) => type.IndexOf('<') is var i and >= 0 ? type[..i] : type;

        public string TypeName(EntityHandle handle)
        {
            switch (handle.Kind)
            {
                case HandleKind.TypeDefinition:
                    var definition = reader.GetTypeDefinition((TypeDefinitionHandle)handle);
                    return definition.GetDeclaringType().IsNil
                        ? Qualified(definition.Namespace, definition.Name)
                        : TypeName(definition.GetDeclaringType()) + "+" + reader.GetString(definition.Name);
                case HandleKind.TypeReference:
                    var reference = reader.GetTypeReference((TypeReferenceHandle)handle);
                    return reference.ResolutionScope.Kind == HandleKind.TypeReference
                        ? TypeName((TypeReferenceHandle)reference.ResolutionScope) + "+" + reader.GetString(reference.Name)
                        : Qualified(reference.Namespace, reference.Name);
                case HandleKind.TypeSpecification:
                    return reader.GetTypeSpecification((TypeSpecificationHandle)handle).DecodeSignature(this, null);
                default:
                    return handle.Kind.ToString();
            }
        }

        private string Qualified(StringHandle space, StringHandle name) =>
            space.IsNil || reader.GetString(space).Length == 0 ? reader.GetString(name) : reader.GetString(space) + "." + reader.GetString(name);

        public string GetTypeFromDefinition(MetadataReader r, TypeDefinitionHandle handle, byte rawTypeKind) => TypeName(handle);
        public string GetTypeFromReference(MetadataReader r, TypeReferenceHandle handle, byte rawTypeKind) => TypeName(handle);
        public string GetTypeFromSpecification(MetadataReader r, object? context, TypeSpecificationHandle handle, byte rawTypeKind) => TypeName(handle);
        public string GetPrimitiveType(PrimitiveTypeCode typeCode) => typeCode.ToString();
        public string GetSZArrayType(string elementType) => elementType + "[]";
        public string GetArrayType(string elementType, ArrayShape shape) => $"{elementType}[{new string(',', shape.Rank - 1)}]";
        public string GetByReferenceType(string elementType) => elementType + "&";
        public string GetPointerType(string elementType) => elementType + "*";
        public string GetPinnedType(string elementType) => elementType;
        public string GetModifiedType(string modifier, string unmodifiedType, bool isRequired) => unmodifiedType;
        public string GetGenericInstantiation(string genericType, ImmutableArray<string> typeArguments) => $"{genericType}<{string.Join(",", typeArguments)}>";
        public string GetGenericTypeParameter(object? context, int index) => "!" + index;
        public string GetGenericMethodParameter(object? context, int index) => "!!" + index;
        public string GetFunctionPointerType(MethodSignature<string> signature) => "method*";
    }
}

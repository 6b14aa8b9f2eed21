using System.Text.Json;
using Ertas.Core;

namespace Ertas.Mistral.Checkpoints;

/// <summary>
/// A Hugging Face Mistral checkpoint folder: <c>config.json</c> plus <c>model.safetensors</c> or shards listed in
/// <c>model.safetensors.index.json</c>. Opening validates the folder completely (index, shards, and the tensor set
/// against the config, strictly), so everything after Open can trust it. Shards stay memory-mapped until disposed.
/// </summary>
public sealed class HfCheckpoint : ITensorSource, IDisposable
{
    private readonly List<SafeTensorsFile> _files;
    private readonly Dictionary<string, SafeTensorsFile> _fileOf;

    private HfCheckpoint(string folder, MistralConfig config, List<SafeTensorsFile> files, Dictionary<string, SafeTensorsFile> fileOf)
    {
        Folder = folder;
        Config = config;
        _files = files;
        _fileOf = fileOf;
        TensorNames = config.ExpectedTensors().Select(t => t.Name).ToArray();
        var tokenizer = Path.Combine(folder, CheckpointLayout.TokenizerFileName);
        TokenizerPath = File.Exists(tokenizer) ? tokenizer : null;
    }

    public string Folder { get; }

    public MistralConfig Config { get; }

    /// <summary>Tensor names in Hugging Face order (<see cref="MistralConfig.ExpectedTensors"/>).</summary>
    public IReadOnlyList<string> TensorNames { get; }

    /// <summary>The weight files, in the order the index first names them.</summary>
    public IReadOnlyList<string> WeightFiles => _files.Select(f => f.Path).ToArray();

    /// <summary><c>tokenizer.model</c> in the folder, or null when the folder has none.</summary>
    public string? TokenizerPath { get; }

    public static HfCheckpoint Open(string folder)
    {
        var full = Path.GetFullPath(folder);
        if (!Directory.Exists(full))
            throw new ErtasException(ErrorCode.DirectoryNotFound, $"checkpoint folder '{full}' does not exist", full);
        var config = MistralConfig.Load(full);

        var files = new List<SafeTensorsFile>();
        try
        {
            var fileOf = File.Exists(Path.Combine(full, CheckpointLayout.IndexFileName))
                ? OpenSharded(full, files)
                : OpenSingle(full, files);
            var shapes = fileOf.ToDictionary(kv => kv.Key, kv => kv.Value.Tensors[kv.Key].Shape, StringComparer.Ordinal);
            CheckpointLayout.Verify(config, shapes, full);
            return new HfCheckpoint(full, config, files, fileOf);
        }
        catch
        {
            foreach (var file in files)
                file.Dispose();
            throw;
        }
    }

    public SafeTensorInfo GetInfo(string name)
    {
        if (_fileOf.TryGetValue(name, out var file) && !CheckpointLayout.IsIgnoredBuffer(name))
            return file.Tensors[name];
        throw new ErtasException(ErrorCode.CheckpointMissingTensor, $"checkpoint has no tensor '{name}'", Folder);
    }

    public long[] GetShape(string name) => (long[])GetInfo(name).Shape.Clone();

    public DType GetDType(string name) => GetInfo(name).DType;

    public long GetByteLength(string name) => GetInfo(name).ByteLength;

    public void ReadFloat32(string name, Span<float> destination)
    {
        GetInfo(name);
        _fileOf[name].ReadFloat32(name, destination);
    }

    /// <summary>Converts <c>destination.Length</c> elements from element <paramref name="elementOffset"/> (e.g. a row range).</summary>
    public void ReadFloat32(string name, long elementOffset, Span<float> destination)
    {
        GetInfo(name);
        _fileOf[name].ReadFloat32(name, elementOffset, destination);
    }

    /// <summary>Copies the tensor's stored bytes (its <see cref="GetDType"/>, little-endian) unconverted, for export.</summary>
    public void CopyRaw(string name, Span<byte> destination)
    {
        GetInfo(name);
        _fileOf[name].CopyBytes(name, destination);
    }

    public void CopyRaw(string name, long byteOffset, Span<byte> destination)
    {
        GetInfo(name);
        _fileOf[name].CopyBytes(name, byteOffset, destination);
    }

    /// <summary>The stored bytes without a copy; valid only until this checkpoint is disposed.</summary>
    public ReadOnlySpan<byte> GetRawBytes(string name)
    {
        GetInfo(name);
        return _fileOf[name].GetBytes(name);
    }

    public void Dispose()
    {
        foreach (var file in _files)
            file.Dispose();
    }

    private static Dictionary<string, SafeTensorsFile> OpenSingle(string folder, List<SafeTensorsFile> files)
    {
        var path = Path.Combine(folder, CheckpointLayout.SingleFileName);
        if (!File.Exists(path))
        {
            var hint = Directory.EnumerateFiles(folder, "*.bin").Any()
                ? " (it holds .bin files: convert PyTorch pickles to safetensors first; pickles are not loaded for safety)"
                : "";
            throw new ErtasException(ErrorCode.CheckpointNoWeights,
                $"checkpoint folder has neither {CheckpointLayout.SingleFileName} nor {CheckpointLayout.IndexFileName}{hint}", folder);
        }
        var file = SafeTensorsFile.Open(path);
        files.Add(file);
        return file.Tensors.Keys.ToDictionary(n => n, _ => file, StringComparer.Ordinal);
    }

    private static Dictionary<string, SafeTensorsFile> OpenSharded(string folder, List<SafeTensorsFile> files)
    {
        var indexPath = Path.Combine(folder, CheckpointLayout.IndexFileName);
        var weightMap = ReadWeightMap(indexPath);

        var byShard = weightMap.GroupBy(kv => kv.Value, StringComparer.Ordinal).ToList();
        var shardFiles = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        foreach (var group in byShard)
        {
            var shardPath = Path.Combine(folder, group.Key);
            if (!File.Exists(shardPath))
                throw new ErtasException(ErrorCode.CheckpointShardMissing,
                    $"index maps {group.Count()} tensor(s) (e.g. '{group.First().Key}') to shard '{group.Key}', which is not in the folder", indexPath);
            var shard = SafeTensorsFile.Open(shardPath);
            files.Add(shard);
            shardFiles.Add(group.Key, shard);
        }

        var fileOf = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        foreach (var (name, shardName) in weightMap)
        {
            var shard = shardFiles[shardName];
            if (!shard.Tensors.ContainsKey(name))
                throw new ErtasException(ErrorCode.CheckpointMissingTensor,
                    $"index maps tensor '{name}' to shard '{shardName}', but that shard does not hold it", indexPath);
            fileOf.Add(name, shard);
        }
        // Every tensor a shard holds must be listed, and listed for that shard: a tensor stored twice, or stored
        // where the index does not say, means the shards come from different saves.
        foreach (var (shardName, shard) in shardFiles)
            foreach (var name in shard.TensorNames)
            {
                if (!weightMap.TryGetValue(name, out var listedShard))
                    throw new ErtasException(ErrorCode.SafetensorsIndexInvalid,
                        $"shard '{shardName}' holds tensor '{name}', which the index does not list", indexPath);
                if (listedShard != shardName)
                    throw new ErtasException(ErrorCode.CheckpointDuplicateTensor,
                        $"tensor '{name}' is stored in both '{listedShard}' and '{shardName}'", indexPath);
            }
        return fileOf;
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException e)
        {
            throw new ErtasException(ErrorCode.SafetensorsIndexInvalid, $"index is not valid JSON: {e.Message}", indexPath,
                (int)(e.LineNumber ?? 0) + 1, (int)(e.BytePositionInLine ?? 0) + 1, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ErtasException(ErrorCode.IoFailure, $"cannot read index: {e.Message}", indexPath, inner: e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ErtasException(ErrorCode.SafetensorsIndexInvalid, "index must be an object with a \"weight_map\" object", indexPath);
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new ErtasException(ErrorCode.SafetensorsIndexInvalid,
                        $"weight_map entry '{entry.Name}' must name a shard file, got {entry.Value.ValueKind}", indexPath);
                var shard = entry.Value.GetString()!;
                // Shards are plain names in the folder; anything else could read files outside the checkpoint.
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw new ErtasException(ErrorCode.SafetensorsIndexInvalid,
                        $"weight_map entry '{entry.Name}' names '{shard}', which is not a file name inside the checkpoint folder", indexPath);
                if (!weightMap.TryAdd(entry.Name, shard))
                    throw new ErtasException(ErrorCode.CheckpointDuplicateTensor, $"weight_map lists tensor '{entry.Name}' twice", indexPath);
            }
            if (weightMap.Count == 0)
                throw new ErtasException(ErrorCode.SafetensorsIndexInvalid, "index has an empty weight_map", indexPath);
            return weightMap;
        }
    }
}

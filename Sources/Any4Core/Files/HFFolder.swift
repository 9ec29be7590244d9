#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A Hugging Face model folder: `config.json`, one `model.safetensors` or a sharded set with
/// `model.safetensors.index.json`, and the tokenizer files.
public struct HFFolder: Sendable {
    public let path: String
    /// The safetensors files holding the weights, in shard order.
    public let weightFiles: [String]
    /// `model.safetensors.index.json`, when the weights are sharded with an index.
    public let indexPath: String?
    /// The index's `weight_map`: each stored tensor and the shard file (a name in this folder)
    /// that holds it. Empty without an index.
    public let weightMap: [(tensor: String, shard: String)]
    /// `config.json`, parsed, if present.
    public let config: JSONValue?
    public let tokenizerJSON: String?
    public let vocabTxt: String?

    public init(path: String) throws {
        self.path = path
        let configPath = path + "/config.json"
        config = fileExists(configPath) ? try readJSONFile(configPath) : nil
        let indexFile = path + "/model.safetensors.index.json"
        if fileExists(indexFile) {
            let index = try readJSONFile(indexFile)
            guard let map = index["weight_map"]?.members else {
                throw FileFormatError(file: indexFile, kind: .badHeader, "no \"weight_map\" object")
            }
            var shards: [String] = []
            var weightMap: [(tensor: String, shard: String)] = []
            for (tensor, value) in map {
                guard let shard = value.string, !shard.contains("/"), !shard.isEmpty else {
                    throw FileFormatError(file: indexFile, kind: .badHeader, "weight_map entry is not a file name in this folder", subject: tensor)
                }
                if !shards.contains(shard) { shards.append(shard) }
                weightMap.append((tensor, shard))
            }
            self.indexPath = indexFile
            self.weightMap = weightMap
            shards.sort()
            for shard in shards where !fileExists(path + "/" + shard) {
                throw FileFormatError(file: indexFile, kind: .io, "shard \(shard) is listed but missing from the folder")
            }
            weightFiles = shards.map { path + "/" + $0 }
        } else if fileExists(path + "/model.safetensors") {
            self.indexPath = nil
            weightMap = []
            weightFiles = [path + "/model.safetensors"]
        } else {
            self.indexPath = nil
            weightMap = []
            let found = listDirectory(path).filter { $0.hasSuffix(".safetensors") }.sorted()
            guard !found.isEmpty else {
                throw FileFormatError(
                    file: path, kind: .io,
                    "folder has no model.safetensors, model.safetensors.index.json or other .safetensors file")
            }
            weightFiles = found.map { path + "/" + $0 }
        }
        tokenizerJSON = fileExists(path + "/tokenizer.json") ? path + "/tokenizer.json" : nil
        vocabTxt = fileExists(path + "/vocab.txt") ? path + "/vocab.txt" : nil
    }
}

/// Reads and parses a JSON file.
public func readJSONFile(_ path: String) throws -> JSONValue {
    let store = try ByteStore(mapping: path)
    return try JSONParser.parse(store.bytes, file: path, rejectDuplicateKeys: false)
}

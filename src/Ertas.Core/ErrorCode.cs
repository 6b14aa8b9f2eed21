namespace Ertas.Core;

/// <summary>
/// Every diagnostic code in one place. Numbers are a public contract (users search and NoWarn them):
/// never renumber, only add. Ranges: 1xxx command line and files (11xx GitHub: tokens, releases), 2xxx checkpoints and config,
/// 3xxx tokenizer and templates, 4xxx GGUF, 5xxx modeling, 6xxx datasets, 7xxx training and adapters,
/// 8xxx the MSBuild SDK, 9xxx evals (suites, scoring, snapshots and the gate).
/// </summary>
public enum ErrorCode
{
    // 1xxx: command line, files on disk
    InvalidArgument = 1001,
    MissingArgument = 1002,
    UnknownCommand = 1003,
    FileNotFound = 1004,
    DirectoryNotFound = 1005,
    OutputExists = 1006,
    IoFailure = 1007,
    Cancelled = 1008,

    // 11xx: GitHub (the token, its permissions, releases and their assets, the model lock a release is made from)
    GitHubUnauthorized = 1101,
    GitHubForbidden = 1102,
    GitHubRequestFailed = 1103,
    ReleaseExists = 1110,
    ReleaseTrainKeyChanged = 1111,
    ReleaseAssetStale = 1112,
    ReleaseAssetInvalid = 1113,
    LockInvalid = 1120,
    // 113x: the GitHub Action (ertas github run): its inputs, the events it refuses, the build it runs
    ActionInputInvalid = 1130,
    ActionUntrustedEvent = 1131,
    ActionProjectNotFound = 1132,
    ActionTagMismatch = 1133,

    // 2xxx: Hugging Face checkpoints and config.json
    ConfigMissing = 2001,
    ConfigInvalidJson = 2002,
    ConfigMissingField = 2003,
    ConfigInvalidField = 2004,
    ConfigContradiction = 2005,
    SafetensorsTruncated = 2010,
    SafetensorsCorruptHeader = 2011,
    SafetensorsUnsupportedDtype = 2012,
    SafetensorsIndexInvalid = 2013,
    CheckpointMissingTensor = 2020,
    CheckpointUnexpectedTensor = 2021,
    CheckpointShapeMismatch = 2022,
    CheckpointDuplicateTensor = 2023,
    CheckpointShardMissing = 2024,
    CheckpointNoWeights = 2025,

    // 3xxx: tokenizer and chat templates
    TokenizerMissing = 3001,
    TokenizerCorrupt = 3002,
    TokenizerVocabMismatch = 3003,
    UnknownTemplate = 3010,
    InvalidConversation = 3011,
    ChatFileInvalidJson = 3012,
    ChatFileMissingField = 3013,
    TemplateTokenizerMismatch = 3014,
    TemplateHasNoTools = 3015,
    InvalidToolCall = 3016,

    // 4xxx: GGUF
    GgufBadMagic = 4001,
    GgufUnsupportedVersion = 4002,
    GgufTruncated = 4003,
    GgufCorrupt = 4004,
    GgufDuplicateKey = 4005,
    GgufDuplicateTensor = 4006,
    GgufUnsupportedType = 4007,
    GgufMissingKey = 4008,
    GgufWrongArchitecture = 4009,
    GgufMissingTensor = 4010,
    GgufUnsupportedModel = 4011,

    // 5xxx: modeling and native runtime
    NativeLibraryLoad = 5001,
    UnsupportedDtype = 5002,
    ModelInputInvalid = 5003,
    DeviceUnavailable = 5004,

    // 6xxx: training datasets (JSONL validation, preparation, cache); warnings share this range
    DatasetInvalidJson = 6001,
    DatasetInvalidUtf8 = 6002,
    DatasetUnknownFormat = 6003,
    DatasetMixedFormats = 6004,
    DatasetMissingField = 6005,
    DatasetInvalidField = 6006,
    DatasetUnknownRole = 6007,
    DatasetRolesNotAlternating = 6008,
    DatasetMisplacedSystem = 6009,
    DatasetEmptyContent = 6010,
    DatasetExampleTooLong = 6011,
    DatasetDuplicateExample = 6012,
    DatasetNoExamples = 6013,
    DatasetFileUnreadable = 6014,
    DatasetHasErrors = 6020,
    DatasetInvalidOption = 6021,
    DatasetCacheUnreadable = 6022,

    // 7xxx: training runs, checkpoints and resume, adapters and merging
    TrainingConfigInvalid = 7001,
    CheckpointInvalid = 7010,
    ResumeMismatch = 7011,
    AdapterMissing = 7020,
    AdapterInvalid = 7021,
    AdapterBaseMismatch = 7022,

    // 8xxx: the MSBuild SDK (.ertasproj properties and items, build stages)
    ProjectPropertyInvalid = 8001,
    ProjectItemInvalid = 8002,
    BuildStageFailed = 8003,
    BuildFileAccessFailed = 8004,
    InsufficientDiskSpace = 8005,

    // 9xxx: evals. 90xx a suite file (every problem reported at once, nothing scored), 91xx scoring,
    // 92xx snapshots and the gate; warnings share this range.
    EvalInvalidJson = 9001,
    EvalInvalidUtf8 = 9002,
    EvalMissingField = 9003,
    EvalInvalidField = 9004,
    EvalUnknownKey = 9005,
    EvalUnknownAssert = 9006,
    EvalInvalidAssert = 9007,
    EvalDuplicateId = 9008,
    EvalAnswerOutOfRange = 9009,
    EvalCaseTooLong = 9010,
    EvalNoCases = 9011,
    EvalFileUnreadable = 9012,
    EvalInvalidConversation = 9013,
    EvalToolsUnsupported = 9014,
    EvalSuiteHasErrors = 9020,
    EvalChoicesTied = 9101,
    EvalModelUnusable = 9102,
    EvalRegression = 9201,
    EvalPassRateBelowFloor = 9202,
    EvalRuleBroken = 9203,
    EvalNoBaseline = 9204,
    EvalDrift = 9205,
    EvalSnapshotInvalid = 9206,
    EvalInvalidRule = 9207,
}

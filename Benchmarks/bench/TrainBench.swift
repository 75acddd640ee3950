import ArgumentParser
import Foundation
import Kiln

/// `bench train --dataset fashion-mnist`: trains seed 003's CNN pattern
/// ([conv 3×3 → ReLU → max-pool 2]×2 → linear → ReLU → linear) with Adam on Fashion-MNIST, with
/// progress, per-epoch test accuracy, a final confusion matrix, and a checkpoint that is
/// reloaded and re-evaluated.
struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train seed 003's CNN on Fashion-MNIST, or a character-level Transformer on fortunes, with Adam.")

    @Option(help: "Data set: fashion-mnist or fortunes.")
    var dataset: String = "fashion-mnist"
    @Option(help: "Which backend trains: cpu, opencl or all (one run after the other).")
    var backend: BackendChoice = .cpu
    @Option(help: "OpenCL device index.")
    var device: Int = 0
    @Option(help: "Epochs (default: 5 for fashion-mnist, 4 for fortunes).")
    var epochs: Int?
    @Option(name: .customLong("batch-size"), help: "Mini-batch size (default: 64 images; 32 sequences).")
    var batchSize: Int?
    @Option(help: "Adam(W) learning rate (default: 1e-3).")
    var lr: Double = 1e-3
    @Option(help: "Convolution channels per block, comma-separated.")
    var channels: String = "16,32"
    @Option(help: "Hidden units of the first linear layer.")
    var hidden: Int = 128
    @Option(help: "Seed for initialisation and shuffling.")
    var seed: UInt64 = 0
    @Option(help: "Use only the first N training images (default: all 60,000).")
    var limit: Int?
    @Option(name: .customLong("test-limit"), help: "Use only the first N test images (default: all 10,000).")
    var testLimit: Int?
    @Option(help: "Directory of the IDX files.")
    var data: String = FashionMNIST.defaultDirectory.path
    @Option(help: "Checkpoint path (safetensors); '{backend}' is replaced by the backend name.")
    var checkpoint: String = ".build/kiln-{dataset}-{backend}.safetensors"
    @OptionGroup var language: LanguageModelOptions

    var epochCount: Int { epochs ?? (dataset == "fortunes" ? 4 : 5) }
    var batch: Int { batchSize ?? (dataset == "fortunes" ? 32 : 64) }

    func validate() throws {
        guard ["fashion-mnist", "fortunes"].contains(dataset) else {
            throw ValidationError("unknown --dataset '\(dataset)'; available: fashion-mnist, fortunes")
        }
        guard epochCount > 0, batch > 0, hidden > 0 else { throw ValidationError("--epochs, --batch-size and --hidden must be positive") }
        try language.validate()
        guard lr.isFinite, lr > 0 else { throw ValidationError("--lr must be a positive number, got \(lr)") }
        guard !channelList.isEmpty, channelList.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--channels needs positive integers like 16,32, got '\(channels)'")
        }
        if let limit, limit <= 0 { throw ValidationError("--limit must be positive") }
        if let testLimit, testLimit <= 0 { throw ValidationError("--test-limit must be positive") }
    }

    var channelList: [Int] { channels.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        if dataset == "fortunes" { return try runFortunes() }
        let directory = URL(fileURLWithPath: data, isDirectory: true)
        let loadStart = Date()
        let train = try FashionMNIST(split: .train, directory: directory, limit: limit, normalization: FashionMNIST.normalization)
        let test = try FashionMNIST(split: .test, directory: directory, limit: testLimit, normalization: FashionMNIST.normalization)
        let (backends, cl) = try selectedBackends(backend, device: device)
        for line in MachineHeader.lines(openCL: cl) { emit(line) }
        emit(String(format: "fashion-mnist: %d train / %d test images loaded in %.2f s from %@",
                     train.count, test.count, Date().timeIntervalSince(loadStart), directory.path))
        var summaries: [String] = []
        for (name, b) in backends {
            summaries.append(try trainModel(on: b, name: name, train: train, test: test))
        }
        emit("\nsummary")
        for s in summaries { emit(s) }
    }

    /// Trains one model on `backend` and returns its summary line.
    func trainModel(on backend: any Backend, name: String, train: FashionMNIST, test: FashionMNIST) throws -> String {
        let model = try convolutionalClassifier(inputChannels: 1, imageSize: (28, 28), channels: channelList, hidden: hidden,
                                                classes: 10, seed: seed, on: backend)
        let optimizer = try Adam(model.parameters(), learningRate: lr)
        let trainLoader = try DataLoader(train, batchSize: batch, shuffle: true, seed: seed, on: backend)
        let testLoader = try DataLoader(test, batchSize: 500, on: backend)
        emit("\n[\(name)] \(backend.deviceName): CNN channels \(channelList), hidden \(hidden), \(model.parameterCount) parameters; Adam lr \(lr), batch \(batch), \(epochCount) epoch(s)")
        let interactive = isatty(1) != 0
        var epochSeconds: [Double] = []
        for epoch in 0..<epochCount {
            var lastPrint = Date.distantPast
            let s = try trainClassifierEpoch(model, optimizer: optimizer, loader: trainLoader, epoch: epoch) { p in
                let now = Date()
                guard p.batch == p.batches || now.timeIntervalSince(lastPrint) >= (interactive ? 0.5 : 10) else { return }
                lastPrint = now
                let line = String(format: "[%@] epoch %d/%d  batch %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ETA %.0f s",
                                  name, epoch + 1, epochCount, p.batch, p.batches, p.loss, 100 * p.accuracy,
                                  Double(p.samples) / max(p.seconds, 1e-9), p.secondsLeft)
                emit(interactive ? "\r" + line : line, newline: !interactive)
            }
            if interactive { emit("") }
            epochSeconds.append(s.seconds)
            let (t, _) = try evaluateClassifier(model, loader: testLoader, classes: 10)
            emit(String(format: "[%@] epoch %d: train loss %.4f, train acc %.2f%%, test loss %.4f, test acc %.2f%%, %.1f s (%.0f img/s)",
                         name, epoch + 1, s.loss, 100 * s.accuracy, t.loss, 100 * t.accuracy, s.seconds, s.throughput))
        }
        let (final, confusion) = try evaluateClassifier(model, loader: testLoader, classes: 10)
        emit("[\(name)] confusion matrix on \(final.samples) test images (rows: true class, columns: predicted):")
        emit(confusion.formatted(classNames: FashionMNIST.classNames))
        let path = checkpointPath(backend: name)
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Checkpoint.save(model: model, optimizer: optimizer, metadata: ["dataset": dataset, "epochs": "\(epochCount)"], to: url)
        let reloaded = try convolutionalClassifier(inputChannels: 1, imageSize: (28, 28), channels: channelList, hidden: hidden,
                                                   classes: 10, seed: seed &+ 1000, on: backend)
        _ = try Checkpoint.load(into: reloaded, from: url)
        let (again, _) = try evaluateClassifier(reloaded, loader: testLoader, classes: 10)
        let same = again.accuracy == final.accuracy
        emit(String(format: "[%@] checkpoint %@ reloaded into a fresh model: test acc %.2f%% (%@)", name, path,
                     100 * again.accuracy, same ? "same as before saving" : "DIFFERS from \(100 * final.accuracy)%"))
        guard same else { throw ValidationErrorMessage("reloaded checkpoint gives a different accuracy") }
        let meanEpoch = epochSeconds.reduce(0, +) / Double(epochSeconds.count)
        return String(format: "%-7@ test accuracy %.2f%% after %d epoch(s), %.1f s/epoch (%.0f img/s), %@", name,
                      100 * final.accuracy, epochCount, meanEpoch, Double(train.count) / meanEpoch, backend.deviceName)
    }
}

extension TrainBench {
    /// The checkpoint path for one backend's run.
    func checkpointPath(backend: String) -> String {
        checkpoint.replacingOccurrences(of: "{backend}", with: backend).replacingOccurrences(of: "{dataset}", with: dataset)
    }
}

/// Writes `text` to standard output unbuffered, so progress shows at once even when redirected.
func emit(_ text: String, newline: Bool = true) {
    FileHandle.standardOutput.write(Data((newline ? text + "\n" : text).utf8))
}

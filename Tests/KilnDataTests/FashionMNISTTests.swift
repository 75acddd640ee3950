import Foundation
import Kiln
import Testing

// Fashion-MNIST from the Debian package dataset-fashion-mnist (installed by scripts/setup, so present
// here and in CI), checked against the raw files as decompressed by the system gzip tool.

private let directory = FashionMNIST.defaultDirectory
private let filesPresent = FileManager.default.fileExists(
    atPath: directory.appendingPathComponent("train-images-idx3-ubyte.gz").path)

/// The decompressed raw file, by `gzip -dc`.
private func raw(_ name: String) throws -> [UInt8] {
    try runGzip(["-dc", directory.appendingPathComponent(name + ".gz").path])
}

/// Loaded once and shared: the full training set takes a moment in a debug build.
private let train = Result { try FashionMNIST(split: .train) }
private let rawTrainImages = Result { try raw("train-images-idx3-ubyte") }

@Suite(.enabled(if: filesPresent, "dataset-fashion-mnist is not installed (run scripts/setup)"))
struct FashionMNISTTests {
    @Test func trainSplitMatchesTheRawFiles() throws {
        let train = try train.get()
        let images = try rawTrainImages.get()
        let labels = try raw("train-labels-idx1-ubyte")
        // The raw headers, read by hand: 2051 = 0x0803 (ubyte, rank 3), 2049 = 0x0801.
        #expect(Array(images[0..<16]) == [0, 0, 8, 3] + bigEndian32(60000) + bigEndian32(28) + bigEndian32(28))
        #expect(Array(labels[0..<8]) == [0, 0, 8, 1] + bigEndian32(60000))

        #expect(train.count == 60000)
        #expect(train.split == .train)
        #expect(train.imageShape == [1, 28, 28])
        #expect(train.images.count == 60000 * 784)
        #expect(train.labels.count == 60000)
        #expect(labels[8] == 9, "the first training image is an ankle boot")
        #expect(train.labels[0] == Float(labels[8]))
        #expect(train.labels == labels[8...].map(Float.init))
        #expect(train.labels.allSatisfy { $0 >= 0 && $0 <= 9 && $0 == $0.rounded() })
        #expect(Set(train.labels).count == 10)
        #expect(train.images.min() == 0 && train.images.max() == 1)
        let pixels = Array(images[16...])
        #expect(pixels.count == train.images.count)
        let mismatch = train.images.indices.first { train.images[$0] != Float(pixels[$0]) / 255 }
        #expect(mismatch == nil, "pixel \(mismatch ?? -1) differs from the raw file")
    }

    @Test func testSplit() throws {
        let test = try FashionMNIST(split: .test)
        let labels = try raw("t10k-labels-idx1-ubyte")
        #expect(test.count == 10000)
        #expect(test.images.count == 10000 * 784)
        #expect(test.labels == labels[8...].map(Float.init))
        #expect(test.labels.prefix(3) == [9, 2, 1])
        #expect(test.images.allSatisfy { $0 >= 0 && $0 <= 1 })
        #expect(test.classNames[9] == "Ankle boot" && test.classNames[0] == "T-shirt/top")
        #expect(FashionMNIST.classNames.count == 10)
    }

    /// The published constants are the training set's pixel mean and population std.
    @Test func normalizationConstantsAreTheTrainingStatistics() throws {
        let pixels = try rawTrainImages.get()[16...]
        var histogram = [Int](repeating: 0, count: 256)
        for p in pixels { histogram[Int(p)] += 1 }
        let n = Double(pixels.count)
        let mean = histogram.enumerated().reduce(0.0) { $0 + Double($1.offset) * Double($1.element) } / n / 255
        let meanSquare = histogram.enumerated().reduce(0.0) { $0 + Double($1.offset * $1.offset) * Double($1.element) } / n / 65025
        let std = (meanSquare - mean * mean).squareRoot()
        #expect(abs(Double(FashionMNIST.normalization.mean) - mean) < 1e-6, "mean \(mean)")
        #expect(abs(Double(FashionMNIST.normalization.std) - std) < 1e-6, "std \(std)")

        let normalized = try FashionMNIST(split: .train, limit: 500, normalization: FashionMNIST.normalization)
        let plain = try train.get()
        for i in stride(from: 0, to: 500 * 784, by: 97) {
            let expected = (plain.images[i] - FashionMNIST.normalization.mean) / FashionMNIST.normalization.std
            #expect(normalized.images[i] == expected, "pixel \(i)")
        }
    }

    @Test func limitReadsTheFirstSamples() throws {
        let head = try FashionMNIST(split: .train, limit: 100)
        let full = try train.get()
        #expect(head.count == 100)
        #expect(head.images == Array(full.images.prefix(100 * 784)))
        #expect(head.labels == Array(full.labels.prefix(100)))
        #expect(try FashionMNIST(split: .test, limit: 0).count == 0)
        #expect(throws: DatasetError.self) { try FashionMNIST(split: .test, limit: -1) }
        #expect(throws: DatasetError.self) {
            try FashionMNIST(split: .test, limit: 1, normalization: Normalization(mean: 0, std: 0))
        }
    }

    @Test func uncompressedFilesWork() throws {
        let copy = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: copy) }
        for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
            try Data(try raw(name)).write(to: copy.appendingPathComponent(name))
        }
        let fromPlain = try FashionMNIST(split: .test, directory: copy)
        let fromPackage = try FashionMNIST(split: .test)
        #expect(fromPlain.images == fromPackage.images)
        #expect(fromPlain.labels == fromPackage.labels)
    }
}

@Suite struct FashionMNISTErrorTests {
    @Test func missingFilesNameThePackage() throws {
        let empty = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: empty) }
        do {
            _ = try FashionMNIST(split: .train, directory: empty)
            Issue.record("loading from an empty directory succeeded")
        } catch let error as DatasetError {
            #expect(error.kind == .missingFiles)
            #expect(error.message.contains("dataset-fashion-mnist"))
            #expect(error.message.contains("sudo apt-get install dataset-fashion-mnist"))
            #expect(error.message.contains("scripts/setup"))
            #expect(error.message.contains(empty.appendingPathComponent("train-images-idx3-ubyte.gz").path))
        }
    }

    @Test func mismatchedCountsAndBadLabelsThrow() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func idx(_ type: UInt8, _ shape: [Int], _ payload: [UInt8]) -> Data {
            Data([0, 0, type, UInt8(shape.count)] + shape.flatMap { bigEndian32(UInt32($0)) } + payload)
        }
        let images = dir.appendingPathComponent("images")
        let labels = dir.appendingPathComponent("labels")
        try idx(8, [3, 2, 2], [UInt8](repeating: 255, count: 12)).write(to: images)

        try idx(8, [2], [0, 1]).write(to: labels)
        #expect(throws: DatasetError.self) {
            try MNISTStyleDataset(imagesFile: images, labelsFile: labels, classNames: ["a", "b"])
        }
        try idx(8, [3], [0, 1, 2]).write(to: labels)
        do {
            _ = try MNISTStyleDataset(imagesFile: images, labelsFile: labels, classNames: ["a", "b"])
            Issue.record("label 2 with two classes was accepted")
        } catch let error as DatasetError {
            #expect(error.message.contains("label 2 of sample 2"))
        }
        let ok = try MNISTStyleDataset(imagesFile: images, labelsFile: labels, classNames: ["a", "b", "c"])
        #expect(ok.imageShape == [1, 2, 2])
        #expect(ok.images == [Float](repeating: 1, count: 12))
        #expect(ok.labels == [0, 1, 2])
        // Fashion-MNIST insists on 28×28.
        try FileManager.default.moveItem(at: images, to: dir.appendingPathComponent("train-images-idx3-ubyte"))
        try FileManager.default.moveItem(at: labels, to: dir.appendingPathComponent("train-labels-idx1-ubyte"))
        #expect(throws: DatasetError.self) { try FashionMNIST(split: .train, directory: dir) }
    }
}

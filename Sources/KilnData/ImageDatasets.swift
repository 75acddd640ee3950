import Foundation

/// Standardisation of inputs, `x ↦ (x − mean) / std`, applied after scaling pixels to [0, 1].
public struct Normalization: Sendable, Equatable, CustomStringConvertible {
    public let mean: Float
    public let std: Float

    /// Standardise with `mean` and `std` (checked when a data set is loaded: finite, std > 0).
    public init(mean: Float, std: Float) {
        self.mean = mean
        self.std = std
    }

    public var description: String { "Normalization(mean: \(mean), std: \(std))" }

    func validate(context: String) throws {
        guard mean.isFinite, std.isFinite, std > 0 else {
            throw DatasetError(.invalidArgument, context: context,
                               "normalization needs a finite mean and a finite std > 0, got mean \(mean), std \(std)")
        }
    }
}

/// An image-classification data set held in memory.
public protocol ImageClassificationDataset: Sendable {
    /// The number of samples.
    var count: Int { get }
    /// The shape of one image, `[channels, height, width]`.
    var imageShape: [Int] { get }
    /// Every image, row-major `[count, channels, height, width]`.
    var images: [Float] { get }
    /// Each sample's class index as a Float, the target format of `crossEntropy(logits:targets:)`.
    var labels: [Float] { get }
    /// The name of each class, indexed by label.
    var classNames: [String] { get }
}

/// A data set in the MNIST layout: an IDX file of uint8 images `[N, H, W]` (or `[N, C, H, W]`)
/// and an IDX file of uint8 labels `[N]`, each gzip-compressed or not.
///
/// Pixels are scaled to [0, 1] as `b / 255` (rounded to nearest Float), then standardised by
/// `normalization` when one is given. Images are `[N, 1, H, W]` for rank-3 files.
public struct MNISTStyleDataset: ImageClassificationDataset {
    public let images: [Float]
    public let labels: [Float]
    public let imageShape: [Int]
    public let classNames: [String]
    public var count: Int { labels.count }

    /// Loads the images and labels files.
    /// - Parameters:
    ///   - imagesFile: uint8 IDX `[N, H, W]` or `[N, C, H, W]`.
    ///   - labelsFile: uint8 IDX `[N]`, every value in `0..<classNames.count`.
    ///   - classNames: one name per class (at least one).
    ///   - limit: keep only the first `limit` samples (≥ 0); `nil` keeps all.
    ///   - normalization: standardise the [0, 1] pixels with this mean and std.
    /// - Throws: `DatasetError`: `.missingFiles` for a file that cannot be read, `.corruptData` or
    ///   `.badFormat` for bad contents (wrong types or ranks, differing counts, a label out of
    ///   range), `.invalidArgument` for a negative limit, no class names or std ≤ 0.
    public init(imagesFile: URL, labelsFile: URL, classNames: [String], limit: Int? = nil,
                normalization: Normalization? = nil) throws {
        let context = "MNISTStyleDataset"
        guard !classNames.isEmpty else {
            throw DatasetError(.invalidArgument, context: context, "needs at least one class name")
        }
        if let limit, limit < 0 {
            throw DatasetError(.invalidArgument, context: context, "limit must be ≥ 0, got \(limit)")
        }
        try normalization?.validate(context: context)

        let imageArray = try IDXArray(contentsOf: imagesFile, limit: limit)
        guard imageArray.elementType == .uint8, imageArray.shape.count == 3 || imageArray.shape.count == 4 else {
            throw DatasetError(.badFormat, context: imagesFile.path,
                               "images must be uint8 of rank 3 [N, H, W] or 4 [N, C, H, W], got \(imageArray.elementType) of shape \(imageArray.shape)")
        }
        let labelArray = try IDXArray(contentsOf: labelsFile, limit: limit)
        guard labelArray.elementType == .uint8, labelArray.shape.count == 1 else {
            throw DatasetError(.badFormat, context: labelsFile.path,
                               "labels must be uint8 of rank 1 [N], got \(labelArray.elementType) of shape \(labelArray.shape)")
        }
        guard labelArray.shape[0] == imageArray.shape[0] else {
            throw DatasetError(.badFormat, context: labelsFile.path,
                               "\(labelArray.shape[0]) labels for \(imageArray.shape[0]) images in \(imagesFile.path)")
        }
        let labels = labelArray.scalars()
        if let bad = labels.firstIndex(where: { $0 >= Float(classNames.count) }) {
            throw DatasetError(.badFormat, context: labelsFile.path,
                               "label \(Int(labels[bad])) of sample \(bad) is not a class index in 0..<\(classNames.count)")
        }

        let table = (0..<256).map { b -> Float in
            let x = Float(b) / 255
            guard let normalization else { return x }
            return (x - normalization.mean) / normalization.std
        }
        self.images = imageArray.mappedBytes(table)
        self.labels = labels
        let dimensions = Array(imageArray.shape.dropFirst())
        self.imageShape = dimensions.count == 2 ? [1] + dimensions : dimensions
        self.classNames = classNames
    }

    /// The file `name.gz` in `directory` if it exists, else `name`, else nil.
    public static func locate(_ name: String, in directory: URL) -> URL? {
        for candidate in [name + ".gz", name] {
            let url = directory.appendingPathComponent(candidate)
            if FileManager.default.isReadableFile(atPath: url.path) { return url }
        }
        return nil
    }
}

/// Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): 28×28 grey images of clothing in ten classes,
/// 60,000 for training and 10,000 for testing, in the MNIST file layout.
///
/// The files come from the Debian package `dataset-fashion-mnist`
/// (`sudo apt-get install dataset-fashion-mnist`, or `scripts/setup`), which installs them
/// gzip-compressed in `/usr/share/datasets/fashion-mnist`. Uncompressed copies (the same names
/// without `.gz`) work too.
///
/// ```swift
/// let train = try FashionMNIST(split: .train, normalization: FashionMNIST.normalization)
/// let loader = try DataLoader(train, batchSize: 128, shuffle: true, seed: 1, on: CPUBackend.shared)
/// ```
public struct FashionMNIST: ImageClassificationDataset {
    /// Which of the two sets of files: 60,000 training or 10,000 test samples.
    public enum Split: String, Sendable, CaseIterable {
        case train
        case test

        /// The file-name prefix: `train` or `t10k`.
        public var filePrefix: String { self == .train ? "train" : "t10k" }
    }

    /// Where the Debian package installs the files.
    public static let defaultDirectory = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist", isDirectory: true)

    /// The ten classes, indexed by label.
    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    /// The mean and population standard deviation of every pixel of the 60,000 training images
    /// scaled to [0, 1], computed by Kiln from the files of `dataset-fashion-mnist`
    /// (0.28604060 and 0.35302424; in Float64 from the exact pixel histogram).
    public static let normalization = Normalization(mean: 0.28604060, std: 0.35302424)

    /// The split these samples come from.
    public let split: Split
    /// Images `[count, 1, 28, 28]`, row-major, in [0, 1] unless normalised.
    public let images: [Float]
    /// Class indices 0...9 as Float.
    public let labels: [Float]
    public var count: Int { labels.count }
    public var imageShape: [Int] { [1, 28, 28] }
    public var classNames: [String] { Self.classNames }

    /// The names of a split's images and labels files, without `.gz`.
    public static func fileNames(_ split: Split) -> (images: String, labels: String) {
        ("\(split.filePrefix)-images-idx3-ubyte", "\(split.filePrefix)-labels-idx1-ubyte")
    }

    /// Loads one split.
    /// - Parameters:
    ///   - split: `.train` (60,000 samples) or `.test` (10,000).
    ///   - directory: holds `train-images-idx3-ubyte.gz` and the rest, compressed or not.
    ///   - limit: keep only the first `limit` samples (≥ 0); only that much is decompressed.
    ///   - normalization: e.g. `FashionMNIST.normalization`; `nil` leaves pixels in [0, 1].
    /// - Throws: `DatasetError.missingFiles` naming the package `dataset-fashion-mnist` when a
    ///   file is absent; other `DatasetError`s for corrupt files or invalid arguments.
    public init(split: Split, directory: URL = FashionMNIST.defaultDirectory, limit: Int? = nil,
                normalization: Normalization? = nil) throws {
        let names = Self.fileNames(split)
        let located = [names.images, names.labels].map { MNISTStyleDataset.locate($0, in: directory) }
        guard let imagesFile = located[0], let labelsFile = located[1] else {
            let missing = zip([names.images, names.labels], located).filter { $0.1 == nil }
                .map { directory.appendingPathComponent($0.0 + ".gz").path }
            throw DatasetError(.missingFiles, context: "FashionMNIST",
                               "missing \(missing.joined(separator: " and ")) (or the same without .gz). "
                               + "Install the Debian package dataset-fashion-mnist: sudo apt-get install dataset-fashion-mnist "
                               + "(or run scripts/setup), or pass directory: with the IDX files.")
        }
        let dataset = try MNISTStyleDataset(imagesFile: imagesFile, labelsFile: labelsFile, classNames: Self.classNames,
                                            limit: limit, normalization: normalization)
        guard dataset.imageShape == [1, 28, 28] else {
            throw DatasetError(.badFormat, context: imagesFile.path,
                               "Fashion-MNIST images are 28×28, the file holds images of shape \(dataset.imageShape)")
        }
        self.split = split
        self.images = dataset.images
        self.labels = dataset.labels
    }
}

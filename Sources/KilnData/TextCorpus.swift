import Foundation
import KilnCore

/// The fortune-cookie files of the Debian package `fortunes`: a small English text corpus of
/// about 15,000 quotations, jokes and verses (some 2.7 MB), for character-level language models.
///
/// The package (`sudo apt-get install fortunes`, or `scripts/setup`) installs one text file per
/// topic in `/usr/share/games/fortunes` (`art`, `computers`, …, `zippy`), each a list of fortunes
/// separated by lines holding only `%`, beside a `.dat` index (binary, made by `strfile`) and a
/// `.u8` symbolic link to the same text.
///
/// **Which files.** By default every regular file directly in `directory`, in ascending order of
/// name, except names ending in `.dat` or `.u8`, hidden files, symbolic links (the `.u8` links
/// would read every file twice) and subdirectories. Subdirectories are left out on purpose:
/// `off/` is where the separate package `fortunes-off` puts its offensive fortunes (ROT13-encoded),
/// and other packages put translations in `fr/`, `de/` and the like. Pass `files:` to choose
/// (paths relative to `directory`, `off/…` included); they are read in the order given.
///
/// **Decoding.** Files are read as UTF-8. Invalid bytes do not fail the load: each maximal invalid
/// subsequence becomes one U+FFFD REPLACEMENT CHARACTER (the Unicode "maximal subpart" practice,
/// as `String(decoding:as:)`), and the file is listed in `filesWithInvalidUTF8`. (The files of
/// `fortunes` 1:1.99.1 are all valid UTF-8; a few hold double-encoded characters and ASCII
/// control characters such as backspace for overstriking, kept as they are.)
///
/// **Splitting.** See `parse(_:)`: lines that are exactly `%` separate fortunes, CR LF becomes LF,
/// trailing blank lines are dropped and blank entries skipped.
///
/// ```swift
/// let corpus = try FortunesCorpus()
/// let vocabulary = CharacterVocabulary(text: corpus.text)
/// let (train, validation) = try corpus.split(validationFraction: 0.1, seed: 1)
/// let trainTokens = try vocabulary.encode(FortunesCorpus.text(of: train))
/// ```
public struct FortunesCorpus: Sendable {
    /// Where the Debian package installs the files.
    public static let defaultDirectory = URL(fileURLWithPath: "/usr/share/games/fortunes", isDirectory: true)

    /// What follows each fortune in `text(of:)`: a newline, `%` and a newline, as in the files, so
    /// a model learns where a fortune ends and a sampler can stop at `"\n%\n"`.
    public static let separator = "\n%\n"

    /// The directory the files were read from.
    public let directory: URL
    /// The files read, relative to `directory`, in reading order.
    public let files: [String]
    /// How many fortunes each of `files` gave.
    public let fortunesPerFile: [Int]
    /// Every fortune, file by file in the order of `files`, each in file order.
    public let fortunes: [String]
    /// The files that held bytes that are not UTF-8 (decoded with U+FFFD in their place).
    public let filesWithInvalidUTF8: [String]

    /// The number of fortunes.
    public var count: Int { fortunes.count }

    /// Every fortune followed by `separator`: the corpus as one string for a character vocabulary
    /// (built anew on each access, about 2.7 MB for the Debian files).
    public var text: String { Self.text(of: fortunes) }

    /// Reads and splits the fortune files.
    /// - Parameters:
    ///   - directory: where the files are; the Debian package's directory by default.
    ///   - files: the files to read, relative to `directory`, in this order; `nil` reads every
    ///     regular file directly in `directory` except `*.dat`, `*.u8`, hidden files and symbolic
    ///     links, in ascending order of name.
    /// - Throws: `DatasetError.missingFiles` (context `FortunesCorpus`) naming the package
    ///   `fortunes` when the directory, a listed file or any fortune file is missing or unreadable;
    ///   `.invalidArgument` for an empty `files` list.
    public init(directory: URL = FortunesCorpus.defaultDirectory, files: [String]? = nil) throws {
        let context = "FortunesCorpus"
        let install = "Install the Debian package fortunes: sudo apt-get install fortunes (or run scripts/setup), "
            + "or pass directory: with fortune files."
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(.missingFiles, context: context, "no directory \(directory.path). " + install)
        }
        let names: [String]
        if let files {
            guard !files.isEmpty else {
                throw DatasetError(.invalidArgument, context: context, "files: is empty; pass nil to read every fortune file")
            }
            let missing = files.filter { !manager.isReadableFile(atPath: directory.appendingPathComponent($0).path) }
            guard missing.isEmpty else {
                throw DatasetError(.missingFiles, context: context,
                                   "missing \(missing.map { directory.appendingPathComponent($0).path }.joined(separator: ", ")). " + install)
            }
            names = files
        } else {
            let entries = (try? manager.contentsOfDirectory(atPath: directory.path)) ?? []
            names = entries.filter { name in
                guard !name.hasPrefix("."), !name.hasSuffix(".dat"), !name.hasSuffix(".u8") else { return false }
                let path = directory.appendingPathComponent(name).path
                let type = (try? manager.attributesOfItem(atPath: path))?[.type] as? FileAttributeType
                return type == .typeRegular && manager.isReadableFile(atPath: path)
            }.sorted()
            guard !names.isEmpty else {
                throw DatasetError(.missingFiles, context: context, "no fortune files in \(directory.path). " + install)
            }
        }

        var fortunes = [String]()
        var perFile = [Int]()
        var invalid = [String]()
        for name in names {
            let url = directory.appendingPathComponent(name)
            guard let data = try? Data(contentsOf: url) else {
                throw DatasetError(.missingFiles, context: context, "cannot read \(url.path). " + install)
            }
            let (text, replacements) = Self.decodeUTF8(data)
            if replacements > 0 { invalid.append(name) }
            let parsed = Self.parse(text)
            fortunes += parsed
            perFile.append(parsed.count)
        }
        self.directory = directory
        self.files = names
        self.fortunesPerFile = perFile
        self.fortunes = fortunes
        self.filesWithInvalidUTF8 = invalid
    }

    /// Splits the text of one fortune file into fortunes.
    ///
    /// The text is cut into lines at LF; a CR ending a line is removed (CR LF files read like LF
    /// files). A line that is exactly `%` ends a fortune; the lines between two such lines are
    /// joined with LF. Trailing lines that are empty or only white space are dropped, and an entry
    /// with nothing but white space (the empty entry after a final `%`, `%` lines in a row) is
    /// skipped. Everything else is kept verbatim, leading spaces of ASCII art included. A file
    /// that does not end in `%` still gives its last fortune.
    /// - Returns: the fortunes in file order, none empty, none ending in a newline.
    public static func parse(_ text: String) -> [String] {
        var fortunes = [String]()
        var lines = [Substring.UnicodeScalarView]()
        func finish() {
            while let last = lines.last, last.allSatisfy({ $0.properties.isWhitespace }) { lines.removeLast() }
            if !lines.isEmpty {
                var fortune = String.UnicodeScalarView()
                for (i, line) in lines.enumerated() {
                    if i > 0 { fortune.append("\n") }
                    fortune.append(contentsOf: line)
                }
                fortunes.append(String(fortune))
            }
            lines.removeAll(keepingCapacity: true)
        }
        for var line in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.last == "\r" { line.removeLast() }
            if line.count == 1 && line.first == "%" {
                finish()
            } else {
                lines.append(Substring.UnicodeScalarView(line))
            }
        }
        finish()
        return fortunes
    }

    /// The fortunes as one string, each followed by `separator` (`"\n%\n"`).
    public static func text(of fortunes: [String]) -> String {
        var text = ""
        text.reserveCapacity(fortunes.reduce(0) { $0 + $1.utf8.count + 3 })
        for fortune in fortunes {
            text += fortune
            text += separator
        }
        return text
    }

    /// Splits the fortunes into training and validation fortunes with `trainValidationSplit`.
    /// - Parameters:
    ///   - validationFraction: in [0, 1]; 0.1 holds out 10 %.
    ///   - seed: the Philox key of the permutation.
    /// - Returns: both parts, each in corpus order.
    /// - Throws: `DatasetError.invalidArgument` for a fraction outside [0, 1].
    public func split(validationFraction: Double = 0.1, seed: UInt64 = 0) throws
        -> (train: [String], validation: [String])
    {
        try trainValidationSplit(fortunes, validationFraction: validationFraction, seed: seed)
    }

    /// UTF-8 to a string, each maximal invalid subsequence replaced by U+FFFD.
    /// - Returns: the text and the number of replacements.
    static func decodeUTF8(_ data: Data) -> (text: String, replacements: Int) {
        var scalars = String.UnicodeScalarView()
        var replacements = 0
        var decoder = UTF8()
        var iterator = data.makeIterator()
        decoding: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar)
            case .emptyInput: break decoding
            case .error:
                scalars.append("\u{FFFD}")
                replacements += 1
            }
        }
        return (String(scalars), replacements)
    }
}

/// A seeded split of `items` into a training and a validation part, each in the original order.
///
/// The validation part is the items at the first `round(n × validationFraction)` positions (half
/// away from zero) of a Philox Fisher–Yates permutation of `0..<n` — exactly
/// `DataLoader(…, shuffle: true, seed: seed).order(epoch: 0)` — sorted back into ascending order;
/// the training part is every other item. The split depends only on `n`, the fraction and the
/// seed, so it is the same on every machine, and the two parts are disjoint and cover `items`.
/// - Parameters:
///   - items: what to split, e.g. fortunes (split whole documents, not tokens, so that no text
///     straddles the two parts).
///   - validationFraction: in [0, 1].
///   - seed: the Philox key.
/// - Throws: `DatasetError.invalidArgument` (context `trainValidationSplit`) for a fraction
///   outside [0, 1] or NaN.
public func trainValidationSplit<Element>(_ items: [Element], validationFraction: Double, seed: UInt64) throws
    -> (train: [Element], validation: [Element])
{
    guard validationFraction >= 0, validationFraction <= 1 else {
        throw DatasetError(.invalidArgument, context: "trainValidationSplit",
                           "validationFraction must be in [0, 1], got \(validationFraction)")
    }
    let n = items.count
    let order = philoxPermutation(n, seed: seed, stream: 0)
    let validationCount = min(n, Int((Double(n) * validationFraction).rounded()))
    var isValidation = [Bool](repeating: false, count: n)
    for index in order.prefix(validationCount) { isValidation[index] = true }
    var train = [Element]()
    var validation = [Element]()
    train.reserveCapacity(n - validationCount)
    validation.reserveCapacity(validationCount)
    for (index, item) in items.enumerated() {
        if isValidation[index] { validation.append(item) } else { train.append(item) }
    }
    return (train, validation)
}

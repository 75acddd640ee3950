import Foundation
import Kiln
import KilnTestSupport
import Testing

// FortunesCorpus on files the tests write (separators, CR LF, blank entries, invalid UTF-8, which
// files are read) and on the Debian package's files when installed (checked against the string
// counts in strfile's .dat indexes); CharacterVocabulary; the seeded train/validation split.

/// Writes `contents` (bytes) to `name` under `directory`, creating subdirectories.
private func write(_ bytes: [UInt8], _ name: String, in directory: URL) throws {
    let url = directory.appendingPathComponent(name)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(bytes).write(to: url)
}

private func write(_ text: String, _ name: String, in directory: URL) throws {
    try write(Array(text.utf8), name, in: directory)
}

@Suite struct TextCorpusTests {
    // MARK: - Parsing

    @Test(arguments: [
        ("A\n%\nB\nC\n%\n", ["A", "B\nC"]),
        ("A\n%\nB", ["A", "B"]),                                   // no final %
        ("%\n%\n\n%\n  \t\n%\nX\n%\n%\n", ["X"]),                 // blank entries skipped
        ("A\n\n  \n\n%\nB\n\n", ["A", "B"]),                       // trailing blank lines dropped
        ("A\r\nB\r\n%\r\nC\r\n", ["A\nB", "C"]),                   // CR LF
        ("  /\\\n /  \\\n%\n", ["  /\\\n /  \\"]),                 // leading spaces kept
        ("\nA\n%\n", ["\nA"]),                                     // leading blank line kept
        ("100% sure\n%%\n % \n%\n", ["100% sure\n%%\n % "]),      // only a lone % separates
        ("", []),
        ("%", []),
        ("tab\there\u{8}_\n%\n", ["tab\there\u{8}_"]),            // control characters kept
    ])
    func parse(text: String, expected: [String]) {
        #expect(FortunesCorpus.parse(text) == expected)
    }

    @Test func textOfFortunesReparses() {
        let fortunes = ["One.", "Two\nlines.", "  art\n   art"]
        let text = FortunesCorpus.text(of: fortunes)
        #expect(text == "One.\n%\nTwo\nlines.\n%\n  art\n   art\n%\n")
        #expect(FortunesCorpus.parse(text) == fortunes)
    }

    // MARK: - Files

    @Test func readsPlainFilesInNameOrderAndSkipsTheRest() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try write("B one\n%\nB two\n%\n", "beta", in: directory)
        try write("A one\n%\nA two\nsecond line\n%\nA three\n", "alpha", in: directory)
        try write([0, 0, 0, 2, 0, 0, 0, 2, 0xFF, 0x80], "alpha.dat", in: directory)
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("alpha.u8").path,
                                                   withDestinationPath: "alpha")
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("link").path,
                                                   withDestinationPath: "beta")
        try write("hidden\n%\n", ".hidden", in: directory)
        try write("off one\n%\n", "off/offensive", in: directory)

        let corpus = try FortunesCorpus(directory: directory)
        #expect(corpus.files == ["alpha", "beta"])
        #expect(corpus.fortunes == ["A one", "A two\nsecond line", "A three", "B one", "B two"])
        #expect(corpus.fortunesPerFile == [3, 2])
        #expect(corpus.count == 5)
        #expect(corpus.filesWithInvalidUTF8.isEmpty)
        #expect(corpus.text == FortunesCorpus.text(of: corpus.fortunes))

        // Chosen files, in the order given, subdirectories and links allowed.
        let chosen = try FortunesCorpus(directory: directory, files: ["off/offensive", "link", "alpha"])
        #expect(chosen.fortunes == ["off one", "B one", "B two", "A one", "A two\nsecond line", "A three"])
        #expect(chosen.fortunesPerFile == [1, 2, 3])
    }

    @Test func invalidUTF8IsReplacedNotFatal() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // 0xE9 (a Latin-1 é) starts a 3-byte sequence that LF interrupts: one replacement.
        // 0xFF and 0xFE are never valid: one each. C3 A9 is a valid é.
        let bytes: [UInt8] = Array("caf".utf8) + [0xE9] + Array("\n%\nok".utf8) + [0xFF, 0xFE]
            + Array("end \u{E9}\n%\n".utf8)
        try write(bytes, "latin1", in: directory)
        try write("fine\n%\n", "valid", in: directory)
        let corpus = try FortunesCorpus(directory: directory)
        #expect(corpus.fortunes == ["caf\u{FFFD}", "ok\u{FFFD}\u{FFFD}end é", "fine"])
        #expect(corpus.filesWithInvalidUTF8 == ["latin1"])
    }

    @Test func missingFilesNameThePackage() throws {
        let nowhere = URL(fileURLWithPath: "/nonexistent/kiln-fortunes-\(UUID().uuidString)")
        let error = try #require(throws: DatasetError.self) { try FortunesCorpus(directory: nowhere) }
        #expect(error.kind == .missingFiles)
        #expect(error.context == "FortunesCorpus")
        #expect(error.message.contains(nowhere.path))
        #expect(error.message.contains("Debian package fortunes"))
        #expect(error.message.contains("sudo apt-get install fortunes"))
        #expect(error.message.contains("scripts/setup"))

        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try write([1, 2, 3], "only.dat", in: directory)
        let empty = try #require(throws: DatasetError.self) { try FortunesCorpus(directory: directory) }
        #expect(empty.kind == .missingFiles && empty.message.contains("apt-get install fortunes"))

        try write("x\n%\n", "present", in: directory)
        let absent = try #require(throws: DatasetError.self) {
            try FortunesCorpus(directory: directory, files: ["present", "absent"])
        }
        #expect(absent.kind == .missingFiles)
        #expect(absent.message.contains(directory.appendingPathComponent("absent").path))
        #expect(!absent.message.contains(directory.appendingPathComponent("present").path))
        let none = try #require(throws: DatasetError.self) { try FortunesCorpus(directory: directory, files: []) }
        #expect(none.kind == .invalidArgument)
        // A plain file where the directory should be.
        #expect(throws: DatasetError.self) { try FortunesCorpus(directory: directory.appendingPathComponent("present")) }
    }

    // MARK: - Vocabulary

    @Test func vocabularyIsSortedScalarsAndRoundTrips() throws {
        let vocabulary = CharacterVocabulary(text: "hello")
        #expect(vocabulary.scalars == ["e", "h", "l", "o"])
        #expect(vocabulary.count == 4)
        #expect(try vocabulary.encode("hole") == [1, 3, 2, 0])
        #expect(try vocabulary.decode([1, 0, 2, 2, 3]) == "hello")
        #expect(vocabulary.id(of: "l") == 2 && vocabulary.id(of: "x") == nil)

        // Non-ASCII: one token per scalar, ids by code point, CR LF two tokens.
        let text = "Café ☕\r\nnaïve e\u{301}"
        let wide = CharacterVocabulary(text: text)
        #expect(wide.scalars.map(\.value) == wide.scalars.map(\.value).sorted())
        #expect(Set(wide.scalars).count == wide.count)
        let tokens = try wide.encode(text)
        #expect(tokens.count == text.unicodeScalars.count)
        #expect(try wide.decode(tokens) == text)
        #expect(Array(try wide.decode(tokens).unicodeScalars) == Array(text.unicodeScalars))
        #expect(wide.scalars.last == "☕")
        #expect(CharacterVocabulary(texts: ["Café ☕\r\n", "naïve e\u{301}"]) == wide)
        #expect(try CharacterVocabulary(scalars: wide.scalars) == wide)
    }

    @Test func unknownCharacterPolicies() throws {
        let vocabulary = CharacterVocabulary(text: "abc ")
        let error = try #require(throws: DatasetError.self) { try vocabulary.encode("a x") }
        #expect(error.kind == .invalidArgument)
        #expect(error.message.contains("U+0078 \"x\"") && error.message.contains("offset 2"))
        #expect(try vocabulary.encode("a xb", unknown: .skip) == [1, 0, 2])
        #expect(try vocabulary.encode("a xb", unknown: .replace(with: " ")) == [1, 0, 0, 2])
        #expect(throws: DatasetError.self) { try vocabulary.encode("a", unknown: .replace(with: "?")) }
        #expect(throws: DatasetError.self) { try vocabulary.decode([0, 4]) }
        #expect(throws: DatasetError.self) { try vocabulary.decode([-1]) }
        #expect(throws: DatasetError.self) { try CharacterVocabulary(scalars: ["a", "b", "a"]) }
    }

    // MARK: - Split

    @Test func splitIsSeededDisjointAndCovering() throws {
        let items = Array(0..<1000)
        let (train, validation) = try trainValidationSplit(items, validationFraction: 0.1, seed: 5)
        #expect(validation.count == 100 && train.count == 900)
        #expect(Set(train).isDisjoint(with: validation))
        #expect((train + validation).sorted() == items)
        #expect(train == train.sorted() && validation == validation.sorted())
        // The documented construction: the first 10 % of DataLoader's epoch-0 permutation.
        let order = try DataLoader(inputs: [Float](repeating: 0, count: 1000), sampleShape: [], labels: [Float](repeating: 0, count: 1000),
                                   batchSize: 1, shuffle: true, seed: 5, on: CPUBackend.shared).order(epoch: 0)
        #expect(validation == order.prefix(100).sorted())

        let again = try trainValidationSplit(items, validationFraction: 0.1, seed: 5)
        #expect(again.train == train && again.validation == validation)
        let other = try trainValidationSplit(items, validationFraction: 0.1, seed: 6)
        #expect(other.validation != validation)
        // Not simply a block of the input: spread over the whole range.
        #expect(validation.first! < 100 && validation.last! >= 900)

        #expect(try trainValidationSplit(items, validationFraction: 0, seed: 1).validation.isEmpty)
        #expect(try trainValidationSplit(items, validationFraction: 1, seed: 1).train.isEmpty)
        #expect(try trainValidationSplit(Array(0..<7), validationFraction: 0.5, seed: 1).validation.count == 4)  // 3.5 rounds up
        let nothing = try trainValidationSplit([Int](), validationFraction: 0.1, seed: 1)
        #expect(nothing.train.isEmpty && nothing.validation.isEmpty)
        for bad in [-0.1, 1.5, Double.nan] {
            #expect(throws: DatasetError.self) { try trainValidationSplit(items, validationFraction: bad, seed: 1) }
        }
    }

    @Test func corpusSplitKeepsFortunesWhole() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let fortunes = (0..<50).map { "Fortune number \($0).\nIt has two lines." }
        try write(FortunesCorpus.text(of: fortunes), "numbers", in: directory)
        let corpus = try FortunesCorpus(directory: directory)
        let (train, validation) = try corpus.split(validationFraction: 0.2, seed: 3)
        #expect(validation.count == 10 && train.count == 40)
        #expect(Set(train).isDisjoint(with: validation) && Set(train + validation) == Set(fortunes))
        let expected = try trainValidationSplit(fortunes, validationFraction: 0.2, seed: 3)
        #expect(train == expected.train && validation == expected.validation)
    }
}

// MARK: - The Debian corpus

private let debianDirectory = FortunesCorpus.defaultDirectory
private let debianPresent = FileManager.default.fileExists(atPath: debianDirectory.appendingPathComponent("fortunes").path)

@Suite(.enabled(if: debianPresent, "the Debian package fortunes is not installed (run scripts/setup)"))
struct TextCorpusDebianTests {
    /// The number of strings in a strfile index: the big-endian UInt32 after the version.
    private func strfileCount(_ name: String) throws -> Int {
        let bytes = [UInt8](try Data(contentsOf: debianDirectory.appendingPathComponent(name + ".dat")))
        return bytes[4..<8].reduce(0) { $0 << 8 | Int($1) }
    }

    @Test func loadsEveryFortuneOfThePackage() throws {
        let corpus = try FortunesCorpus()
        #expect(corpus.count > 1000)
        #expect(corpus.files.contains("fortunes") && corpus.files.contains("zippy"))
        #expect(corpus.files == corpus.files.sorted())
        #expect(!corpus.files.contains { $0.hasSuffix(".dat") || $0.hasSuffix(".u8") || $0.contains("/") })
        #expect(corpus.fortunesPerFile.reduce(0, +) == corpus.count)
        // strfile, which built the package's .dat indexes, counts the same fortunes per file.
        for (file, count) in zip(corpus.files, corpus.fortunesPerFile) {
            #expect(try count == strfileCount(file), "\(file)")
        }
        #expect(!corpus.fortunes.contains { $0.isEmpty || $0.hasSuffix("\n") || $0.split(separator: "\n").contains("%") })

        let vocabulary = CharacterVocabulary(text: corpus.text)
        #expect(vocabulary.count > 60 && vocabulary.count < 1000)
        #expect(vocabulary.id(of: "%") != nil && vocabulary.id(of: "\n") != nil && vocabulary.id(of: "e") != nil)
        let tokens = try vocabulary.encode(corpus.text)
        #expect(tokens.count == corpus.text.unicodeScalars.count)
        #expect(try vocabulary.decode(tokens) == corpus.text)

        let (train, validation) = try corpus.split(validationFraction: 0.1, seed: 0)
        #expect(validation.count == Int((Double(corpus.count) * 0.1).rounded()))
        #expect(train.count + validation.count == corpus.count)
        let trainTokens = try vocabulary.encode(FortunesCorpus.text(of: train))
        let batches = try LanguageModelBatches(tokens: trainTokens, sequenceLength: 64, batchSize: 8,
                                               batchesPerEpoch: 3, seed: 1, on: CPUBackend.shared)
        for batch in batches.epoch(0) {
            #expect(batch.shape == [8, 64])
            #expect(batch.inputValues.allSatisfy { $0 >= 0 && $0 < Float(vocabulary.count) })
        }
    }
}

import Foundation
import Testing

/// Keeps `Sources/Kiln/Kiln.docc/SeedCoverage.md` true: one row per catalogue id of tier kernel, core and
/// extended, and every test it names exists in `Tests/`.
@Suite("Seed coverage article")
struct CoverageArticleTests {
    /// The repository root: three levels up from this file (Tests/PublicAPITests/CoverageArticleTests.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The article's table rows as cells (id, category, symbol, test), with the backticks around the id removed.
    static func articleRows() throws -> [[String]] {
        let url = root.appendingPathComponent("Sources/Kiln/Kiln.docc/SeedCoverage.md")
        let text = try String(contentsOf: url, encoding: .utf8)
        return text.split(separator: "\n").filter { $0.hasPrefix("| `") }.map { line in
            var cells = line.split(separator: "|", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
            cells = Array(cells.dropFirst().dropLast())
            if !cells.isEmpty { cells[0] = cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`")) }
            return cells
        }
    }

    @Test("every kernel, core and extended catalogue id has exactly one row")
    func oneRowPerId() throws {
        let catalogue = Self.root.appendingPathComponent("../shared/seeds/catalogue.tsv").standardizedFileURL
        let text = try #require(try? String(contentsOf: catalogue, encoding: .utf8),
                                "the seed catalogue is missing at \(catalogue.path); CI checks out ../shared beside the repository")
        var ids: [String] = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 6 else { continue }
            if ["kernel", "core", "extended"].contains(fields[5].trimmingCharacters(in: .whitespacesAndNewlines)) {
                ids.append(fields[0])
            }
        }
        #expect(!ids.isEmpty)
        let rows = try Self.articleRows()
        #expect(rows.allSatisfy { $0.count == 4 }, "every row has id, category, symbol and test")
        var count: [String: Int] = [:]
        for row in rows { count[row[0], default: 0] += 1 }
        let missing = ids.filter { count[$0] == nil }
        let repeated = count.filter { $0.value > 1 }.map(\.key).sorted()
        let extra = Set(count.keys).subtracting(ids).sorted()
        #expect(missing.isEmpty, "catalogue ids without a row: \(missing)")
        #expect(repeated.isEmpty, "ids with more than one row: \(repeated)")
        #expect(extra.isEmpty, "rows for ids that are not kernel/core/extended in the catalogue: \(extra)")
        for row in rows where row.count == 4 {
            let symbol = row[2], test = row[3]
            if symbol.hasPrefix("planned") || symbol.hasPrefix("not planned:") {
                #expect(test == "—", "\(row[0]): a \(symbol) row names no test")
            } else {
                #expect(symbol.contains("`"), "\(row[0]): the symbol cell names a symbol")
                #expect(test == "untested" || test.contains("."), "\(row[0]): test is Suite.function or untested")
            }
        }
    }

    @Test("every test the article names exists in Tests/")
    func namedTestsExist() throws {
        let tests = Self.root.appendingPathComponent("Tests")
        var sources: [String] = []
        let walker = try #require(FileManager.default.enumerator(at: tests, includingPropertiesForKeys: nil))
        for case let url as URL in walker where url.pathExtension == "swift" {
            sources.append(try String(contentsOf: url, encoding: .utf8))
        }
        #expect(!sources.isEmpty)
        var checked = 0
        for row in try Self.articleRows() where row.count == 4 {
            for name in row[3].split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                guard name != "—", name != "untested" else { continue }
                let parts = name.split(separator: ".").map(String.init)
                guard parts.count == 2 else {
                    Issue.record("\(row[0]): '\(name)' is not Suite.function")
                    continue
                }
                // The suite's file declares `struct Suite` and, with @Test, `func function(`.
                let found = sources.contains { source in
                    source.contains("struct \(parts[0]) {") && source.contains("func \(parts[1])(")
                        && source.contains("@Test")
                }
                #expect(found, "\(row[0]): no test \(name) in Tests/")
                checked += 1
            }
        }
        #expect(checked > 0)
    }
}

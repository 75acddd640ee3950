/// A character-level vocabulary: token `i` is the Unicode scalar `scalars[i]`.
///
/// Kiln tokenises by Unicode scalar, not by byte and not by `Character`: a scalar is one code
/// point, so every string splits into scalars one way and joins back exactly (`decode(encode(s))
/// == s` scalar for scalar), non-ASCII text costs one token per code point rather than two to four
/// byte tokens, and the vocabulary of a corpus stays small (the Debian fortunes have 113 distinct
/// scalars). Grapheme clusters (`Character`) would merge CR LF and combining marks into open-ended
/// units. Built from text, the scalars are sorted by code point, so the same text always gives the
/// same ids.
///
/// Characters outside the vocabulary follow an `UnknownPolicy` chosen at `encode`: fail (the
/// default), skip them, or replace them with a scalar that is in the vocabulary. Build the
/// vocabulary from the whole corpus (training and validation) to have none.
public struct CharacterVocabulary: Sendable, Equatable, CustomStringConvertible {
    /// What `encode` does with a scalar that is not in the vocabulary.
    public enum UnknownPolicy: Sendable, Equatable {
        /// Throw `DatasetError.invalidArgument` naming the scalar and its offset.
        case fail
        /// Leave it out of the tokens.
        case skip
        /// Encode this scalar instead; it must be in the vocabulary.
        case replace(with: Unicode.Scalar)
    }

    /// The scalar of each token id.
    public let scalars: [Unicode.Scalar]
    private let ids: [Unicode.Scalar: Int]

    /// The number of tokens.
    public var count: Int { scalars.count }

    /// The distinct Unicode scalars of `text`, in ascending order of code point.
    public init(text: String) {
        self.init(sortedUnique: Set(text.unicodeScalars).sorted { $0.value < $1.value })
    }

    /// The distinct Unicode scalars of all `texts`, in ascending order of code point.
    public init(texts: [String]) {
        var set = Set<Unicode.Scalar>()
        for text in texts { set.formUnion(text.unicodeScalars) }
        self.init(sortedUnique: set.sorted { $0.value < $1.value })
    }

    /// A vocabulary with these ids, in this order (e.g. restored from a checkpoint).
    /// - Throws: `DatasetError.invalidArgument` (context `CharacterVocabulary`) for a repeated scalar.
    public init(scalars: [Unicode.Scalar]) throws {
        var seen = Set<Unicode.Scalar>()
        for scalar in scalars where !seen.insert(scalar).inserted {
            throw DatasetError(.invalidArgument, context: "CharacterVocabulary",
                               "scalar \(Self.describe(scalar)) appears twice")
        }
        self.init(sortedUnique: scalars)
    }

    private init(sortedUnique scalars: [Unicode.Scalar]) {
        self.scalars = scalars
        self.ids = Dictionary(uniqueKeysWithValues: scalars.enumerated().map { ($1, $0) })
    }

    /// The token id of `scalar`, or nil when it is not in the vocabulary.
    public func id(of scalar: Unicode.Scalar) -> Int? { ids[scalar] }

    /// The token ids of `text`'s Unicode scalars, in order.
    /// - Parameter unknown: what to do with a scalar that is not in the vocabulary.
    /// - Throws: `DatasetError.invalidArgument` (context `CharacterVocabulary`) for an unknown
    ///   scalar under `.fail`, or a `.replace` scalar that is itself not in the vocabulary.
    public func encode(_ text: String, unknown: UnknownPolicy = .fail) throws -> [Int] {
        var replacement: Int?
        if case .replace(let scalar) = unknown {
            guard let id = ids[scalar] else {
                throw DatasetError(.invalidArgument, context: "CharacterVocabulary",
                                   "the replacement \(Self.describe(scalar)) is not in the vocabulary")
            }
            replacement = id
        }
        var tokens = [Int]()
        tokens.reserveCapacity(text.unicodeScalars.count)
        for (offset, scalar) in text.unicodeScalars.enumerated() {
            if let id = ids[scalar] {
                tokens.append(id)
            } else if let replacement {
                tokens.append(replacement)
            } else if unknown == .fail {
                throw DatasetError(.invalidArgument, context: "CharacterVocabulary",
                                   "\(Self.describe(scalar)) at scalar offset \(offset) is not in the vocabulary of \(count) "
                                   + "(encode with unknown: .skip or .replace(with:), or build the vocabulary from all the text)")
            }
        }
        return tokens
    }

    /// The text of token ids: their scalars, concatenated.
    /// - Throws: `DatasetError.invalidArgument` (context `CharacterVocabulary`) for an id outside
    ///   `0..<count`.
    public func decode(_ tokens: some Sequence<Int>) throws -> String {
        var text = String.UnicodeScalarView()
        for (offset, token) in tokens.enumerated() {
            guard token >= 0 && token < count else {
                throw DatasetError(.invalidArgument, context: "CharacterVocabulary",
                                   "token \(token) at offset \(offset) is out of range 0..<\(count)")
            }
            text.append(scalars[token])
        }
        return String(text)
    }

    /// `CharacterVocabulary(113 scalars)`.
    public var description: String { "CharacterVocabulary(\(count) scalars)" }

    /// `U+0041 "A"`, or only the code point for control characters.
    static func describe(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16, uppercase: true)
        let code = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        let printable = scalar.properties.generalCategory != .control && !scalar.properties.isWhitespace
        return printable ? "\(code) \"\(scalar)\"" : code
    }

    public static func == (a: CharacterVocabulary, b: CharacterVocabulary) -> Bool { a.scalars == b.scalars }
}

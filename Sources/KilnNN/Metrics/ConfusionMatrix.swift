import Foundation
import KilnCore

/// Counts of (true class, predicted class) pairs: `counts[actual][predicted]`.
public struct ConfusionMatrix: Sendable, Equatable, CustomStringConvertible {
    public let classes: Int
    public private(set) var counts: [[Int]]

    public init(classes: Int) throws {
        guard classes > 0 else { throw TensorError(.invalidArgument, op: "ConfusionMatrix", "classes must be > 0, got \(classes)") }
        self.classes = classes
        counts = Array(repeating: Array(repeating: 0, count: classes), count: classes)
    }

    /// Adds predictions (argmax over the last axis of `logits` [N, classes]) against integer
    /// `labels` [N] (class indices stored as floats).
    /// - Throws: `TensorError` for other shapes or a label outside 0..<classes.
    public mutating func add(logits: Tensor, labels: Tensor) throws {
        guard logits.rank == 2, logits.shape[1] == classes, labels.shape == [logits.shape[0]] else {
            throw TensorError(.shapeMismatch, op: "ConfusionMatrix.add",
                              "needs logits [N, \(classes)] and labels [N], got \(logits.shape) and \(labels.shape)")
        }
        let predicted = try withoutGradients { try logits.argmax(axis: 1).scalars() }
        try add(predicted: predicted.map { Int($0) }, actual: try labels.scalars().map { Int($0) })
    }

    /// Adds pairs of class indices.
    public mutating func add(predicted: [Int], actual: [Int]) throws {
        guard predicted.count == actual.count else {
            throw TensorError(.shapeMismatch, op: "ConfusionMatrix.add", "\(predicted.count) predictions for \(actual.count) labels")
        }
        for (p, a) in zip(predicted, actual) {
            guard (0..<classes).contains(p), (0..<classes).contains(a) else {
                throw TensorError(.invalidArgument, op: "ConfusionMatrix.add",
                                  "class index out of 0..<\(classes): predicted \(p), actual \(a)")
            }
            counts[a][p] += 1
        }
    }

    public var total: Int { counts.reduce(0) { $0 + $1.reduce(0, +) } }
    public var correct: Int { (0..<classes).reduce(0) { $0 + counts[$1][$1] } }
    /// Correct / total (NaN when empty).
    public var accuracy: Double { Double(correct) / Double(total) }
    /// Recall of class c: counts[c][c] / Σ_p counts[c][p] (NaN when the class never occurs).
    public func recall(_ c: Int) -> Double { Double(counts[c][c]) / Double(counts[c].reduce(0, +)) }
    /// Precision of class c: counts[c][c] / Σ_a counts[a][c] (NaN when never predicted).
    public func precision(_ c: Int) -> Double { Double(counts[c][c]) / Double(counts.reduce(0) { $0 + $1[c] }) }

    /// The table with rows = true class and columns = predicted class, optionally labelled.
    public func formatted(classNames: [String]? = nil) -> String {
        let names = classNames?.count == classes ? classNames! : (0..<classes).map(String.init)
        let labelWidth = min(max(names.map(\.count).max() ?? 1, 4), 14)
        let cellWidth = max(String(counts.flatMap { $0 }.max() ?? 0).count + 1, 5)
        func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
            let t = String(s.prefix(w))
            let fill = String(repeating: " ", count: w - t.count)
            return left ? t + fill : fill + t
        }
        var lines = [pad("true\\pred", labelWidth, left: true) + (0..<classes).map { pad(String($0), cellWidth) }.joined() + "  recall"]
        for a in 0..<classes {
            lines.append(pad(names[a], labelWidth, left: true) + counts[a].map { pad(String($0), cellWidth) }.joined()
                         + String(format: "  %5.1f%%", 100 * recall(a)))
        }
        return lines.joined(separator: "\n")
    }

    public var description: String { formatted() }
}

import KilnCore

// Detection losses.

/// The YOLO v1 detection loss (Redmon et al. 2016, eq. 3), as the catalogue's `yolo_loss`:
///
///     L = (1/N) · [ λ_coord Σ_{n,i,j} 1^obj_nij ((x − x̂)² + (y − ŷ)² + (√w − √ŵ)² + (√h − √ĥ)²)
///                 + Σ_{n,i,j} 1^obj_nij (C − Ĉ)²
///                 + λ_noobj Σ_{n,i,j} 1^noobj_nij (C − Ĉ)²
///                 + Σ_{n,i} 1^obj_ni Σ_c (p(c) − p̂(c))² ]
///
/// with n the image, i the grid cell and j the box slot; unhatted values are predictions and hatted
/// ones targets.
///
/// **Layout.** `predictions` and `targets` are `[N, S, S, B·5 + C]` (an `S × S′` grid is also
/// accepted): for each cell, B boxes of five channels `x, y, w, h, confidence` (box j occupies
/// channels `5j ..< 5j + 5`), then C class probabilities. A cell holding an object has, in
/// `targets`, the object's box in the slot of the responsible predictor, with confidence 1 (or the
/// IoU the caller wants as target, as the paper), and the one-hot class in the class channels.
///
/// **Responsibility.** `responsible` is a 0/1 mask `[N, S, S, B]`: 1^obj_nij = responsible,
/// 1^noobj_nij = 1 − responsible, and the cell indicator 1^obj_ni = 1 when any box of the cell is
/// responsible. When `responsible` is nil it is taken from the targets' confidence channels, which
/// must then hold only 0 and 1. The caller chooses the responsible predictor (in the paper, the
/// box with the highest IoU with the ground truth); the loss does no matching.
///
/// **Square roots.** w and h of predictions and targets are clamped below at `epsilon` before the
/// square root, so a negative or zero width gives a finite value; where a prediction is clamped its
/// w/h gradient is 0. Predictions are expected to be ≥ 0 (e.g. after a sigmoid).
///
/// **Normalisation.** All terms are summed over the batch, cells, boxes and classes and divided by
/// the batch size N (not by the number of objects); the result is a scalar.
///
/// - Parameters:
///   - boxes: B, the boxes predicted per cell (≥ 1).
///   - classes: C, the class count (≥ 1).
///   - coordinateWeight: λ_coord (finite, ≥ 0), 5 in the paper.
///   - noObjectWeight: λ_noobj (finite, ≥ 0), 0.5 in the paper.
///   - epsilon: the clamp below the square roots (> 0).
/// - Throws: `TensorError` naming `yoloLoss` for a shape that is not `[N, S, S, B·5 + C]` with
///   N ≥ 1, mismatched targets or mask, a mask with values other than 0 and 1, or bad hyperparameters.
public func yoloLoss(predictions: Tensor, targets: Tensor, responsible: Tensor? = nil, boxes: Int, classes: Int,
                     coordinateWeight: Float = 5, noObjectWeight: Float = 0.5, epsilon: Float = 1e-6) throws -> Tensor {
    let op = "yoloLoss"
    try LossSupport.check(boxes >= 1 && classes >= 1, op, "boxes and classes must be ≥ 1, got \(boxes), \(classes)")
    try LossSupport.check(coordinateWeight.isFinite && coordinateWeight >= 0, op,
                          "coordinateWeight must be finite and ≥ 0, got \(coordinateWeight)")
    try LossSupport.check(noObjectWeight.isFinite && noObjectWeight >= 0, op,
                          "noObjectWeight must be finite and ≥ 0, got \(noObjectWeight)")
    try LossSupport.check(epsilon.isFinite && epsilon > 0, op, "epsilon must be finite and > 0, got \(epsilon)")
    let channels = boxes * 5 + classes
    guard predictions.rank == 4, predictions.shape[3] == channels, predictions.shape[0] >= 1 else {
        throw TensorError(.shapeMismatch, op: op,
                          "predictions must be [N, S, S, B·5 + C] = [N, S, S, \(channels)] with N ≥ 1, got \(predictions.shape)")
    }
    try LossSupport.sameShape(predictions, targets, op, ("predictions", "targets"))
    let n = predictions.shape[0], rows = predictions.shape[1], columns = predictions.shape[2]
    let boxShape: [Int] = [n, rows, columns, boxes, 5]
    let maskShape: [Int] = [n, rows, columns, boxes]

    // Boxes as [N, S, S, B, 5] and class probabilities as [N, S, S, C].
    let predictedBoxes: Tensor = try predictions.sliced(axis: 3, start: 0, end: boxes * 5).reshaped(to: boxShape)
    let targetBoxes: Tensor = try targets.sliced(axis: 3, start: 0, end: boxes * 5).reshaped(to: boxShape)
    let predictedClasses: Tensor = try predictions.sliced(axis: 3, start: boxes * 5)
    let targetClasses: Tensor = try targets.sliced(axis: 3, start: boxes * 5)
    func channel(_ t: Tensor, _ k: Int) throws -> Tensor { try t.sliced(axis: 4, start: k, end: k + 1) }

    // 1^obj as [N, S, S, B, 1].
    let mask: Tensor
    if let responsible {
        guard responsible.shape == maskShape else {
            throw TensorError(.shapeMismatch, op: op, "responsible must have shape \(maskShape), got \(responsible.shape)")
        }
        mask = try responsible.reshaped(to: boxShape.dropLast() + [1])
    } else {
        mask = try channel(targetBoxes, 4)
    }
    let maskValues: [Float] = try mask.scalars()
    try LossSupport.check(maskValues.allSatisfy { $0 == 0 || $0 == 1 }, op,
                          responsible == nil ? "targets' confidence channels must hold only 0 and 1 when responsible is nil"
                                             : "responsible must hold only 0 and 1")
    let object: Tensor = mask.detached()
    let noObject: Tensor = try 1 - object

    // Coordinates: (x − x̂)² + (y − ŷ)² + (√w − √ŵ)² + (√h − √ĥ)².
    let dx: Tensor = try channel(predictedBoxes, 0) - channel(targetBoxes, 0)
    let dy: Tensor = try channel(predictedBoxes, 1) - channel(targetBoxes, 1)
    let predictedSize: Tensor = try sqrt(clamp(predictedBoxes.sliced(axis: 4, start: 2, end: 4), min: epsilon))
    let targetSize: Tensor = try sqrt(clamp(targetBoxes.sliced(axis: 4, start: 2, end: 4), min: epsilon))
    let sizeError: Tensor = try square(predictedSize - targetSize).sum(alongAxes: [4], keepingDimensions: true)
    let coordinateError: Tensor = try square(dx) + square(dy) + sizeError
    let coordinateTerm: Tensor = try (coordinateError * object).sum() * coordinateWeight

    // Confidence: responsible boxes and, weighted by λ_noobj, the others.
    let confidenceError: Tensor = try square(channel(predictedBoxes, 4) - channel(targetBoxes, 4))
    let objectTerm: Tensor = try (confidenceError * object).sum()
    let noObjectTerm: Tensor = try (confidenceError * noObject).sum() * noObjectWeight

    // Classes, for cells with an object: 1^obj_ni = min(1, Σ_j 1^obj_nij), as [N, S, S, 1].
    let cellObject: Tensor = try clamp(object.sum(alongAxes: [3]), max: 1).reshaped(to: [n, rows, columns, 1])
    let classError: Tensor = try square(predictedClasses - targetClasses)
    let classTerm: Tensor = try (classError * cellObject).sum()

    let total: Tensor = try coordinateTerm + objectTerm + noObjectTerm + classTerm
    return try total * (1 / Float(n))
}

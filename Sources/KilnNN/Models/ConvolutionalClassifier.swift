import KilnCore

/// Seed 003's CNN pattern `[conv → ReLU → max-pool]ᴺ → flatten → linear → ReLU → linear`:
/// 3×3 convolutions with padding 1 (size-preserving) and 2×2 max pooling, so each block halves
/// the image. With `channels: [16, 32]`, `hidden: 128` on 3×32×32 inputs this is the seed's
/// CIFAR-10 network (268,650 parameters); on 1×28×28 Fashion-MNIST images it has 206,922.
///
/// - Parameters:
///   - imageSize: (height, width) of the inputs; each must stay ≥ 1 after every pooling.
///   - seed: initialisation seed; layer k uses `seed + k`, so the same seed gives the same
///     model on every backend.
/// - Throws: `TensorError.invalidArgument` for empty or non-positive sizes.
public func convolutionalClassifier(inputChannels: Int, imageSize: (Int, Int), channels: [Int] = [16, 32],
                                    hidden: Int = 128, classes: Int, seed: UInt64 = 0,
                                    on backend: any Backend) throws -> Sequential {
    let op = "convolutionalClassifier"
    guard inputChannels > 0, hidden > 0, classes > 0, !channels.isEmpty, channels.allSatisfy({ $0 > 0 }) else {
        throw TensorError(.invalidArgument, op: op,
                          "sizes must be positive: inputChannels \(inputChannels), channels \(channels), hidden \(hidden), classes \(classes)")
    }
    var (h, w) = imageSize
    var layers: [any Module] = []
    var inChannels = inputChannels
    var layerSeed = seed
    for c in channels {
        layers += [try Conv2d(inputChannels: inChannels, outputChannels: c, kernelSize: 3, padding: 1, seed: layerSeed, on: backend),
                   ReLU(), try MaxPool2d(kernelSize: 2)]
        layerSeed += 1
        (h, w, inChannels) = (h / 2, w / 2, c)
        guard h >= 1, w >= 1 else {
            throw TensorError(.invalidArgument, op: op,
                              "image size \(imageSize) is too small for \(channels.count) halving blocks")
        }
    }
    layers += [Flatten(),
               try Linear(inputSize: inChannels * h * w, outputSize: hidden, seed: layerSeed, on: backend), ReLU(),
               try Linear(inputSize: hidden, outputSize: classes, seed: layerSeed + 1, on: backend)]
    return Sequential(layers)
}

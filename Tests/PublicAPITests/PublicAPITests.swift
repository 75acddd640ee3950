import Foundation
// Uses only what `import Kiln` offers, as a downstream package would.
import Kiln
import Testing

@Suite("Public API")
struct PublicAPITests {
    @Test("pick each backend, run a matmul, read the result")
    func matmulOnEachDevice() throws {
        var devices: [Device] = [.cpu, .auto]
        devices += Kiln.devices().map(\.device).filter { $0 != .cpu }
        for device in devices {
            let a = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], device: device)
            let b = try Tensor([7, 8, 9, 10, 11, 12], shape: [3, 2], device: device)
            let c = try matmul(a, b)
            // [[1·7 + 2·9 + 3·11, 1·8 + 2·10 + 3·12], [4·7 + 5·9 + 6·11, 4·8 + 5·10 + 6·12]]
            #expect(c.shape == [2, 2])
            #expect(try c.scalars() == [58, 64, 139, 154], "device \(device)")
        }
    }

    @Test("devices() lists the CPU backend first")
    func deviceList() {
        let list = Kiln.devices()
        #expect(list.first?.device == .cpu)
        #expect(list.first?.kind == "CPU backend")
    }

    @Test("the README's attention, normalization and gradient example runs on every device")
    func readmeExample() throws {
        for device in Kiln.devices().map(\.device) {
            let backend = try device.backend()
            let q = try Tensor.normal([1, 8, 64, 16], seed: 1, on: backend).requiringGradient()
            let k = try Tensor.normal([1, 2, 64, 16], seed: 2, on: backend).requiringGradient()
            let v = try Tensor.normal([1, 2, 64, 16], seed: 3, on: backend).requiringGradient()
            let attention = try scaledDotProductAttention(query: q, key: k, value: v, isCausal: true)
            let y = try layerNorm(attention.output, normalizedShape: [16])
            try (y * attention.output).mean().backward()
            let gradient = try #require(q.gradient, "device \(device)")
            #expect(gradient.shape == [1, 8, 64, 16])
            #expect(k.gradient?.shape == [1, 2, 64, 16])
            let values = try gradient.scalars()
            #expect(values.allSatisfy { $0.isFinite })
            #expect(values.contains { $0 != 0 })
        }
    }

    @Test("the README's training loop runs: Adam, cosine schedule, clipping, a Fashion-MNIST subset")
    func readmeTraining() throws {
        let backend = CPUBackend.shared
        let train = try FashionMNIST(split: .train, limit: 256, normalization: FashionMNIST.normalization)
        let loader = try DataLoader(train, batchSize: 64, shuffle: true, seed: 1, on: backend)
        let model = try convolutionalClassifier(inputChannels: 1, imageSize: (28, 28), classes: 10, on: backend)
        let optimizer = try Adam(model.parameters(), learningRate: 1e-3)
        let schedule = try CosineAnnealingLR(optimizer: optimizer, tMax: 5)
        for epoch in 0..<2 {
            for batch in loader.epoch(epoch) {
                let (input, labels) = try batch.tensors()
                optimizer.zeroGradients()
                try crossEntropy(logits: model(input), targets: labels).backward()
                try clipGradientNorm(model.parameters(), maxNorm: 1)
                try optimizer.step()
            }
            try schedule.step()
        }
        #expect(optimizer.stepCount == 8)
        let expected = 1e-3 * (1 + cos(Double.pi * 2 / 5)) / 2
        #expect(abs(optimizer.learningRate - expected) < 1e-15)
    }
}

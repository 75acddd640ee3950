import Foundation
import Kiln
import KilnTestSupport
import Testing

@Suite("Gradient hooks")
struct GradientHookTests {
    @Test("the hook sees the gradient reaching the tensor, summed over its uses, and passes it through",
          arguments: TestBackend.all)
    func seesGradient(backend: TestBackend) throws {
        let b = backend.backend
        let x = try Tensor([1, -2, 3], on: b).requiringGradient()
        var seen: [[Float]] = []
        let y = try square(x).withGradientHook { seen.append(try $0.scalars()) }
        #expect(try y.scalars() == [1, 4, 9])
        // z = Σ 3y + Σ y·[1, 2, 3]: ∂z/∂y = [4, 5, 6], ∂z/∂x = 2x·∂z/∂y.
        let weights = try Tensor([1, 2, 3], on: b)
        let z: Tensor = try (y * 3).sum() + (y * weights).sum()
        try z.backward()
        #expect(seen == [[4, 5, 6]], "hook saw \(seen)")
        #expect(try x.gradient?.scalars() == [8, -20, 36])
    }

    @Test("no hook call without recording or without a gradient; a throwing hook ends backward")
    func edgeCases() throws {
        let b = CPUBackend.shared
        var calls = 0
        let plain = try Tensor([1, 2], on: b)
        let unhooked = plain.withGradientHook { _ in calls += 1 }
        #expect(!unhooked.requiresGradient)
        let x = try Tensor([1, 2], on: b).requiringGradient()
        let detachedUse = withoutGradients { x.withGradientHook { _ in calls += 1 } }
        #expect(detachedUse.gradientNode === x.gradientNode, "with recording off the result is the tensor itself")
        try (x * 2).sum().backward()
        #expect(calls == 0)

        struct Stop: Error {}
        let hooked = try (x * 2).withGradientHook { _ in throw Stop() }
        #expect(throws: Stop.self) { try hooked.sum().backward() }
    }
}

// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Kiln",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Kiln", targets: ["Kiln"]),
        .executable(name: "bench", targets: ["bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries at the bottom.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "COpenCL", path: "Sources/COpenCL", pkgConfig: "OpenCL",
                       providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers"])]),
        // C micro-kernels for the CPU backend, one variant per ISA chosen at run time.
        .target(name: "CKilnCPU", path: "Sources/CKilnCPU", linkerSettings: [.linkedLibrary("m")]),

        // Kernels/*.cl embedded into KilnOpenCL at build time.
        .executableTarget(name: "KernelEmbedder", path: "Sources/KernelEmbedder"),
        .plugin(name: "EmbedKernels", capability: .buildTool(),
                dependencies: ["KernelEmbedder"], path: "Plugins/EmbedKernels"),

        // The backend-agnostic core and the two backends.
        .target(name: "KilnCore", path: "Sources/KilnCore"),
        .target(name: "KilnCPU", dependencies: ["KilnCore", "CBLAS", "CKilnCPU"],
                path: "Sources/KilnCPU"),
        .target(name: "KilnOpenCL", dependencies: ["KilnCore", "COpenCL"],
                path: "Sources/KilnOpenCL", plugins: ["EmbedKernels"]),
        // Layers, activations, losses and initializers, written once over KilnCore.
        .target(name: "KilnNN", dependencies: ["KilnCore"], path: "Sources/KilnNN"),
        // Data sets and batching: gzip/DEFLATE and IDX readers, Fashion-MNIST, DataLoader, the fortunes
        // text corpus, a character vocabulary and language-model batches.
        .target(name: "KilnData", dependencies: ["KilnCore"], path: "Sources/KilnData"),
        // The umbrella: re-exports the modules above and selects devices.
        .target(name: "Kiln", dependencies: ["KilnCore", "KilnNN", "KilnData", "KilnCPU", "KilnOpenCL"],
                path: "Sources/Kiln"),
        .target(name: "KilnTestSupport", dependencies: ["Kiln"], path: "Sources/KilnTestSupport"),

        .executableTarget(name: "bench",
                          dependencies: ["Kiln", "CBLAS",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Benchmarks/bench"),

        .testTarget(name: "KilnCoreTests", dependencies: ["Kiln", "KilnTestSupport"],
                    path: "Tests/KilnCoreTests"),
        .testTarget(name: "BackendConformanceTests", dependencies: ["Kiln", "KilnTestSupport"],
                    path: "Tests/BackendConformanceTests"),
        .testTarget(name: "KilnOpenCLTests", dependencies: ["Kiln", "KilnOpenCL", "KilnTestSupport"],
                    path: "Tests/KilnOpenCLTests"),
        .testTarget(name: "PublicAPITests", dependencies: ["Kiln"], path: "Tests/PublicAPITests"),
        .testTarget(name: "KilnNNTests", dependencies: ["Kiln", "KilnTestSupport"], path: "Tests/KilnNNTests"),
        .testTarget(name: "KilnDataTests", dependencies: ["Kiln", "KilnTestSupport"], path: "Tests/KilnDataTests"),
    ]
)

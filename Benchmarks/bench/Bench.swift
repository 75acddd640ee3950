import ArgumentParser

/// `swift run -c release bench <subcommand>`: Kiln's benchmarks, one row format for all.
@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Kiln benchmarks: times, GFLOP/s, error against a reference and the ratio to a baseline.",
        subcommands: [AttentionBench.self, MatmulBench.self, NormBench.self, ConvBench.self, OptimizerBench.self, TrainBench.self])
}

/// Options every bench subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Which backends to run: cpu, opencl or all.")
    var backend: BackendChoice = .all

    @Option(help: "Timed iterations (after warm-up).")
    var iters: Int = 10

    @Option(help: "OpenCL device index for the opencl backend.")
    var device: Int = 0

    @Flag(help: "Print one JSON array of rows to stdout (the header goes to stderr).")
    var json = false
}

enum BackendChoice: String, ExpressibleByArgument, CaseIterable {
    case cpu, opencl, all
}

import Foundation
import PackagePlugin

/// Embeds every `Kernels/*.cl` file of the package into the target as one generated Swift file,
/// so the `.cl` files stay the only copy of each kernel. Editing or adding a file re-runs it.
@main
struct EmbedKernels: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let kernelsDirectory = context.package.directoryURL.appending(path: "Kernels")
        let names = try FileManager.default.contentsOfDirectory(atPath: kernelsDirectory.path())
            .filter { $0.hasSuffix(".cl") }
            .sorted()
        let inputs = names.map { kernelsDirectory.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedKernels.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) OpenCL kernel files",
                executable: try context.tool(named: "KernelEmbedder").url,
                arguments: [output.path()] + inputs.map { $0.path() },
                inputFiles: inputs + [kernelsDirectory],
                outputFiles: [output])
        ]
    }
}
